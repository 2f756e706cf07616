"""Fixes for running transformers' processors without torchvision (which we cannot install).

Import-time side effects are kept here, in one place, and each fix is idempotent.
"""

from __future__ import annotations

from typing import Any


def _qwen2vl_attributes(cls: Any) -> list[str]:
    return ["image_processor", "tokenizer"]


def fix_qwen2vl_processor() -> None:
    """Let `Qwen2VLProcessor` build, save and load without its video processor.

    The video processor needs torchvision; Qwen-Image-Edit never uses it. Call this in
    every process that builds or loads a Qwen edit pipeline, before it does.
    """
    from transformers import Qwen2VLProcessor

    Qwen2VLProcessor.get_attributes = classmethod(_qwen2vl_attributes)  # type: ignore[method-assign,assignment]
