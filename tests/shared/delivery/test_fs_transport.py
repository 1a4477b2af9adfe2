"""The embedded broker under concurrent publishers and consumers, with torn files among them."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

from tests.support import ROOT, wait_for

QUEUE = "stress"
PUBLISHERS, PER_PUBLISHER, CONSUMERS = 3, 300, 3
# Files no publisher of ours writes, but a crash, a disk full or another writer can leave.
BAD_FILES = {"empty": b"", "torn": b'{"body": "eyJpZCI6', "binary": b"\xff\xfe\x00", "list": b"[]"}
EACH_BAD = 10


def _peer(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.fixtures.fs_broker_peer", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _inject_bad_files(queue_dir: Path) -> list[str]:
    """Drop bad files into the queue, spread over the publishers' run; return their names."""
    names = []
    for content in BAD_FILES.values():
        for _ in range(EACH_BAD):
            name = f"{round(time.monotonic() * 1000)}_{uuid.uuid4()}.{QUEUE}.msg"
            (queue_dir / name).write_bytes(content)
            names.append(name)
            time.sleep(0.01)  # interleaved with the publishers' messages, not all at once
    return names


def _received(outs: list[Path]) -> Counter[str]:
    return Counter(line for out in outs if out.exists() for line in out.read_text().split())


def test_concurrent_peers_and_torn_files_lose_no_message_and_kill_no_consumer(
    tmp_path: Path,
) -> None:
    broker = tmp_path / "broker"
    (broker / "queue").mkdir(parents=True)
    (broker / "control").mkdir()
    stop = tmp_path / "stop"
    outs = [tmp_path / f"consumer-{i}.txt" for i in range(CONSUMERS)]
    consumers = [_peer("consume", str(broker), QUEUE, str(out), str(stop)) for out in outs]
    publishers = [
        _peer("publish", str(broker), QUEUE, f"p{i}", str(PER_PUBLISHER)) for i in range(PUBLISHERS)
    ]
    try:
        bad = _inject_bad_files(broker / "queue")
        for proc in publishers:
            assert proc.wait(120) == 0, proc.stdout.read().decode()  # type: ignore[union-attr]
        expected = {f"p{p}-{i}" for p in range(PUBLISHERS) for i in range(PER_PUBLISHER)}
        wait_for(
            lambda: len(_received(outs)) == len(expected) or _dead(consumers),
            120,
            0.1,
            f"{len(expected)} messages taken",
        )
    finally:
        stop.touch()
        codes = [proc.wait(60) for proc in consumers]
    logs = [proc.stdout.read().decode() for proc in consumers]  # type: ignore[union-attr]
    assert codes == [0] * CONSUMERS, logs  # no consumer died of a broker file
    received = _received(outs)
    assert set(received) == expected
    assert max(received.values()) == 1  # each message delivered once
    assert sorted(p.name for p in (broker / "quarantine").iterdir()) == sorted(bad)
    assert not list((broker / "queue").iterdir())
    assert not list((broker / "taken").iterdir())


def _dead(procs: list[subprocess.Popen[bytes]]) -> bool:
    return any(proc.poll() is not None for proc in procs)
