"""How processes are started and supervised: pools, GPU settings, restarts with backoff."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ops.launcher import Supervisor
from ops.processes import (
    JSON_GUNICORN_LOGGER,
    ProcessSpec,
    default_pool,
    gpu_env,
    stack_specs,
    worker_command,
)
from shared.config import Settings
from shared.observe.export import MULTIPROC_ENV


def test_generate_workers_use_threads_and_trainers_prefork() -> None:
    settings = Settings(generate_threads=24, worker_concurrency=1)
    assert default_pool(settings, "generate", None) == ("threads", 24)
    assert default_pool(settings, "train", None) == ("prefork", 1)
    assert default_pool(settings, "generate,train", None) == ("prefork", 1)
    assert default_pool(settings, "generate", "prefork") == ("prefork", 1)


def test_train_workers_recycle_their_child_after_each_job() -> None:
    cmd = worker_command(queues="train", concurrency=1)
    assert cmd[cmd.index("--max-tasks-per-child") + 1] == "1"
    assert "--max-tasks-per-child" not in worker_command(
        queues="generate", concurrency=8, pool="threads"
    )


def test_one_gpu_per_worker_without_preallocation() -> None:
    env = gpu_env(Settings(), "1")
    assert env == {
        "CUDA_VISIBLE_DEVICES": "1",
        "TF_FORCE_GPU_ALLOW_GROWTH": "true",
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
    }
    assert "CUDA_VISIBLE_DEVICES" not in gpu_env(Settings(), None)
    assert gpu_env(Settings(gpu_memory_growth=False), "0") == {"CUDA_VISIBLE_DEVICES": "0"}


def _supervise_until(supervisor: Supervisor, done, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        supervisor.check()
        time.sleep(0.01)


def test_a_crashed_child_is_restarted_with_a_doubling_backoff(tmp_path: Path) -> None:
    settings = Settings(restart_backoff_s=0.05, restart_backoff_max_s=0.2)
    crash = ProcessSpec("crash", [sys.executable, "-c", "raise SystemExit(3)"])
    supervisor = Supervisor([crash], settings, log_dir=tmp_path)
    supervisor.start_all()
    child = supervisor.children["crash"]
    backoffs: dict[float, float] = {}  # each scheduled restart time -> its backoff

    def seen_four() -> bool:
        if child.next_start:
            backoffs[child.next_start] = child.backoff_s
        return len(backoffs) >= 4

    _supervise_until(supervisor, seen_four)
    supervisor.stop_all()
    assert child.restarts >= 3
    assert [backoffs[k] for k in sorted(backoffs)][:4] == [0.05, 0.1, 0.2, 0.2]


def test_a_child_that_stays_up_is_left_alone_and_a_stopped_one_stays_stopped(
    tmp_path: Path,
) -> None:
    sleeper = ProcessSpec("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
    supervisor = Supervisor([sleeper], Settings(), log_dir=tmp_path)
    supervisor.start_all()
    child = supervisor.children["sleeper"]
    pid = child.pid
    for _ in range(20):
        supervisor.check()
    assert child.pid == pid and child.restarts == 0
    supervisor.stop("sleeper")
    for _ in range(20):
        supervisor.check()
    assert not child.alive and child.restarts == 0
    supervisor.stop_all()


def test_each_process_gets_its_metrics_folder_and_port(tmp_path: Path) -> None:
    settings = Settings(metrics_port=9100, metrics_dir=tmp_path)
    env = {spec.name: spec.env for spec in stack_specs(settings)}
    assert env["api"] == {MULTIPROC_ENV: str(tmp_path / "api")}  # it serves /metrics itself
    assert env["generate"] == {
        MULTIPROC_ENV: str(tmp_path / "generate"),
        "AIGC_METRICS_PORT": "9100",
    }
    assert env["train"] == {MULTIPROC_ENV: str(tmp_path / "train"), "AIGC_METRICS_PORT": "9101"}
    assert env["reconciler"] == {"AIGC_METRICS_PORT": "9102"}  # one process: its own registry
    quiet = {spec.name: spec.env for spec in stack_specs(Settings(metrics_dir=tmp_path))}
    assert not [name for name, e in quiet.items() if "AIGC_METRICS_PORT" in e]


def test_json_logs_switch_gunicorns_logger_and_celerys_banner_off() -> None:
    specs = {s.name: s.cmd for s in stack_specs(Settings(log_format="json"))}
    api = specs["api"]
    assert api[api.index("--logger-class") + 1] == JSON_GUNICORN_LOGGER
    assert specs["generate"][3:5] == ["--quiet", "-A"]  # a global option, before the command
    text = {s.name: s.cmd for s in stack_specs(Settings())}
    assert "--logger-class" not in text["api"] and "--quiet" not in text["generate"]


def test_the_supervisor_empties_each_metrics_folder_at_start(tmp_path: Path) -> None:
    folder = tmp_path / "family"
    folder.mkdir()
    (folder / "counter_123.db").write_bytes(b"old values")
    (folder / "keep.txt").write_text("not a metrics file")
    quick = ProcessSpec("quick", [sys.executable, "-c", "pass"], {MULTIPROC_ENV: str(folder)})
    supervisor = Supervisor([quick], Settings(), log_dir=tmp_path)
    supervisor.start_all()
    supervisor.stop_all()
    assert sorted(p.name for p in folder.iterdir()) == ["keep.txt"]
