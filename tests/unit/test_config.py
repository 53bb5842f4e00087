"""One configuration: every setting is an `SV_` variable read once, and a bad one is reported plainly."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from config import ConfigError, Settings, load_settings, unknown_variables, variable

ROOT = Path(__file__).resolve().parents[2]
NO_ENV_FILE = None


def load(**env: str) -> Settings:
    return load_settings(env, env_file=NO_ENV_FILE)


def problems(**env: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(**env)
    return caught.value.lines


def test_defaults_are_the_shipped_ones() -> None:
    settings = load()
    assert settings.worker.max_jobs == 50
    assert settings.worker.poll_delay == 0.01
    assert settings.database.database_url == "sqlite:///var/studiovault.db"
    assert settings.log.log_level == "INFO"


def test_a_worker_on_d1_runs_more_jobs_at_once_unless_told_how_many() -> None:
    d1 = {"SV_DATABASE_URL": "d1+https://bridge.example.workers.dev", "SV_D1_BRIDGE_TOKEN": "t"}
    assert load().max_jobs == 50  # a SQLite file
    assert load(**d1).max_jobs == Settings.D1_MAX_JOBS == 200  # round trips to Cloudflare: more in flight
    assert load(**d1, SV_MAX_JOBS="50").max_jobs == 50  # an explicit setting wins, even the SQLite default
    assert load(SV_MAX_JOBS="7").max_jobs == 7


def test_every_field_name_is_unique_across_sections_so_each_variable_names_one_field() -> None:
    names = [name for section in Settings.SECTIONS.values() for name in section.model_fields]
    assert len(names) == len(set(names))


def test_variables_set_fields_of_their_sections_with_json_for_lists_and_objects() -> None:
    settings = load(SV_MAX_JOBS="7", SV_LOG_JSON="false", SV_R2_BUCKETS='["media"]', SV_LOG_LEVEL="debug",
                    SV_MSG91_TEMPLATE_IDS='{"invoice_due": "t1"}', SV_STANDARD_WEBHOOK_SECRETS='["whsec_a", "  "]')
    assert settings.worker.max_jobs == 7
    assert settings.log.log_json is False
    assert settings.log.log_level == "DEBUG"
    assert settings.ingress.r2_buckets == ["media"]
    assert settings.notify.msg91_template_ids == {"invoice_due": "t1"}
    assert [s.get_secret_value() for s in settings.ingress.standard_webhook_secrets] == ["whsec_a"]  # blank dropped


@pytest.mark.parametrize(("env", "expected"), [
    ({"SV_LOG_LEVEL": "LOUD"}, "SV_LOG_LEVEL='LOUD': expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    ({"SV_R2_BUCKETS": "media"}, """SV_R2_BUCKETS='media': expected a JSON list, e.g. ["a", "b"]"""),
    ({"SV_MAX_JOBS": "0"}, "SV_MAX_JOBS='0': expected a whole number ≥ 1"),
    ({"SV_POLL_DELAY": "soon"}, "SV_POLL_DELAY='soon': expected a number > 0"),
    ({"SV_SCHEDULED_JOBS": "maybe"}, "SV_SCHEDULED_JOBS='maybe': expected true or false"),
    ({"SV_DATABASE_URL": "postgres://db"},
     "SV_DATABASE_URL='postgres://db': expected sqlite:///path/to/file.db or d1+https://<bridge worker host>"),
    ({"SV_REDIS_URL": "localhost:6379"}, "SV_REDIS_URL='localhost:6379': expected redis://host:port/db"
                                         " (or rediss://, unix://)"),
])
def test_a_bad_value_is_one_line_naming_the_variable_and_the_expected_form(env: dict[str, str],
                                                                           expected: str) -> None:
    assert problems(**env) == [expected]


def test_every_bad_variable_is_reported_at_once() -> None:
    lines = problems(SV_MAX_JOBS="x", SV_LOG_LEVEL="LOUD", SV_INGRESS_PORT="99999")
    assert [line.split("=")[0] for line in lines] == ["SV_MAX_JOBS", "SV_INGRESS_PORT", "SV_LOG_LEVEL"]


def test_secret_values_are_never_echoed() -> None:
    (line,) = problems(SV_STANDARD_WEBHOOK_SECRETS="whsec_not_a_list")
    assert "whsec_not_a_list" not in line
    assert line.startswith("SV_STANDARD_WEBHOOK_SECRETS=<hidden>: expected a JSON list")


def test_encryption_keys_must_be_fernet_keys_and_are_never_echoed() -> None:
    (line,) = problems(SV_ACCOUNTS_ENCRYPTION_KEYS='["too-short-to-be-a-key"]')
    assert "too-short" not in line
    assert line.startswith("SV_ACCOUNTS_ENCRYPTION_KEYS=<hidden>: key 1 is not a Fernet key")
    key = "c3R1ZGlvdmF1bHQtdGVzdC1lbmNyeXB0aW9uLWtleSE="
    assert len(load(SV_ACCOUNTS_ENCRYPTION_KEYS=f'["{key}"]').gateways.accounts_encryption_keys) == 1


def test_the_retired_global_gateway_secrets_are_reported_as_unknown() -> None:
    """Gateway webhook secrets live per account (encrypted) now: a leftover variable is named, not used."""
    (note,) = unknown_variables({"SV_RAZORPAY_WEBHOOK_SECRETS": '["x"]'}, env_file=None)
    assert note.startswith("SV_RAZORPAY_WEBHOOK_SECRETS is not a setting")


def test_a_d1_url_needs_its_bridge_token() -> None:
    (line,) = problems(SV_DATABASE_URL="d1+https://bridge.example.workers.dev")
    assert line.startswith("SV_D1_BRIDGE_TOKEN: required when SV_DATABASE_URL is a d1+https://")
    assert load(SV_DATABASE_URL="d1+https://b.example", SV_D1_BRIDGE_TOKEN="t").database.is_d1


def test_an_env_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("SV_MAX_JOBS=9\nSV_QUEUE_NAME=from-file\n")
    settings = load_settings({"SV_QUEUE_NAME": "from-env"}, env_file=env_file)
    assert (settings.worker.max_jobs, settings.queue.queue_name) == (9, "from-env")


def test_unknown_variables_are_named_with_the_likeliest_meant_one() -> None:
    assert unknown_variables({"SV_MAX_JOB": "1", "SV_SHINY": "x", "PATH": "/bin"}, env_file=NO_ENV_FILE) == [
        "SV_MAX_JOB is not a setting (did you mean SV_MAX_JOBS?)", "SV_SHINY is not a setting"]


def test_from_fields_and_replace_route_flat_names_to_sections_and_validate() -> None:
    settings = Settings.from_fields(max_jobs=3, queue_name="q")
    assert (settings.worker.max_jobs, settings.queue.queue_name) == (3, "q")
    changed = settings.replace(max_jobs=4, log_json=False)
    assert (changed.worker.max_jobs, changed.log.log_json, changed.queue.queue_name) == (4, False, "q")
    with pytest.raises(ValueError, match="max_jobs"):
        settings.replace(max_jobs=0)
    assert variable("max_jobs") == "SV_MAX_JOBS"


def _reads_environment(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os" \
                and node.attr in {"environ", "getenv", "environb"}:
            lines.append(node.lineno)
    return lines


def test_nothing_but_the_config_package_reads_the_environment() -> None:
    packages = ["core", "events", "store", "jobqueue", "providers", "handlers", "producers", "readmodels", "workers",
                "ingress", "bootstrap", "cli"]
    offenders = [f"{path.relative_to(ROOT)}:{line}" for package in packages for path in (ROOT / package).rglob("*.py")
                 for line in _reads_environment(ast.parse(path.read_text()))]
    assert offenders == []


def test_docker_compose_passes_every_provider_and_secret_setting_through() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    sections = [Settings.SECTIONS["notify"], Settings.SECTIONS["database"]]
    wanted = [variable(name) for section in sections for name in section.model_fields]
    wanted += [variable(name) for name in Settings.SECTIONS["ingress"].model_fields
               if name.endswith(("_secrets", "_buckets", "_accounts", "_tokens", "_token"))]
    missing = [var for var in wanted if f"  {var}:" not in compose]
    assert missing == []
