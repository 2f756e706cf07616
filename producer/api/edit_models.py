"""Whether free-text edits can go to the instruction-edit model.

`POST /edit` hands instructions the phrase table does not know to `kontext_edit`, but
only if that op is in the catalogue *and* its default model is published in the model
store; otherwise the caller gets a 422 listing what is understood, instead of a job
bound to fail with `model_unavailable`.

The producer may not import `model_store`, so this reads the store's documented layout
through `storage` (see `model_store/layout.py`): `<name>/<version>/manifest.json` marks
a published version, `<name>/aliases.json` maps aliases to versions. The answer is
cached for `ttl_s`, so the route costs no storage round trip per request.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from jobs.errors import DarkroomError
from jobs.ops import CATALOGUE

if TYPE_CHECKING:
    from jobs.settings import Settings

EDIT_OP = "kontext_edit"


class EditModels:
    """The instruction-edit op if it can run here, else None; cached."""

    def __init__(self, settings: Settings, op: str = EDIT_OP, ttl_s: float = 30.0) -> None:
        self.settings = settings
        self.op = op
        self.ttl_s = ttl_s
        self._cached: tuple[float, bool] | None = None

    def available_op(self) -> str | None:
        spec = CATALOGUE.get(self.op)
        if spec is None:
            return None
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] > self.ttl_s:
            model = (
                spec.params.model_fields["model"].default
                if "model" in spec.params.model_fields
                else None
            )
            self._cached = (now, isinstance(model, str) and self.published(model))
        return self.op if self._cached[1] else None

    def published(self, ref: str) -> bool:
        """Whether `name`, `name@version` or `name@alias` resolves to a published version."""
        from storage import open_location

        name, _, selector = ref.partition("@")
        try:
            storage, prefix = open_location(self.settings.model_store_uri(), self.settings)
            if not selector:
                return any(k.endswith("/manifest.json") for k in storage.list(f"{prefix}{name}/"))
            if storage.exists(f"{prefix}{name}/{selector}/manifest.json"):
                return True
            if not storage.exists(f"{prefix}{name}/aliases.json"):
                return False
            book = json.loads(storage.get(f"{prefix}{name}/aliases.json"))
            history = book.get("aliases", {}).get(selector) or []
            return bool(history) and storage.exists(f"{prefix}{name}/{history[-1]}/manifest.json")
        except (DarkroomError, ValueError, OSError):
            return False
