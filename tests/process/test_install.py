"""What `pip install .` gives: a `studiovault` whose `migrate` finds the migrations it ships."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support.processes import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel `pip install .` would install, unpacked (dependencies come from this environment)."""
    uv = shutil.which("uv") or str(ROOT / ".tools" / "uv" / "bin" / "uv")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([uv, "build", "--wheel", "-q", "-o", str(out)], cwd=ROOT, check=True, timeout=300,
                   env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"})
    (wheel,) = out.glob("*.whl")
    site = out / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return site


def studiovault(site: Path, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SV_")}
    env = {**clean, "PYTHONPATH": str(site), "SV_LOG_JSON": "false", "COLUMNS": "300", **env}
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          check=False, env=env)


def test_the_installed_package_ships_its_migrations_and_migrate_applies_them(installed: Path,
                                                                             tmp_path: Path) -> None:
    shipped = sorted(p.name for p in (installed / "store" / "migrations").glob("*.sql"))
    assert shipped == sorted(p.name for p in (ROOT / "migrations").glob("*.sql"))
    done = studiovault(installed, tmp_path, "migrate", SV_DATABASE_URL=f"sqlite:///{tmp_path / 'sv.db'}")
    assert done.returncode == 0, done.stderr
    assert f"{len(shipped)} migrations applied, 0 pending" in done.stdout
    assert done.stdout.count("applied  ") == len(shipped)


def test_version_is_printed(installed: Path, tmp_path: Path) -> None:
    done = studiovault(installed, tmp_path, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("studiovault ")
