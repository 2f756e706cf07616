"""Multi-identity customization in the UMO design, on FLUX with diffusers parts.

`OPS` maps `multi_identity` to its implementation. The pieces, each its own module:
`people` (reference photos, faces found and aligned before any model work),
`positions` (UNO's rotary offsets for reference tokens), `diffusion` (the denoising
loop that reads the references as extra tokens), `adapters` (UNO / UMO LoRA loading),
`model` (loading a published model and running the op), `tiny` (random-weight parts
for tests). The multi-face identity gate is `pipelines.identity.gate`, shared with
`identity_portrait`.
"""

from pipelines.base import Op
from pipelines.multi_identity.diffusion import FluxUNOPipeline
from pipelines.multi_identity.model import MultiIdentity, multi_identity

OPS: dict[str, Op] = {"multi_identity": multi_identity}

__all__ = ["OPS", "FluxUNOPipeline", "MultiIdentity", "multi_identity"]
