"""Op name -> implementation, importing each family only when first needed.

Classic ops never import torch; a generative op imports `pipelines.generative` (and
torch) on the first job that needs it, in the worker process that runs it.
"""

from __future__ import annotations

import importlib
from typing import Any, cast

from jobs.ops import get_op
from pipelines.base import OpTable


def implementation(op_name: str) -> Any:
    family = get_op(op_name).family
    module = importlib.import_module(f"pipelines.{family}")
    table = cast(OpTable, module.OPS)
    try:
        return table[op_name]
    except KeyError:
        raise LookupError(f"pipelines.{family} does not implement {op_name!r}") from None
