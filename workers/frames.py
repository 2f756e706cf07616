"""What a render does with pages, animation frames, 16-bit depth and alpha, and says so.

Classic ops run on every frame at the input's depth. Ops of other families take one
8-bit PIL image: a 16-bit frame is reduced for them (recorded), and a multi-frame
input is refused unless the job asks for its first frame (`output.frames: first`),
because editing 40 animation frames with a diffusion model one by one gives 40
unrelated pictures. Generative edits keep the input's transparency: the edit is
composited back under the input's alpha (identity portraits, which make a new picture,
and background removal, which makes a new alpha, are left as they are).
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from jobs.errors import InputInvalid
from jobs.ops import get_op
from jobs.schema import Job
from storage.decode import Frame, Picture
from storage.deep import DeepImage, as_pil

DEEP_FAMILIES = frozenset({"classic"})  # op families that work on 16-bit DeepImages
ALPHA_KEEPING_FAMILIES = frozenset({"generative", "hosted"})  # edits composited under alpha


def chosen_frames(picture: Picture, job: Job, info: dict[str, Any]) -> list[Frame]:
    """The frames this job renders; `info` records what was left out.

    Raises:
        InputInvalid: several frames, an op that edits one image, and no `frames: first`.
    """
    count = len(picture.frames)
    what = "pages" if picture.pages else "frames"
    if count > 1:
        info[f"input_{what}"] = count
    if count == 1 or (job.output.frames != "first" and _all_multi_frame(job)):
        return list(picture.frames)
    if job.output.frames == "first":
        info["frames_dropped"] = f"{what} 2-{count} left out (output.frames: first)"
        return picture.frames[:1]
    single = next(s.op for s in job.recipe.steps if get_op(s.op).family not in DEEP_FAMILIES)
    raise InputInvalid(
        f"the input has {count} {what}; {single} edits one image: set output frames to "
        f"'first' (recipe output: {{frames: first}}) to edit {what[:-1]} 1 only, or split "
        "the file"
    )


def _all_multi_frame(job: Job) -> bool:
    return all(get_op(step.op).family in DEEP_FAMILIES for step in job.recipe.steps)


def prepared_for(op: str, image: Image.Image | DeepImage, info: dict[str, Any]) -> Any:
    """`image` as op `op` takes it: 16-bit kept for classic ops, else 8-bit PIL."""
    if isinstance(image, DeepImage) and get_op(op).family not in DEEP_FAMILIES:
        info.setdefault("depth_reduced", f"16-bit input reduced to 8 bits for {op}")
        return as_pil(image)
    return image


def with_input_alpha(op: str, before: Any, after: Any) -> Any:
    """`after` with the alpha `before` had, for generative edits; else `after` unchanged."""
    if get_op(op).family not in ALPHA_KEEPING_FAMILIES:
        return after
    if not isinstance(before, Image.Image) or before.mode != "RGBA":
        return after
    if not isinstance(after, Image.Image):
        return after
    return composite_alpha(before, after)


def composite_alpha(before: Image.Image, after: Image.Image) -> Image.Image:
    """`after`'s colour under `before`'s alpha (resized to `after` if the op resized).

    Args:
        before: the RGBA image the op was given.
        after: what the op returned (RGB or RGBA, any size).
    Returns:
        RGBA at `after`'s size: transparent where `before` was, so a cut-out stays
        a cut-out instead of showing the colour hidden under its transparent pixels.
    """
    alpha = before.getchannel("A")
    if alpha.size != after.size:
        alpha = alpha.resize(after.size, Image.Resampling.LANCZOS)
    out = after.convert("RGB")
    out.putalpha(alpha)
    return out
