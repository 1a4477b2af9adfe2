"""`aigc up` on embedded defaults, driven with the CLI as a user would."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ops.launcher import free_port
from tests.support import Api, settings_env, wait_for

pytestmark = pytest.mark.integration


def test_aigc_up_runs_a_job_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    env = settings_env(
        {
            "api_port": port,
            "plugins": ["tests.fixtures.jobtypes"],
            "broker_poll_interval_s": 0.05,
            "warmup_imports": False,  # these jobs need no Keras: start the workers light
        }
    )
    aigc = [sys.executable, "-m", "ops.cli"]
    log = tmp_path / "up.log"
    # Run from an empty folder: the embedded defaults live under ./var there.
    up = subprocess.Popen(
        [*aigc, "up", "--no-bootstrap"],
        env=env,
        cwd=tmp_path,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        Api(f"http://127.0.0.1:{port}").wait_ready(60)

        def run(*args):
            return subprocess.run(
                [*aigc, *args],
                env=env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=120,
            )

        # The first start made a local admin key, printed it once, and left it for the CLI.
        key_file = tmp_path / "var" / "admin.key"
        key = key_file.read_text().strip()
        assert key_file.stat().st_mode & 0o777 == 0o600
        assert log.read_text().count(key) == 1
        assert Api(f"http://127.0.0.1:{port}").get("/v1/jobs").status_code == 401
        assert Api(f"http://127.0.0.1:{port}", key).get("/v1/jobs").status_code == 200
        created = run("keys", "create", "--tenant", "team-b", "-s", "jobs:read")
        assert created.returncode == 0, created.stderr
        team_b = Api(f"http://127.0.0.1:{port}", created.stdout.strip())
        assert team_b.get("/v1/jobs").status_code == 200
        listed = run("keys", "list")
        assert "team-b" in listed.stdout and created.stdout.strip() not in listed.stdout
        key_id = next(line.split()[0] for line in listed.stdout.splitlines() if "team-b" in line)
        assert run("keys", "revoke", key_id).returncode == 0
        wait_for(lambda: team_b.get("/v1/jobs").status_code == 401, 30, 0.2, "the revoke")
        submitted = run("submit", "test.sleep", "-p", "seconds=0.2", "-p", "steps=2")
        assert submitted.returncode == 0, submitted.stderr
        job_id = submitted.stdout.strip()
        waited = run("wait", job_id, "--timeout", "90")
        assert waited.returncode == 0, waited.stdout + waited.stderr + log.read_text()[-3000:]
        assert '"succeeded"' in waited.stdout
        failed = run("wait", run("submit", "test.fail").stdout.strip(), "--timeout", "60")
        assert failed.returncode == 1
        assert (tmp_path / "var" / "aigc.sqlite3").exists()
        items = tmp_path / "items.jsonl"
        items.write_text("".join(f'{{"custom_id": "c{i}", "params": {{}}}}\n' for i in range(5)))
        batch = run("batch", "submit", str(items), "--type", "test.sleep")
        assert batch.returncode == 0, batch.stderr
        out = tmp_path / "results.jsonl"
        waited = run("batch", "wait", batch.stdout.strip(), "--out", str(out))
        assert waited.returncode == 0, waited.stderr
        assert [json.loads(x)["custom_id"] for x in out.read_text().splitlines()] == [
            f"c{i}" for i in range(5)
        ]
    finally:
        up.send_signal(signal.SIGINT)
        code = up.wait(60)
    assert code == 0, log.read_text()[-3000:]
    assert "aigc-queue stopped" in log.read_text()[-3000:]
