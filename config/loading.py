"""Read the settings from the environment (and a `.env` file) once, and say plainly what is wrong.

An invalid value fails at start-up with one line per variable, naming it and the expected form:

    SV_LOG_LEVEL='LOUD': expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL
    SV_R2_BUCKETS='media': expected a JSON list, e.g. ["a", "b"]

Secret values are never echoed. This module is the only place that reads `SV_` variables.
"""

from __future__ import annotations

import difflib
import json
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo

from config.settings import Settings

PREFIX = "SV_"


class ConfigError(Exception):
    """Settings that cannot be used; `lines` says, per variable, what is wrong and what is expected."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines

    def __str__(self) -> str:
        return "invalid settings:\n  " + "\n  ".join(self.lines)


def variable(field: str) -> str:
    return f"{PREFIX}{field.upper()}"


def _fields() -> dict[str, tuple[str, FieldInfo]]:
    """Field name → (its section, its FieldInfo), over every section."""
    return {name: (section, info) for section, cls in Settings.SECTIONS.items()
            for name, info in cls.model_fields.items()}


def _is_json(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_json(arg) for arg in typing.get_args(annotation))
    return origin in (list, dict, set, frozenset, tuple) or annotation in (list, dict)


def _raw_environment(environ: Mapping[str, str] | None, env_file: Path | None) -> dict[str, str]:
    values: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update(os.environ if environ is None else environ)
    return {k: v for k, v in values.items() if k.startswith(PREFIX)}


def load_settings(environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")) -> Settings:
    """The settings from `environ` (default: the process environment) over `env_file`; `ConfigError`
    naming every bad variable otherwise."""
    raw = _raw_environment(environ, env_file)
    nested: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for name, (section, info) in _fields().items():
        var = variable(name)
        if var not in raw:
            continue
        value: Any = raw[var]
        if _is_json(info.annotation):
            try:
                value = json.loads(value)
            except ValueError:
                problems.append(f"{_shown(var, value, info)}: expected {_form(info)}")
                continue
        nested.setdefault(section, {})[name] = value
    try:
        settings = Settings.model_validate(nested)
    except ValidationError as exc:
        raise ConfigError(problems + _explain(exc, raw)) from None
    problems += cross_checks(settings)
    if problems:
        raise ConfigError(problems)
    return settings


def cross_checks(settings: Settings) -> list[str]:
    """Rules that span fields."""
    problems = []
    if settings.database.is_d1 and settings.database.d1_bridge_token is None:
        problems.append(f"{variable('d1_bridge_token')}: required when {variable('database_url')} is a d1+https:// "
                        "bridge URL (the bridge Worker's BRIDGE_TOKEN secret)")
    return problems


def unknown_variables(environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")) -> list[str]:
    """`SV_` variables no setting reads (usually a typo), each with the likeliest meant name."""
    known = {variable(name) for name in _fields()} | {"SV_ENV_FILE"}
    notes = []
    for var in sorted(set(_raw_environment(environ, env_file)) - known):
        close = difflib.get_close_matches(var, sorted(known), n=1)
        notes.append(f"{var} is not a setting" + (f" (did you mean {close[0]}?)" if close else ""))
    return notes


def _explain(exc: ValidationError, raw: Mapping[str, str]) -> list[str]:
    fields = _fields()
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        name = loc[1] if len(loc) > 1 else loc[0]
        section_info = fields.get(name)
        var = variable(name)
        if section_info is None:
            lines.append(f"{var}: {error['msg']}")
            continue
        info = section_info[1]
        shown = _shown(var, raw.get(var, ""), info)
        if error["type"] == "value_error":
            lines.append(f"{shown}: {str(error['msg']).removeprefix('Value error, ')}")
        else:
            lines.append(f"{shown}: expected {_form(info)}{_bound(info)}")
    return lines


def _shown(var: str, value: str, info: FieldInfo) -> str:
    if _is_secret(info.annotation):
        return f"{var}=<hidden>"
    return f"{var}={value!r}"


def _is_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    return any(_is_secret(arg) for arg in typing.get_args(annotation))


def _form(info: FieldInfo) -> str:
    annotation = info.annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(annotation))
    if origin is list:
        return 'a JSON list, e.g. ["a", "b"]'
    if origin is dict:
        return 'a JSON object, e.g. {"key": "value"}'
    if args and origin in (typing.Union, types.UnionType):
        annotation = args[0]
    return _FORMS.get(annotation, str(annotation))


_FORMS: dict[object, str] = {bool: "true or false", int: "a whole number", float: "a number", Path: "a file path",
                             SecretStr: "a non-empty secret", str: "a text value"}


def _bound(info: FieldInfo) -> str:
    bounds = []
    for meta in info.metadata:
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"), ("min_length", "of length ≥")):
            value = getattr(meta, attr, None)
            if value is not None:
                bounds.append(f"{sign} {value}")
    return " " + " and ".join(bounds) if bounds else ""
