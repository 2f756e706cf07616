"""Identity-preserving portraits in the InstantID design, on SDXL with diffusers parts.

`OPS` maps `identity_portrait` to its implementation. The pieces, each its own module:
`subject` (references and pose, faces found before any model work), `keypoints`
(IdentityNet's control image), `diffusion` (the denoising loop that feeds IdentityNet
the face tokens), `gate` (SFace identity check and re-renders), `portrait` (loading a
published model and running the op), `tiny` (random-weight parts for tests).
"""

from pipelines.base import Op
from pipelines.identity.diffusion import StableDiffusionXLInstantIDPipeline
from pipelines.identity.portrait import IdentityPortrait, identity_portrait

OPS: dict[str, Op] = {"identity_portrait": identity_portrait}

__all__ = ["OPS", "IdentityPortrait", "StableDiffusionXLInstantIDPipeline", "identity_portrait"]
