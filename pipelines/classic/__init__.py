"""Classic ops: CPU image processing with OpenCV, NumPy and Pillow (no torch).

`OPS` maps each classic op name in `jobs.ops.classic` to its implementation, an
`(image, params, ctx) -> image` callable (see `pipelines.base`) that takes and returns
PIL images and 16-bit `DeepImage`s alike, keeping the depth it was given.
"""

from pipelines.base import DeepOp
from pipelines.classic.geometry import convert, crop, resize
from pipelines.classic.repair import dust_scratch_removal, restore_faded_color
from pipelines.classic.restore import denoise, sharpen
from pipelines.classic.tone import auto_levels, exposure, white_balance

OPS: dict[str, DeepOp] = {
    "resize": resize,
    "crop": crop,
    "convert": convert,
    "auto_levels": auto_levels,
    "white_balance": white_balance,
    "exposure": exposure,
    "denoise": denoise,
    "sharpen": sharpen,
    "dust_scratch_removal": dust_scratch_removal,
    "restore_faded_color": restore_faded_color,
}

__all__ = ["OPS"]
