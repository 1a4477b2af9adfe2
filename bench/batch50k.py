"""A 50,000-item batch through the real stack: ``python -m bench.batch50k [--items N]``.

Prints how long the API took to accept it (validate, bulk insert, chunked publish), how long it
took to run, and that its results stream back complete and in submit order.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

from bench.context import client_for, serving_stack
from bench.e2e import Client
from bench.stack import fresh_database, settings_values
from shared.jobs.status import BATCH_TERMINAL


def main() -> None:
    """Run one big batch of empty jobs and print the timings as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=50_000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="aigc-batch50k-"))
    fresh_database()
    values = settings_values(workdir)
    with serving_stack(workdir, values) as (svc, stack):
        print(json.dumps(run(client_for(svc.keys, stack.base_url, "bench"), args.items), indent=2))


def run(client: Client, items: int) -> dict[str, object]:
    """Submit, wait and stream one batch of ``items`` bench.noop jobs."""
    body = "".join(json.dumps({"custom_id": f"c{i}", "params": {}}) + "\n" for i in range(items))
    started = time.perf_counter()
    base, http = client.base, client.http
    resp = http.post(
        f"{base}/v1/batches",
        data={"type": "bench.noop"},
        files={"file": ("items.jsonl", io.BytesIO(body.encode()))},
        timeout=600,
    )
    resp.raise_for_status()
    accepted_s = time.perf_counter() - started
    batch_id = resp.json()["id"]
    while (status := http.get(f"{base}/v1/batches/{batch_id}", timeout=30).json())[
        "status"
    ] not in BATCH_TERMINAL:
        time.sleep(2)
    ran_s = time.perf_counter() - started
    count, in_order = 0, True
    with http.get(f"{base}/v1/batches/{batch_id}/results", stream=True, timeout=600) as r:
        for line in r.iter_lines():
            if line:
                in_order &= json.loads(line)["custom_id"] == f"c{count}"
                count += 1
    return {
        "items": items,
        "upload_mb": round(len(body) / 2**20, 1),
        "accepted_s": accepted_s,
        "completed_s": ran_s,
        "jobs_per_s": items / ran_s,
        "status": status["status"],
        "counts": status["counts"],
        "result_lines": count,
        "in_submit_order": in_order,
        "streamed_s": time.perf_counter() - started - ran_s,
    }


if __name__ == "__main__":
    main()
