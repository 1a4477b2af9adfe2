"""A real S3-protocol server for the tests: moto's standalone server, in a process of its own.

moto (5.2) serves a presigned URL without looking at its expiry, which AWS S3 and MinIO
enforce. The server here is moto's own WSGI app behind that one check (a SigV4 query whose
``X-Amz-Date`` + ``X-Amz-Expires`` has passed gets S3's 403 "Request has expired"), so the
tests see a presigned URL refused once its TTL is over. Everything else is moto's.

Run as ``python -m tests.s3server HOST PORT``; the tests use ``S3Server``.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import requests

from ops.launcher import free_port
from tests.support import ROOT, wait_for

ACCESS_KEY = "test-access"
SECRET_KEY = "test-secret"
REGION = "us-east-1"
EXPIRED = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
    b"<Message>Request has expired</Message></Error>"
)


def missing_s3() -> Exception | None:
    """Return why the S3 server cannot run here (moto's server extra missing), or None."""
    try:
        import flask_cors  # noqa: F401  (moto's server needs it)
        import moto.moto_server.werkzeug_app  # noqa: F401
    except ImportError as exc:
        return exc
    return None


class S3Server:
    """moto's S3 server on a free port of 127.0.0.1, started and stopped by the tests."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Return the server's endpoint URL."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> S3Server:
        """Start the server and wait until it answers."""
        cmd = [sys.executable, "-m", "tests.s3server", self.host, str(self.port)]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        wait_for(self._answers, 30, 0.1, "the S3 server to answer")
        return self

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"the S3 server exited with {self.proc.returncode}")
        try:
            return requests.get(f"{self.url}/moto-api/", timeout=1).status_code < 500
        except requests.ConnectionError:
            return False

    def stop(self) -> None:
        """Stop the server; everything it held is gone."""
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def client(self) -> Any:
        """Return a boto3 client of the server, to look behind the store's back."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def settings(self, prefix: str = "artifacts") -> dict[str, Any]:
        """Create a new bucket; return the settings values of a store under ``prefix`` in it."""
        bucket = f"aigc-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=bucket)
        return {
            "artifact_url": f"s3://{bucket}/{prefix}",
            "s3_endpoint_url": self.url,
            "s3_region": REGION,
            "s3_access_key_id": ACCESS_KEY,
            "s3_secret_access_key": SECRET_KEY,
        }


def refuse_expired(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """Wrap a WSGI app so that an expired SigV4 presigned request gets S3's 403."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if "X-Amz-Expires" in query and "X-Amz-Date" in query:
            signed = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")
            ttl = timedelta(seconds=int(query["X-Amz-Expires"][0]))
            if datetime.now(UTC) > signed.replace(tzinfo=UTC) + ttl:
                start_response("403 Forbidden", [("Content-Type", "application/xml")])
                return [EXPIRED]
        return app(environ, start_response)

    return wrapped


def main(host: str, port: int) -> None:
    """Serve moto's S3 (and the rest of moto) with expiring presigned URLs until stopped."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, port, refuse_expired(app), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
