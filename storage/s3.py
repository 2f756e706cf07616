"""Objects in an S3 bucket (AWS or any S3-compatible endpoint) under a key prefix.

Errors are translated once, in `_translated`: an endpoint that cannot be reached (or
answers 5xx / SlowDown) is `StorageUnavailable`, worth another attempt; a missing key
or bucket is `ObjectNotFound`; refused credentials end the job with a message naming
the bucket.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from jobs.errors import InputTooLarge, JobError, StorageUnavailable
from storage.base import ObjectNotFound, check_key, check_prefix
from storage.local import describe_size

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from jobs.settings import Settings

CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 60
MAX_ATTEMPTS = 3  # botocore's own retries of throttling, 5xx and dropped connections
_NOT_FOUND = {"NoSuchKey", "NoSuchBucket", "NotFound", "404"}
_UNAVAILABLE = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "503"}


def s3_client(settings: Settings) -> S3Client:
    """A boto3 S3 client for the configured endpoint; one per process and endpoint."""
    return _cached_client(
        os.getpid(),  # a client must not cross a fork: its connection pool would be shared
        settings.s3_endpoint_url,
        settings.s3_region,
        settings.s3_access_key_id,
        settings.s3_secret_access_key,
    )


@lru_cache(maxsize=8)
def _cached_client(
    pid: int, endpoint: str | None, region: str, key_id: str | None, secret: str | None
) -> S3Client:
    config = Config(
        region_name=region,
        signature_version="s3v4",
        # Custom endpoints (SeaweedFS, MinIO, Ceph) rarely serve bucket subdomains.
        s3={"addressing_style": "path" if endpoint else "auto"},
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=config,
    )


class S3Storage:
    """Keys under `prefix` in `bucket`; `put` sets server-side encryption when `sse`."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        client: S3Client,
        *,
        sse: str | None = None,
        presign_expires_s: int = 3600,
    ) -> None:
        prefix = prefix.strip("/")
        self.bucket = bucket
        self.prefix = check_prefix(f"{prefix}/") if prefix else ""
        self.client = client
        self.sse = sse
        self.presign_expires_s = presign_expires_s

    @classmethod
    def from_settings(cls, bucket: str, prefix: str, settings: Settings) -> S3Storage:
        """A store wired to the settings' endpoint, encryption and presign expiry."""
        return cls(
            bucket,
            prefix,
            s3_client(settings),
            sse=settings.s3_sse,
            presign_expires_s=settings.presign_expires_s,
        )

    def __repr__(self) -> str:
        return f"S3Storage({self.uri('')!r})"

    @property
    def endpoint(self) -> str:
        return str(self.client.meta.endpoint_url)

    def put(self, key: str, data: bytes, content_type: str) -> str:
        # A write re-sent after an outage (its first copy landed, the answer was lost) or
        # by a redelivered job finds these very bytes there and writes nothing: a
        # versioned bucket keeps one version per output, not one per attempt.
        if self._holds(key, data):
            return self.uri(key)
        extra: dict[str, Any] = {"ServerSideEncryption": self.sse} if self.sse else {}
        with self._translated("write", key):
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=data,
                ContentType=content_type,
                **extra,
            )
        return self.uri(key)

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        with self._translated("read", key):
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            body = response["Body"]
            try:
                size = response["ContentLength"]
                if max_bytes is not None and size > max_bytes:
                    raise InputTooLarge(
                        f"{self.uri(key)} is {describe_size(size)}; "
                        f"the limit is {describe_size(max_bytes)}"
                    )
                return body.read()
            finally:
                body.close()

    def _holds(self, key: str, data: bytes) -> bool:
        """The object at `key` has exactly `data` (a single-part upload's ETag is the MD5 of
        its bytes, with SSE-S3 too; a multipart or KMS ETag never matches, so we write)."""
        try:
            with self._translated("write", key):  # the caller is writing: say so
                head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ObjectNotFound:
            return False
        digest = hashlib.md5(data, usedforsecurity=False).hexdigest()
        return bool(
            head.get("ContentLength") == len(data) and head.get("ETag", "").strip('"') == digest
        )

    def exists(self, key: str) -> bool:
        try:
            with self._translated("check", key):
                self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ObjectNotFound:
            return False
        return True

    def list(self, prefix: str = "") -> Iterator[str]:
        full = self.prefix + check_prefix(prefix)
        paginator = self.client.get_paginator("list_objects_v2")
        with self._translated("list", prefix):
            # S3 lists keys in UTF-8 byte order, which is code point order: sorted.
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                for item in page.get("Contents", []):
                    yield item["Key"][len(self.prefix) :]

    def url(self, key: str, expires_s: int | None = None) -> str:
        with self._translated("presign", key):
            return self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self._key(key)},
                ExpiresIn=expires_s or self.presign_expires_s,
            )

    def delete(self, key: str) -> None:
        with self._translated("delete", key):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    @contextmanager
    def _translated(self, action: str, key: str) -> Iterator[None]:
        """Turn botocore's failures into darkroom's errors, naming endpoint and object."""
        try:
            yield
        except ClientError as exc:
            raise self._client_error(exc, action, key) from exc
        except (BotoConnectionError, BotoCoreError) as exc:
            raise StorageUnavailable(
                f"S3 endpoint {self.endpoint} is unreachable ({action} {self.uri(key)}): {exc}"
            ) from exc

    def _client_error(self, exc: ClientError, action: str, key: str) -> JobError:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        where = self.uri(key)
        if code in _NOT_FOUND:
            missing = "bucket" if code == "NoSuchBucket" else "object"
            return ObjectNotFound(f"not found: {where} (no such {missing})")
        if code in _UNAVAILABLE or status >= 500:
            return StorageUnavailable(
                f"S3 endpoint {self.endpoint} failed to {action} {where}: {code or status}"
            )
        # Refused credentials, a policy, a bad request: another attempt would fail the same.
        return JobError(f"S3 refused to {action} {where}: {code} {error.get('Message', '')}")
