"""The `darkroom` command. Each subcommand's module is imported only when it runs, so
`darkroom submit` never pays for torch and `darkroom worker` never for the API."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import click

# command name -> "module:attribute" of a click command in our own packages
COMMANDS: dict[str, tuple[str, str]] = {
    "submit": ("producer.cli:submit", "queue jobs for images, files, folders or manifests"),
    "status": ("producer.cli:status", "show a job or a batch"),
    "queues": ("producer.cli:queues", "queue depth and in-flight jobs per tier and lane"),
    "cancel": ("producer.cli:cancel", "cancel a queued or running job"),
    "worker": ("workers.cli:worker", "run a worker for a tier and lane"),
    "api": ("darkroom.api:api", "serve the HTTP API (and deliver webhooks)"),
    "keys": ("producer.api_keys:keys", "create, list and revoke API keys"),
    "webhooks": ("workers.webhooks:webhooks", "deliver queued webhooks"),
    "models": ("darkroom.models:models", "publish, list, promote and verify models"),
    "autoscale": ("workers.autoscale.cli:autoscale", "size worker pools from queue depth"),
    "schedule": ("producer.schedule:schedule", "list and run scheduled restorations"),
    "down": ("darkroom.local:down", "stop the embedded Redis this machine runs"),
    "demo": ("darkroom.demo:demo", "run the restoration demo end to end"),
}


class LazyGroup(click.Group):
    """A click group whose `lazy` commands are imported only when they run.

    `lazy` maps a command name to ("module:attribute" of a click command, one-line
    help); the help lists them without importing them. Commands added the usual way
    (`@group.command()`) list beside them.
    """

    def __init__(
        self, *args: Any, lazy: Mapping[str, tuple[str, str]] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy if lazy is not None else {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.commands or name not in self.lazy:
            return super().get_command(ctx, name)
        module_name, attr = self.lazy[name][0].split(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: Any) -> None:
        rows = [(name, self._help(name)) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def _help(self, name: str) -> str:
        if name in self.lazy:
            return self.lazy[name][1]
        return self.commands[name].get_short_help_str(limit=70)


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="darkroom")
def main() -> None:
    """darkroom: batch AI image edits over Redis queues and GPU workers."""
