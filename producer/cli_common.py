"""What every producer command shares: one-line errors, settings, Redis, JSON output."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, ParamSpec, TypeVar

import click

from jobs.errors import ConfigError, DarkroomError, SchemaError

if TYPE_CHECKING:
    from redis import Redis

    from jobs.settings import Settings

P = ParamSpec("P")
R = TypeVar("R")

EXIT_FAILED = 1  # some jobs failed, or something outside the user's input broke
EXIT_USAGE = 2  # the command line, a recipe or a source was wrong
EXIT_TIMEOUT = 3  # --wait gave up before the batch finished
EXIT_INTERRUPTED = 130  # Ctrl-C while waiting (the shell's convention for SIGINT)


class Failure(click.ClickException):
    """One line on stderr (`Error: ...`) and an exit code; never a traceback."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click reads it per instance

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True)


def one_line_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn darkroom's and Redis's errors into one clear line and an exit code.

    Raises:
        Failure: in place of a DarkroomError or a Redis error (exit code 2 for a
            schema or configuration error, 1 otherwise).
    """
    import redis

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (SchemaError, ConfigError) as exc:
            raise Failure(str(exc), EXIT_USAGE) from None
        except DarkroomError as exc:
            raise Failure(str(exc)) from None
        except redis.ConnectionError as exc:
            raise Failure(f"cannot reach Redis: {exc}") from None
        except redis.RedisError as exc:
            raise Failure(f"Redis refused the request: {exc}") from None

    return wrapper


def settings_and_redis() -> tuple[Settings, Redis]:
    """Settings from the environment, and a client for the (embedded) Redis."""
    from jobs.settings import load_settings
    from transport.embedded import connect

    settings = load_settings()
    return settings, connect(settings)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
