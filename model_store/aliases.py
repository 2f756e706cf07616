"""A model's aliases (`stable`, `canary`, ...) with the history that makes rollback work.

Stored as `<name>/aliases.json`: alias -> versions it has pointed at, oldest first,
the current one last. Promote appends; rollback drops the current one.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from model_store.errors import AliasError
from model_store.manifest import check_name

HISTORY_KEPT = 50


class AliasBook(BaseModel):
    name: str
    aliases: dict[str, list[str]] = Field(default_factory=dict)

    def current(self, alias: str) -> str | None:
        history = self.aliases.get(alias)
        return history[-1] if history else None

    def promote(self, alias: str, version: str) -> bool:
        """Point `alias` at `version`; False if it already pointed there."""
        check_name(alias, "alias")
        history = self.aliases.setdefault(alias, [])
        if history and history[-1] == version:
            return False
        history.append(version)
        del history[:-HISTORY_KEPT]
        return True

    def rollback(self, alias: str) -> str:
        """Point `alias` back at the version it pointed at before; returns that version.

        Raises:
            AliasError: no such alias, or it has pointed at one version only.
        """
        history = self.aliases.get(alias)
        if not history:
            raise AliasError(f"{self.name} has no alias {alias!r} to roll back")
        if len(history) < 2:
            raise AliasError(
                f"{self.name}@{alias} has pointed only at {history[-1]}; nothing to roll back to"
            )
        history.pop()
        return history[-1]

    def pointing_at(self, version: str) -> list[str]:
        return sorted(
            a for a, history in self.aliases.items() if history and history[-1] == version
        )
