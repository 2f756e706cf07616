"""The op catalogue: every op's name, typed params with bounds, and resource needs.

The producer validates steps against it at the boundary; routing reads the needs;
`pipelines.<family>` implements each op. Each family registers its specs in its own
module here, so a recipe validates without importing torch.
"""

from jobs.ops import classic, generative, identity, portrait  # noqa: F401  (each registers its family)
from jobs.ops import upscale as _upscale  # noqa: F401  (registers `upscale`)
from jobs.ops.base import (
    CATALOGUE,
    CPU,
    Needs,
    OpSpec,
    Params,
    Precision,
    get_op,
    register,
)

__all__ = ["CATALOGUE", "CPU", "Needs", "OpSpec", "Params", "Precision", "get_op", "register"]
