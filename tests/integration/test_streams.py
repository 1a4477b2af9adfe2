"""Server-sent events through the real API and worker: text as it is produced, resumable.

With Redis (the PostgreSQL stack) text arrives piece by piece while the job runs; on the
embedded defaults it arrives whole, just before the result. Either way the pieces add up to
the result's text, and a reconnect with ``Last-Event-ID`` neither loses nor repeats one.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ops.client import Client
from tests.conftest import Stack
from tests.support import read_events

pytestmark = pytest.mark.integration

CHUNKS = 6


def _text(events: list[Any]) -> str:
    return "".join(json.loads(e.data)["text"] for e in events if e.event == "text")


def _stream_job(stack: Stack, seconds: float = 0.3) -> str:
    return stack.api.submit("test.stream", {"chunks": CHUNKS, "seconds": seconds})["id"]


def test_text_arrives_as_it_is_produced_and_adds_up_to_the_result(stack: Stack) -> None:
    job_id = _stream_job(stack)
    events = read_events(stack.api, f"/v1/jobs/{job_id}/events")
    names = [e.event for e in events]
    assert names[0] == "status" and names[-1] == "result", names
    result = json.loads(events[-1].data)
    assert result["status"] == "succeeded" and result["id"] == job_id
    assert _text(events) == result["result"]["text"]
    assert {"running"} <= {json.loads(e.data)["status"] for e in events if e.event == "status"}
    assert "progress" in names
    if stack.backend == "postgres":  # with Redis, text came before the job ended, in pieces
        assert names.index("text") < names.index("result")
        assert names.count("text") >= CHUNKS // 2, names
    ids = [e.id for e in events]
    assert all(ids) and len(set(ids)) == len(ids), ids


def test_a_reconnect_with_last_event_id_loses_and_repeats_nothing(stack: Stack) -> None:
    job_id = _stream_job(stack)
    path = f"/v1/jobs/{job_id}/events"
    first = read_events(stack.api, path, stop_after=4)  # then the connection drops
    rest = read_events(stack.api, path, last_id=first[-1].id)
    events = first + rest
    result = json.loads(events[-1].data)
    assert events[-1].event == "result"
    assert _text(events) == result["result"]["text"]
    versions = [int(e.id.split(".")[0]) for e in events if e.event in ("status", "progress")]
    assert versions == sorted(set(versions)), versions  # no status or progress sent twice


def test_a_stream_opened_after_the_end_replays_the_result_and_closes(stack: Stack) -> None:
    job_id = _stream_job(stack, seconds=0)
    done = stack.api.wait(job_id)
    events = read_events(stack.api, f"/v1/jobs/{job_id}/events")
    assert events[-1].event == "result" and json.loads(events[-1].data) == done
    assert _text(events) == done["result"]["text"]


def test_an_idle_stream_gets_heartbeats(stack: Stack) -> None:
    job_id = stack.api.submit("test.sleep", {"seconds": 2.5})["id"]
    with stack.api.get(f"/v1/jobs/{job_id}/events", stream=True, timeout=30) as resp:
        body = b"".join(resp.iter_content(chunk_size=None))
    assert b": keep-alive" in body
    assert body.rstrip().splitlines()[-1].startswith(b"data: ")


def test_a_batch_stream_sends_its_counts_until_it_ends(stack: Stack) -> None:
    items = [{"custom_id": str(i), "params": {"seconds": 0.3}} for i in range(4)]
    resp = stack.api.post("/v1/batches", json={"type": "test.sleep", "items": items})
    assert resp.status_code == 202, resp.text
    events = read_events(stack.api, f"/v1/batches/{resp.json()['id']}/events")
    assert [e.event for e in events][-1] == "result"
    assert all(e.event == "counts" for e in events[:-1])
    final = json.loads(events[-1].data)
    assert final["status"] == "completed" and final["counts"]["succeeded"] == 4


def test_a_bad_last_event_id_is_a_422_naming_the_header(stack: Stack) -> None:
    job_id = _stream_job(stack, seconds=0)
    resp = stack.api.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": "nope"})
    assert resp.status_code == 422
    assert resp.headers["Content-Type"] == "application/problem+json"
    assert resp.json()["errors"][0]["field"] == "Last-Event-ID"


def test_the_cli_client_follows_a_stream_to_the_result(stack: Stack) -> None:
    client = Client(stack.api.base_url, stack.api.key)
    job_id = _stream_job(stack, seconds=0.2)
    events = list(client.events(job_id))
    assert events[-1][0] == "result" and events[-1][1]["status"] == "succeeded"
    text = "".join(data["text"] for name, data in events if name == "text")
    assert text == events[-1][1]["result"]["text"]
