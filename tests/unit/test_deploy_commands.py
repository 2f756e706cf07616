"""Every `darkroom` command line in deploy/, docker-compose.yml and the Dockerfiles parses.

A manifest that calls a flag the CLI lacks (`worker --probe` once) exits 2 in production:
pods never Ready, liveness restarts every worker. Each command line found is run
through the real click parser (no command body runs).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from darkroom.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _walk(node: Any) -> Iterator[list[str]]:
    """darkroom argv lists in a parsed manifest: container args/command of a darkroom
    image, and exec commands / healthchecks that start with `darkroom`."""
    if isinstance(node, dict):
        image = str(node.get("image", ""))
        if image.startswith("darkroom") or "build" in node:
            for field in ("args", "command"):
                if isinstance(node.get(field), list):
                    yield [str(x) for x in node[field]]
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        words = [str(x) for x in node]
        if words[:2] == ["CMD", "darkroom"]:
            yield words[2:]
        elif words[:1] == ["darkroom"] and len(words) > 1:  # not `networks: [darkroom]`
            yield words[1:]
        else:
            for value in node:
                yield from _walk(value)


def command_lines() -> list[tuple[str, list[str]]]:
    found: list[tuple[str, list[str]]] = []
    manifests = [ROOT / "docker-compose.yml", *sorted((ROOT / "deploy").rglob("*.yaml"))]
    for path in manifests:
        for doc in yaml.safe_load_all(path.read_text()):
            found += [(path.name, argv) for argv in _walk(doc)]
    for path in sorted((ROOT / "deploy").rglob("Dockerfile*")):
        for line in re.findall(r"^CMD (\[.*\])$", path.read_text(), re.M):
            found.append((path.name, json.loads(line)))
    unique = {(where, tuple(argv)) for where, argv in found}
    return [(where, list(argv)) for where, argv in sorted(unique)]


def parse(argv: list[str]) -> None:
    """Parse `darkroom ARGV` down to the leaf command, as click would before running it."""
    ctx = main.make_context("darkroom", list(argv))
    group: click.Command = main
    rest = [*ctx._protected_args, *ctx.args]
    while isinstance(group, click.Group):
        name, command, rest = group.resolve_command(ctx, rest)
        assert command is not None and name is not None
        ctx = command.make_context(name, list(rest), parent=ctx)
        rest = [*ctx._protected_args, *ctx.args]
        group = command


LINES = command_lines()


def test_the_manifests_call_the_probe_and_drain_commands() -> None:
    calls = {" ".join(argv) for _, argv in LINES}
    assert {"worker --probe", "worker --drain"} <= calls, calls
    assert len(LINES) >= 15


@pytest.mark.parametrize(("where", "argv"), LINES, ids=[f"{w}: {' '.join(a)}" for w, a in LINES])
def test_each_command_line_parses(where: str, argv: list[str]) -> None:
    try:
        parse(argv)
    except click.UsageError as exc:
        pytest.fail(f"{where}: darkroom {' '.join(argv)}: {exc.format_message()}")
