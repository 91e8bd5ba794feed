"""Object store on S3 or any S3-compatible server (MinIO, Ceph, moto).

One boto3 client per store, made on first use: boto3 clients are thread-safe,
so FastAPI's threadpool and a worker's threads share it, and no network call
(not even the instance-role credential lookup) happens in the constructor.
Credentials come from the standard AWS chain (env vars, profile, instance or
pod role); none are ever passed in code.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from soundstage.errors import AppError
from soundstage.storage.base import (
    DEFAULT_CHUNK_SIZE,
    ObjectNotFoundError,
    StorageUnavailableError,
    StoredObject,
    check_range,
    content_type_for,
    validate_object_name,
)

# A down endpoint must fail a request in seconds, not minutes: a refused
# connection fails at once; a black-holed or hung one costs at most
# TOTAL_ATTEMPTS x the timeout plus backoff.
CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 10.0  # per socket read, so long streamed downloads are fine
TOTAL_ATTEMPTS = 3  # botocore's "standard" retry mode default, initial call included
# check() gets its own single-attempt client with short timeouts, so the
# readiness probe answers within its own deadline instead of holding an API
# thread through three 10 s read timeouts.
PROBE_TIMEOUT_S = 2.0
# FastAPI's threadpool runs 40 threads; every streamed download holds a
# connection for its whole duration, so the botocore default of 10 is too few.
MAX_POOL_CONNECTIONS = 32

_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_NO_BUCKET_CODES = frozenset({"NoSuchBucket"})


class S3ObjectStore:
    """Objects are the keys ``<prefix>/<name>`` in one bucket."""

    kind: str = "s3"

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
    ) -> None:
        if not bucket:
            raise ValueError("an S3 store needs a bucket name")
        self.bucket = bucket
        self.prefix = "/".join(part for part in prefix.split("/") if part)
        self.endpoint_url = endpoint_url
        self.region = region
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3ObjectStore({self._where()!r})"

    def put_bytes(self, name: str, data: bytes, content_type: str | None = None) -> StoredObject:
        key = self._key(name)
        try:
            self._client().put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                ContentType=content_type or content_type_for(name),
            )
        except (ClientError, BotoCoreError) as exc:
            raise self._translate(exc, "put", key) from exc
        return self.stat(name)

    def put_file(self, name: str, path: Path, content_type: str | None = None) -> StoredObject:
        """Upload through the transfer manager: multipart, in parallel, for big files."""
        key = self._key(name)
        try:
            self._client().upload_file(
                str(path),
                self.bucket,
                key,
                ExtraArgs={"ContentType": content_type or content_type_for(name)},
            )
        except (ClientError, BotoCoreError, S3UploadFailedError) as exc:
            raise self._translate(exc, "upload", key) from exc
        return self.stat(name)

    def stat(self, name: str) -> StoredObject:
        key = self._key(name)
        try:
            head = self._client().head_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise self._translate(exc, "stat", key, name=name) from exc
        etag = head.get("ETag")
        modified: datetime = head["LastModified"]
        return StoredObject(
            name=name,
            size=int(head["ContentLength"]),
            content_type=head.get("ContentType") or content_type_for(name),
            modified=modified.astimezone(UTC),
            etag=etag.strip('"') if etag else None,
        )

    def iter_range(
        self,
        name: str,
        start: int = 0,
        end: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> Iterator[bytes]:
        """GET with a ``Range`` header now (so a missing key raises here), stream lazily."""
        check_range(start, end, chunk_size)
        key = self._key(name)
        request: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if start > 0 or end is not None:
            request["Range"] = f"bytes={start}-{'' if end is None else end}"
        try:
            response = self._client().get_object(**request)
        except (ClientError, BotoCoreError) as exc:
            if _error_code(exc) == "InvalidRange":
                return iter(())  # the object exists but the range starts past its end
            raise self._translate(exc, "get", key, name=name) from exc
        return self._stream(response["Body"], key, chunk_size)

    def read_bytes(self, name: str) -> bytes:
        return b"".join(self.iter_range(name))

    def delete(self, name: str) -> None:
        key = self._key(name)
        try:
            self._client().delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            if _error_code(exc) in _MISSING_CODES:
                return  # S3 itself answers 204 for a missing key; some look-alikes 404
            raise self._translate(exc, "delete", key) from exc

    def names(self, prefix: str) -> list[str]:
        key = self._key(prefix)
        strip = len(key) - len(prefix)
        try:
            pages = self._client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=key)
            return sorted(item["Key"][strip:] for page in pages for item in page.get("Contents", []))
        except (ClientError, BotoCoreError) as exc:
            raise self._translate(exc, "list", key) from exc

    def check(self) -> None:
        """``HeadBucket``: proves the endpoint answers, the credentials work and the bucket exists."""
        try:
            self._client(probe=True).head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise self._translate(exc, "check") from exc

    def _key(self, name: str) -> str:
        validate_object_name(name)
        return f"{self.prefix}/{name}" if self.prefix else name

    def _client(self, *, probe: bool = False) -> Any:
        """The shared client, created once under a lock by whichever thread needs it first."""
        purpose = "probe" if probe else "data"
        client = self._clients.get(purpose)
        if client is None:
            with self._lock:
                client = self._clients.get(purpose)
                if client is None:
                    client = self._clients[purpose] = self._make_client(probe=probe)
        return client

    def _make_client(self, *, probe: bool) -> Any:
        options: dict[str, Any] = {}
        if self.endpoint_url:
            # MinIO and most self-hosted servers only do path-style addressing,
            # and some reject the CRC checksums newer botocore adds by default.
            options["s3"] = {"addressing_style": "path"}
            options["request_checksum_calculation"] = "when_required"
            options["response_checksum_validation"] = "when_required"
        config = Config(
            connect_timeout=PROBE_TIMEOUT_S if probe else CONNECT_TIMEOUT_S,
            read_timeout=PROBE_TIMEOUT_S if probe else READ_TIMEOUT_S,
            retries={
                "total_max_attempts": 1 if probe else TOTAL_ATTEMPTS,
                "mode": "standard",
            },
            max_pool_connections=MAX_POOL_CONNECTIONS,
            **options,
        )
        # A session of our own: boto3's default session is not safe to share
        # across threads, a client made from a private one is.
        session = boto3.session.Session()
        try:
            return session.client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name=self.region,
                config=config,
            )
        except (BotoCoreError, ValueError) as exc:
            raise StorageUnavailableError(f"cannot configure S3 client for {self._where()}: {exc}") from exc

    def _stream(self, body: Any, key: str, chunk_size: int) -> Iterator[bytes]:
        """Yield the body in chunks; a dropped connection mid-stream becomes a 503 error."""
        try:
            yield from body.iter_chunks(chunk_size)
        except BotoCoreError as exc:
            raise self._translate(exc, "read", key) from exc
        finally:
            body.close()

    def _translate(
        self,
        exc: Exception,
        action: str,
        key: str | None = None,
        *,
        name: str | None = None,
    ) -> AppError:
        """Map a boto error to ours: a missing key is a 404, everything else a 503."""
        code = _error_code(exc)
        if name is not None and code in _MISSING_CODES:
            return ObjectNotFoundError(name)
        where = self._where(key)
        if code in _NO_BUCKET_CODES or (key is None and code in _MISSING_CODES):
            message = f"S3 bucket {self.bucket!r} does not exist ({where})"
        elif code in {
            "403",
            "AccessDenied",
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
        }:
            message = f"S3 {action} denied for {where}: {code}"
        elif isinstance(exc, ClientError):
            detail = exc.response.get("Error", {}).get("Message") or code
            message = f"S3 {action} failed for {where}: {code} {detail}".rstrip()
        else:
            message = f"S3 {action} failed for {where}: {exc}"
        details = {
            "bucket": self.bucket,
            "key": key,
            "endpoint": self.endpoint_url,
            "code": code,
        }
        return StorageUnavailableError(message, details=details)

    def _where(self, key: str | None = None) -> str:
        location = f"s3://{self.bucket}/{key if key is not None else self.prefix}"
        return f"{location} at {self.endpoint_url}" if self.endpoint_url else location


def _error_code(exc: Exception) -> str | None:
    """The S3 error code of a ``ClientError`` (``"404"`` for HEAD requests), else None."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "")) or None
    return None
