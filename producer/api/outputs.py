"""Where a tenant's bytes live, and the links that read them back.

Everything the API writes or has written for a tenant sits under
`<settings.output>/tenants/<tenant>/`: `uploads/` (images posted to the API, named by
their sha256) and `outputs/` (results, named by job id). On S3 a result's link is a
presigned GET that expires after `settings.presign_expires_s`; on a local disk it is
this API's `GET /v1/outputs/<key>`, which serves only the caller's own tenant.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from jobs.errors import InputInvalid, JobError
from jobs.schema import OutputSpec
from producer.api.models import OutputView
from producer.sources import destination_uri
from storage import LocalStorage, open_location, read_uri
from storage.images import CONTENT_TYPES, decode_image, encode_image
from storage.location import file_uri_path, split_s3_uri

if TYPE_CHECKING:
    from jobs.settings import Settings

EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "TIFF": "tiff", "BMP": "bmp"}
MEDIA_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
INLINE_QUALITY = 80


class Outputs:
    """The tenant folders in the configured output location."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = destination_uri(settings.output)  # file:///abs/dir/ or s3://bucket/prefix/
        self.local_root = None if self.root.startswith("s3://") else file_uri_path(self.root)

    def tenant_root(self, tenant: str) -> str:
        return f"{self.root}tenants/{tenant}/"

    def outputs_uri(self, tenant: str) -> str:
        """The folder a tenant's job results are written to (a job's `output.uri`)."""
        return f"{self.tenant_root(tenant)}outputs/"

    def owns(self, tenant: str, uri: str) -> bool:
        """Whether `uri` lies in the tenant's folder (no '..' can climb out of it)."""
        inside = uri.startswith(self.tenant_root(tenant))
        return inside and ".." not in uri[len(self.tenant_root(tenant)) :].split("/")

    def store_upload(self, tenant: str, data: bytes, pillow_format: str) -> str:
        """Keep an uploaded (already vetted) image; returns the URI a job reads it by."""
        ext = EXTENSIONS[pillow_format]
        name = f"{hashlib.sha256(data).hexdigest()[:40]}.{ext}"
        storage, prefix = open_location(f"{self.tenant_root(tenant)}uploads/", self.settings)
        return storage.put(prefix + name, data, CONTENT_TYPES.get(ext, "image/jpeg"))

    def link(self, output_uri: str, base_url: str) -> OutputView:
        """A URL the client can GET the result from."""
        fmt = output_uri.rsplit(".", 1)[-1]
        fmt = "jpeg" if fmt == "jpg" else fmt
        if output_uri.startswith("s3://"):
            from storage.s3 import S3Storage

            bucket, key = split_s3_uri(output_uri)
            expires = self.settings.presign_expires_s
            url = S3Storage.from_settings(bucket, "", self.settings).url(key, expires)
            return OutputView(url=url, format=fmt, expires_at=time.time() + expires)
        key = self.local_key(output_uri)
        return OutputView(url=f"{base_url.rstrip('/')}/v1/outputs/{quote(key)}", format=fmt)

    def local_key(self, output_uri: str) -> str:
        """The key under the local output root of a `file://` result."""
        if self.local_root is None:
            raise InputInvalid(f"{output_uri} is not in this API's output location")
        path = file_uri_path(output_uri)
        try:
            return path.relative_to(self.local_root).as_posix()
        except ValueError:
            raise InputInvalid(f"{output_uri} is not in this API's output location") from None

    def read_local(self, key: str) -> tuple[bytes, str]:
        """Bytes and media type of a local result (the key is checked as a storage key)."""
        if self.local_root is None:
            raise InputInvalid("outputs are on S3 here; use the presigned URL")
        data = LocalStorage(Path(self.local_root)).get(key, max_bytes=None)
        ext = key.rsplit(".", 1)[-1].lower()
        return data, MEDIA_TYPES.get(ext, "application/octet-stream")


def read_webp(output_uri: str, settings: Settings, limit: int) -> bytes | None:
    """The result's bytes as WebP (re-encoded if it was written as PNG or JPEG)."""
    capped = settings.model_copy(update={"max_input_bytes": max(limit, 1)})
    try:
        data = read_uri(output_uri, capped)
    except JobError:  # over the limit, or gone (expired from the bucket)
        return None
    if output_uri.endswith(".webp"):
        return data
    image = decode_image(data, settings)
    webp = encode_image(image, OutputSpec(format="webp", quality=INLINE_QUALITY))
    return webp if len(webp) <= limit else None
