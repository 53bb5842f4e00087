"""`studiovault` names its commands in `cli.main.COMMANDS` and imports a command's module only when that
command runs: the long-running processes do not carry the operator tools (nor httpx, the providers and
the reconciliation code those import) in memory."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import COMMANDS, app

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_MODULES = {"cli.operate", "cli.storage", "cli.reconcile", "cli.dead", "cli.billing", "cli.schema",
                    "cli.accounts", "cli.demo"}

# What `studiovault ingress` imports before uvicorn serves: its command (through the root group) and the
# app it builds; the database is SQLite, so nothing needs an HTTP client.
INGRESS_IMPORTS = """
import sys
import typer
from cli.main import app
group = typer.main.get_command(app)
command = group.get_command(typer.Context(group), "ingress")
assert command is not None and command.name == "ingress"
import uvicorn
from bootstrap.ingress import build_app
print(" ".join(sorted(name for name in sys.modules if name.startswith(("cli.", "httpx", "providers.")))))
"""


def test_the_ingress_command_loads_no_operator_tool_and_no_http_client() -> None:
    done = subprocess.run([sys.executable, "-c", INGRESS_IMPORTS], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert "cli.serve" in loaded  # the control: the command's own module is there
    assert not loaded & OPERATOR_MODULES
    assert not {name for name in loaded if name.startswith("httpx")}


def test_help_lists_every_command_in_order() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    panel = result.output[result.output.index("Commands"):]
    listed = [line.split()[1] for line in panel.splitlines() if line.startswith("│ ") and not line.startswith("│  ")]
    assert listed == list(COMMANDS)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_answers_help(name: str) -> None:
    result = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert re.search(rf"Usage: \S+ {name} \[OPTIONS\]", result.output), result.output


def test_a_command_group_keeps_its_sub_commands() -> None:
    result = CliRunner().invoke(app, ["billing", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert " close " in result.output


def test_an_unknown_command_is_an_error() -> None:
    result = CliRunner().invoke(app, ["nosuch"])
    assert result.exit_code == 2
    assert "No such command 'nosuch'" in result.output
