"""Read a YAML or JSON file and turn what goes wrong into one message that names the
file and, where the parser knows it, the line.

Recipes, schedules, worker pools and settings files all go through here, so a typo
reads the same wherever it is made. A `.json` file is parsed as JSON, anything else as
YAML (PyYAML's `safe_load`: plain data, never Python objects).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from jobs.errors import ConfigError, DarkroomError


def load_file(path: Path, error: type[DarkroomError] = ConfigError) -> Any:
    """The data of the YAML or JSON file at `path` (a dict, list, scalar or None).

    Raises:
        DarkroomError: of class `error`, when the file cannot be read or does not parse;
            the message starts with `path` (and `:line` where known).
    """
    return parse_text(path, read_text(path, error), error)


def read_text(path: Path, error: type[DarkroomError] = ConfigError) -> str:
    """The file's text (UTF-8).

    Raises:
        DarkroomError: of class `error`, when the file cannot be read.
    """
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise error(f"{path}: cannot read it ({reason})") from None


def parse_text(path: Path, text: str, error: type[DarkroomError] = ConfigError) -> Any:
    """`text` parsed as JSON if `path` ends in `.json`, else as YAML.

    Raises:
        DarkroomError: of class `error`, naming `path`, the line and the parser's problem.
    """
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise error(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise error(f"{where}: not valid YAML: {problem}") from None
