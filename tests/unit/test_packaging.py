"""What ships: every Python package of the project is in the wheel and in the image."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def project_packages() -> set[str]:
    """Every top-level folder with an __init__.py that is not tests or benchmarks."""
    return {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}


def test_the_wheel_lists_every_package() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert set(config["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]) == project_packages()


def test_the_image_copies_every_package_and_the_migrations() -> None:
    copied = {line.split()[1] for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("COPY ")}
    assert project_packages() | {"migrations"} <= copied
