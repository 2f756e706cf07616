"""What a tenant may name as an input, and vetting uploads before they are stored.

- `https://` URLs: any host the worker's fetch will accept (it vets every address it
  connects to); literal private or loopback addresses are refused here already.
- `s3://` objects: only under the tenant's own folder in the configured storage (its
  uploads), so one tenant cannot have the service read another's objects. Admin keys
  may name any object.
- `file://` paths: admin keys only (local tools and tests); never tenants.

An upload is judged by its content before a byte is stored: size against the key's
cap, format by its magic bytes (JPEG, PNG, WebP, TIFF, BMP), dimensions from its
header (a decompression bomb is refused without decoding a pixel), then Pillow's own
header parse. Pixels are decoded by the worker, which checks again.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image

from jobs.errors import InputInvalid, InputTooLarge
from producer.api.errors import ApiError
from storage.addresses import refusal_reason
from storage.fetch import parse_target
from storage.images import check_size
from storage.local import describe_size
from storage.sniff import sniff

if TYPE_CHECKING:
    from jobs.settings import Settings
    from producer.api.outputs import Outputs
    from producer.api_keys import ApiKey


def check_input(uri: str, key: ApiKey, outputs: Outputs, settings: Settings) -> str:
    """`uri` if this key may have a job read it; else a 403 or 422 saying why."""
    if uri.startswith("https://"):
        target = parse_target(uri)  # InputInvalid -> 422
        reason = refusal_reason(target.host.strip("[]"))
        if reason not in (None, "malformed") and not settings.fetch_allow_private:
            raise ApiError(422, f"input {uri}: {target.host} is a {reason} address")
        return uri
    if uri.startswith("s3://"):
        if key.limits.admin or outputs.owns(key.tenant, uri):
            return uri
        raise ApiError(403, f"input {uri[:200]}: {_s3_rule(outputs, key.tenant)}")
    if uri.startswith("file://"):
        if key.limits.admin:
            return uri
        raise ApiError(403, "file:// inputs are only for admin keys; give an https:// URL")
    raise ApiError(422, f"input {uri[:100]!r}: give an https:// URL or an s3:// object")


def _s3_rule(outputs: Outputs, tenant: str) -> str:
    """Which s3:// objects a tenant may name, in its own URI form (never a server path)."""
    advice = "upload the image with a multipart POST, or give an https:// URL"
    if outputs.root.startswith("s3://"):
        return f"s3:// inputs must be under {outputs.tenant_root(tenant)} ({advice})"
    return f"this server keeps images on its own disk, not S3, so s3:// inputs fail; {advice}"


def check_webhook(url: str | None, settings: Settings) -> str | None:
    """A webhook URL the deliverer will try: https (http only where private addresses
    are allowed, i.e. tests), no credentials, and not a literal private address."""
    if url is None:
        return None
    plain_http = url.startswith("http://") and settings.fetch_allow_private
    try:
        target = parse_target("https://" + url[len("http://") :] if plain_http else url)
    except InputInvalid as exc:
        raise ApiError(422, f"webhook: {exc.message}") from None
    reason = refusal_reason(target.host.strip("[]"))
    if reason not in (None, "malformed") and not settings.fetch_allow_private:
        raise ApiError(422, f"webhook {url}: {target.host} is a {reason} address")
    return url


@dataclass(frozen=True)
class VettedUpload:
    data: bytes
    format: str  # Pillow's name: JPEG, PNG, WEBP, TIFF, BMP
    width: int
    height: int


def vet_upload(data: bytes, key: ApiKey, settings: Settings, name: str | None) -> VettedUpload:
    """Refuse an upload that is too big, not a supported image, or claims too many pixels."""
    # 1. bytes: the key's cap, else the server's
    cap = key.limits.max_image_bytes or settings.max_input_bytes
    if len(data) > cap:
        raise ApiError(
            413,
            f"upload is {describe_size(len(data))}; this key's limit is {describe_size(cap)}",
            code="input_too_large",
        )
    if not data:
        raise ApiError(422, "the uploaded file is empty", code="input_invalid")
    # 2. format by content
    sniffed = sniff(data)
    if not sniffed.supported:
        raise ApiError(
            415,
            f"upload{f' {name!r}' if name else ''} is {sniffed.kind}, not a supported image; "
            "send JPEG, PNG, WebP, TIFF, GIF, BMP, HEIC or AVIF",
            code="unsupported_image",
        )
    # 3. dimensions from the header, under the key's pixel cap
    limits = settings
    if key.limits.max_image_pixels:
        limits = settings.model_copy(update={"max_input_pixels": key.limits.max_image_pixels})
    try:
        if sniffed.size is not None:
            check_size(*sniffed.size, limits)
        # 4. Pillow's header parse of the detected format (no pixels decoded)
        width, height = _header_size(data, sniffed.kind)
        check_size(width, height, limits)
    except InputTooLarge as exc:
        raise ApiError(413, exc.message, code="input_too_large") from None
    except InputInvalid as exc:
        raise ApiError(422, exc.message, code="input_invalid") from None
    return VettedUpload(data, sniffed.kind, width, height)


def _header_size(data: bytes, kind: str) -> tuple[int, int]:
    try:
        with Image.open(io.BytesIO(data), formats=[kind]) as image:
            return image.size
    except Image.DecompressionBombError as exc:
        raise InputTooLarge(f"{kind} image is too large to decode safely: {exc}") from None
    except Exception as exc:  # Pillow's plugins raise many types for a corrupt header
        raise InputInvalid(f"truncated or corrupt {kind}: {exc}") from None
