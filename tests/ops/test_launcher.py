"""How workers are started: pools, GPU devices and GPU memory settings."""

from __future__ import annotations

from ops.launcher import default_pool, gpu_env, worker_command
from shared.config import Settings


def test_generate_workers_use_threads_and_trainers_prefork() -> None:
    settings = Settings(generate_threads=24, worker_concurrency=1)
    assert default_pool(settings, "generate", None) == ("threads", 24)
    assert default_pool(settings, "train", None) == ("prefork", 1)
    assert default_pool(settings, "generate,train", None) == ("prefork", 1)
    assert default_pool(settings, "generate", "prefork") == ("prefork", 1)


def test_train_workers_recycle_their_child_after_each_job() -> None:
    cmd = worker_command(Settings(), queues="train", concurrency=1)
    assert cmd[cmd.index("--max-tasks-per-child") + 1] == "1"
    assert "--max-tasks-per-child" not in worker_command(
        Settings(), queues="generate", concurrency=8, pool="threads"
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
