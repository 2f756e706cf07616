"""The container images hold every package the project installs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((ROOT / "deploy" / "docker").glob("Dockerfile.*"))


def installed_packages() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["packages"]["find"]["include"]
    return {pattern.rstrip("*") for pattern in patterns}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_installed_package_is_copied_into_the_image(dockerfile: Path) -> None:
    """A package left out builds an image whose commands fail at import."""
    copied = set(re.findall(r"^COPY (\w+) \./\1$", dockerfile.read_text(), re.MULTILINE))
    assert installed_packages() - copied == set()
