"""A new user's first minutes: ``python -m bench.first_minutes [--minutes 15]``.

Clones this repository's HEAD into a fresh folder and runs ``make run`` there, install included,
as a new user would. It records when the API first answers and when each version of the default
models lands, then, after ``--minutes``, stops the stack and scores the latest version of each
with ``bench.quality`` (same held-out split, baselines measured in the same run).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from ops.launcher import free_port

ROOT = Path(__file__).resolve().parents[1]
POLL_S = 1.0
VERSIONS = text(
    "SELECT m.name, v.version, v.metrics FROM model_versions v "
    "JOIN models m ON m.id = v.model_id ORDER BY m.name, v.version"
)


def _api_up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


def _versions(db: Path) -> list[tuple[str, int, Any]]:
    if not db.exists():
        return []
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(VERSIONS)]
    except Exception:  # not migrated yet, or busy: look again next second
        return []
    finally:
        engine.dispose()


def watch(folder: Path, port: int, started: float, until: float) -> dict[str, Any]:
    """Poll the API and the database until ``until``; return when each thing first happened."""
    api_ready_s: float | None = None
    landed: dict[str, dict[str, Any]] = {}
    while time.monotonic() < until:
        now = time.monotonic() - started
        if api_ready_s is None and _api_up(port):
            api_ready_s = now
        for name, version, metrics in _versions(folder / "var" / "aigc.sqlite3"):
            ref = f"{name}:{version}"
            if ref not in landed:
                metrics = json.loads(metrics) if isinstance(metrics, str) else metrics
                landed[ref] = {"ref": ref, "at_s": round(now, 1), "metrics": metrics}
                print(f"{now:7.1f} s  {ref} {metrics}", flush=True)
        time.sleep(POLL_S)
    return {"api_ready_s": api_ready_s and round(api_ready_s, 1), "versions": list(landed.values())}


def _latest(versions: list[dict[str, Any]], name: str) -> str | None:
    refs = [v["ref"] for v in versions if v["ref"].startswith(f"{name}:")]
    return refs[-1] if refs else None


def quality(folder: Path, text_ref: str | None, image_ref: str | None) -> dict[str, Any]:
    """Score the given versions with bench.quality, run in the clone against its own data."""
    cmd = [str(folder / ".venv/bin/python"), "-m", "bench.quality"]
    cmd += ["--text", text_ref or "", "--image", image_ref or ""]
    out = subprocess.run(cmd, cwd=folder, env=_clean_env(), capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr[-2000:]}
    return json.loads(out.stdout[out.stdout.index("{") :])


def _clean_env() -> dict[str, str]:
    # The embedded defaults, as on a fresh clone: nothing of this shell's AIGC_ settings.
    return {k: v for k, v in os.environ.items() if not k.startswith(("AIGC_", "TEST_"))}


def _stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run(minutes: float) -> dict[str, Any]:
    """Clone, ``make run``, watch for ``minutes``, stop, and score the latest versions."""
    folder = Path(tempfile.mkdtemp(prefix="aigc-first-")) / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(folder)], check=True)
    port = free_port()
    env = {**_clean_env(), "AIGC_API_PORT": str(port)}
    with open(folder.parent / "make-run.log", "w") as log:
        started = time.monotonic()
        proc = subprocess.Popen(
            ["make", "run"],
            cwd=folder,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            timeline = watch(folder, port, started, started + minutes * 60)
        finally:
            _stop(proc)
    versions = timeline["versions"]
    refs = (_latest(versions, "text-default"), _latest(versions, "image-default"))
    firsts = {
        f"first_{kind}_{since}_s": _since(versions, f"{kind}-default:1", zero)
        for kind in ("text", "image")
        for since, zero in (("after_make_run", 0.0), ("after_api_ready", timeline["api_ready_s"]))
    }
    return {
        "minutes": minutes,
        "clone": str(folder),
        **timeline,
        **firsts,
        "quality": quality(folder, *refs),
    }


def _since(versions: list[dict[str, Any]], ref: str, zero: float | None) -> float | None:
    at = next((v["at_s"] for v in versions if v["ref"] == ref), None)
    return None if at is None or zero is None else round(at - zero, 1)


def main() -> None:
    """Print the first minutes' timeline and quality as JSON, and save it under bench/results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=15.0)
    report = run(parser.parse_args().minutes)
    out = ROOT / "bench" / "results" / "first_minutes.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "versions"}, indent=2))


if __name__ == "__main__":
    main()
