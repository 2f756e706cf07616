"""Image bytes in and out: the entry points the worker, the API and the reports use.

Decoding lives in `storage.decode` (every frame, 16-bit kept, metadata read), encoding
in `storage.encode`, metadata in `storage.metadata`. `decode_image` is the single-image
view for callers that want one 8-bit PIL image (API previews, thumbnails): the first
frame, upright, metadata-free, in 'RGB', 'RGBA' or 'L'.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PIL import Image

from storage.decode import Picture, check_size, decode_picture, working_mode
from storage.deep import as_pil
from storage.encode import CONTENT_TYPES, PIL_FORMATS, encode_frames, encode_image
from storage.sniff import SUPPORTED

if TYPE_CHECKING:
    from jobs.settings import Settings

ALLOWED_FORMATS = set(SUPPORTED)  # Pillow names; detected by content, never extension

__all__ = [
    "ALLOWED_FORMATS",
    "CONTENT_TYPES",
    "PIL_FORMATS",
    "Picture",
    "check_size",
    "decode_image",
    "decode_picture",
    "encode_frames",
    "encode_image",
    "working_mode",
]


def decode_image(data: bytes, settings: Settings, *, name: str | None = None) -> Image.Image:
    """The first frame of `data` as a loaded, upright, metadata-free 8-bit PIL image.

    Raises:
        InputInvalid, InputTooLarge: as `storage.decode.decode_picture`.
    """
    return as_pil(decode_picture(data, settings, name=name).frames[0])
