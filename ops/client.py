"""A small HTTP client of the API, used by the CLI."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import requests

from shared.jobs.status import TERMINAL

MAX_RETRY_AFTER_S = 30.0


class ApiError(Exception):
    """Raised when the API answers with a problem document or cannot be reached."""

    def __init__(
        self, status: int, problem: dict[str, Any], retry_after_s: float | None = None
    ) -> None:
        detail = problem.get("detail") or problem.get("title") or "error"
        fields = "; ".join(f"{e['field']}: {e['message']}" for e in problem.get("errors") or [])
        super().__init__(f"{status} {detail}" + (f" ({fields})" if fields else ""))
        self.status = status
        self.problem = problem
        self.retry_after_s = retry_after_s  # set on a 503 that says when to ask again


class Client:
    """Calls the aigc-queue HTTP API."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.http = requests.Session()
        if api_key:
            self.http.headers["Authorization"] = f"Bearer {api_key}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send a request and raise ApiError on a problem answer."""
        try:
            resp = self.http.request(method, self.base_url + path, timeout=self.timeout_s, **kwargs)
        except requests.ConnectionError as exc:
            raise ApiError(0, {"detail": f"cannot reach the API at {self.base_url}"}) from exc
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = {"detail": resp.text[:200]}
            retry = resp.headers.get("Retry-After") if resp.status_code == 503 else None
            raise ApiError(resp.status_code, body, float(retry) if retry else None)
        return resp

    def submit(self, type_: str, model: str | None, params: dict[str, Any]) -> dict[str, Any]:
        """Submit one job and return it."""
        body = {"type": type_, "model": model, "params": params}
        return self.request("POST", "/v1/jobs", json=body).json()

    def job(self, job_id: str) -> dict[str, Any]:
        """Return one job."""
        return self.request("GET", f"/v1/jobs/{job_id}").json()

    def follow(self, job_id: str, wait_s: float = 1.0) -> Iterator[dict[str, Any]]:
        """Yield the job about once a second (at once when it ends) until it is terminal."""
        while True:
            # A long poll: the API answers as soon as the job ends, or after wait_s.
            try:
                job = self.request("GET", f"/v1/jobs/{job_id}", params={"wait_s": wait_s}).json()
            except ApiError as exc:
                if exc.retry_after_s is None:
                    raise
                time.sleep(min(exc.retry_after_s, MAX_RETRY_AFTER_S))  # the API asked for it
                continue
            yield job
            if job["status"] in TERMINAL:
                return

    def wait(
        self,
        job_id: str,
        on_update: Callable[[dict[str, Any]], None] | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Poll until the job is terminal and return it."""
        deadline = time.monotonic() + timeout_s if timeout_s else None
        job: dict[str, Any] = {}
        for job in self.follow(job_id):
            if on_update:
                on_update(job)
            if deadline and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']}")
        return job

    def events(self, job_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield (event, data) of a job's event stream until its result, resuming after a cut."""
        import sseclient

        last_id = None
        while True:
            headers = {"Last-Event-ID": last_id} if last_id else {}
            # The read timeout outlasts the stream's heartbeat (AIGC_SSE_HEARTBEAT_S, 15 s).
            resp = self.request("GET", f"/v1/jobs/{job_id}/events", headers=headers, stream=True)
            with resp:
                # Chunks as they arrive: a fixed-size read would hold a short event back.
                source = resp.iter_content(chunk_size=None)
                for message in sseclient.SSEClient(source).events():
                    last_id = message.id or last_id
                    data = json.loads(message.data)
                    yield message.event, data
                    if message.event == "result":
                        return

    def download(self, url_path: str) -> bytes:
        """Return the bytes of an artifact."""
        return self.request("GET", url_path).content
