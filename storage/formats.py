"""Pillow's process-wide switches, set from darkroom's settings: decoders and limits.

Pillow keeps its limits in module globals (`Image.MAX_IMAGE_PIXELS`,
`PngImagePlugin.MAX_TEXT_CHUNK`); darkroom's `max_input_pixels` and `max_input_bytes`
are the limits users configure, so every decode first puts them in force here.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from PIL import Image, PngImagePlugin

if TYPE_CHECKING:
    from jobs.settings import Settings

# Pillow's own defaults (1 MB per text chunk, 64 MB in all): never lowered.
_DEFAULT_TEXT_CHUNK = PngImagePlugin.MAX_TEXT_CHUNK
_DEFAULT_TEXT_MEMORY = PngImagePlugin.MAX_TEXT_MEMORY


@cache
def register_decoders() -> bool:
    """Register the HEIF/HEIC decoder (`pillow-heif`) with Pillow, once per process.

    Returns:
        True when HEIC files can be read; False when `pillow-heif` is not installed
        (HEIC inputs then fail with a clear "not a supported format" message).
    """
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


def apply_limits(settings: Settings) -> None:
    """Make Pillow enforce the configured limits instead of its own defaults.

    - `Image.MAX_IMAGE_PIXELS` = `settings.max_input_pixels`: Pillow warns above it and
      refuses (DecompressionBombError) above twice it; darkroom's own check refuses
      above it, so the one configured number is the limit wherever Pillow opens a file
      (decoding, thumbnails, the API's header check).
    - PNG text chunks (XMP, ICC, comments) may use up to `settings.max_input_bytes`
      once decompressed: Photoshop files carry megabytes of XMP history, which Pillow's
      1 MB default refuses as "corrupt".
    """
    Image.MAX_IMAGE_PIXELS = settings.max_input_pixels
    PngImagePlugin.MAX_TEXT_CHUNK = max(_DEFAULT_TEXT_CHUNK, settings.max_input_bytes)
    PngImagePlugin.MAX_TEXT_MEMORY = max(_DEFAULT_TEXT_MEMORY, settings.max_input_bytes)
