"""The S3 store: objects in one bucket under a key prefix (AWS S3, MinIO, any S3-compatible server).

Why boto3 (and not obstore): the API serves under gevent, and boto3 talks HTTP through urllib3's
Python sockets, which gevent makes cooperative, so a slow download holds one greenlet, not the
process; obstore's Rust runtime would block the process's one thread while it waits. boto3 also
presigns URLs, streams a body in chunks, and is the SDK every S3-compatible server tests against.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from shared.config import Settings, split_artifact_url
from shared.data.stores import StoredObject
from shared.errors import NotFound, StorageUnavailable

MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
DELETE_BATCH = 1000  # S3's limit of keys per DeleteObjects call


class S3Store:
    """Keeps objects in one bucket, every key under the prefix of ``AIGC_ARTIFACT_URL``."""

    scheme = "s3"

    def __init__(self, settings: Settings) -> None:
        _, self.bucket, prefix = split_artifact_url(settings.artifact_url or "")
        self.prefix = f"{prefix}/" if prefix else ""
        self._settings = settings
        self._clients: dict[tuple[int, str | None], Any] = {}
        self._lock = threading.Lock()

    def _client(self, endpoint: str | None = None) -> Any:
        """Return this process's client for an endpoint, made on first use.

        Made after the fork (gunicorn, Celery's prefork), so no child shares its parent's pool.
        """
        endpoint = endpoint or self._settings.s3_endpoint_url
        key = (os.getpid(), endpoint)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = _make_client(self._settings, endpoint)
            return self._clients[key]

    def _key(self, key: str) -> str:
        return self.prefix + key

    def put(self, key: str, data: bytes) -> None:
        """Upload ``data`` in one PUT (S3 writes an object whole or not at all)."""
        with _translated(key):
            self._client().put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def put_file(self, key: str, path: Path) -> None:
        """Upload a local file (in parts when large)."""
        with _translated(key):
            self._client().upload_file(str(path), self.bucket, self._key(key))

    def open(self, key: str) -> BinaryIO:
        """Return the object's body as a stream read in chunks; NotFound if it is missing."""
        with _translated(key):
            return self._client().get_object(Bucket=self.bucket, Key=self._key(key))["Body"]

    def download(self, key: str, dest: Path) -> None:
        """Download to ``dest`` (boto3 writes a temporary file and renames it)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        with _translated(key):
            self._client().download_file(self.bucket, self._key(key), str(dest))

    def delete(self, key: str) -> None:
        """Delete the object (S3 answers a missing one with success too)."""
        with _translated(key):
            self._client().delete_object(Bucket=self.bucket, Key=self._key(key))

    def delete_prefix(self, prefix: str) -> None:
        """Delete every object under ``prefix``, a thousand per request."""
        keys = [self._key(o.key) for o in self.list(prefix)]
        for start in range(0, len(keys), DELETE_BATCH):
            batch = [{"Key": k} for k in keys[start : start + DELETE_BATCH]]
            with _translated(prefix):
                self._client().delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )

    def list(self, prefix: str) -> Iterator[StoredObject]:
        """Yield the objects under ``prefix`` page by page, with their last-modified times."""
        pages = self._client().get_paginator("list_objects_v2")
        with _translated(prefix):
            for page in pages.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                for obj in page.get("Contents", []):
                    key = obj["Key"].removeprefix(self.prefix)
                    yield StoredObject(key, obj["LastModified"].timestamp(), obj["Size"])

    def presign(self, key: str, ttl_s: int, media_type: str) -> str:
        """Return a SigV4 GET URL valid ``ttl_s`` seconds, for the endpoint clients reach."""
        client = self._client(self._settings.s3_public_endpoint_url)
        params = {"Bucket": self.bucket, "Key": self._key(key), "ResponseContentType": media_type}
        with _translated(key):
            return client.generate_presigned_url("get_object", Params=params, ExpiresIn=ttl_s)

    def local_path(self, key: str) -> Path | None:
        """Return None: no object has a file on this host."""
        return None


def _make_client(settings: Settings, endpoint: str | None) -> Any:
    """Return an S3 client: SigV4 (MinIO requires it), bounded timeouts and retries."""
    config = Config(
        signature_version="s3v4",
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": 3, "mode": "standard"},
        # An API process streams many files at once (gevent): more than botocore's 10.
        max_pool_connections=64,
        # A custom endpoint (MinIO) serves buckets by path, not by host name.
        s3={"addressing_style": "path" if endpoint else "auto"},
    )
    secret = settings.s3_secret_access_key
    session = boto3.session.Session()  # sessions are not thread-safe; each client its own
    return session.client(
        "s3",
        endpoint_url=endpoint,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=secret.get_secret_value() if secret else None,
        config=config,
    )


@contextmanager
def _translated(key: str) -> Iterator[None]:
    """Turn boto3's errors into ours: a missing object is NotFound, anything else retryable."""
    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in MISSING:
            raise NotFound("artifact file is missing") from exc
        raise StorageUnavailable(f"object storage refused {key!r}: {code or exc}") from exc
    except (BotoCoreError, S3UploadFailedError) as exc:
        raise StorageUnavailable(f"object storage failed on {key!r}: {exc}") from exc
