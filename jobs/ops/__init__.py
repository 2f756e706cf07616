"""The op catalogue: every op's name, typed params with bounds, and resource needs.

The producer validates steps against it at the boundary; routing reads the needs;
`pipelines.<family>` implements each op. Each family registers its specs in its own
module here, so a recipe validates without importing torch.
"""

from jobs.ops import (  # noqa: F401  (each registers its family)
    classic,
    generative,
    hosted,
    identity,
    multi_identity,
    portrait,
    upscale,
)
from jobs.ops.base import (
    CATALOGUE,
    CPU,
    Needs,
    OpSpec,
    Params,
    Precision,
    check_extra_inputs,
    get_op,
    register,
)

__all__ = [
    "CATALOGUE",
    "CPU",
    "Needs",
    "OpSpec",
    "Params",
    "Precision",
    "check_extra_inputs",
    "get_op",
    "register",
]
