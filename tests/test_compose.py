"""Static checks of docker-compose.yml and the Dockerfile (no Docker needed)."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest

from shared.config import Settings
from tests.support import COMPOSE_PATH, ROOT

DOCKERFILE_PATH = ROOT / "Dockerfile"
MONITORING = {"prometheus", "grafana"}

INFRA = {"redis", "postgres", "minio"}
APP_SERVICES = {"migrate", "api", "worker-generate", "worker-train", "reconciler", "flower"}
WORKERS = {"worker-generate", "worker-train"}
SHARED_KEYS = ("AIGC_DATABASE_URL", "AIGC_BROKER_URL", "AIGC_VISIBILITY_TIMEOUT_S")

# Settings the compose file already sets but that another change adds to shared.config.Settings.
# Remove a name from here once it is a field; the names not listed must be fields today.
PENDING = {"warm_models", "generate_max_batch", "generate_max_wait_ms"}


@pytest.fixture(scope="module")
def stages() -> dict[str, str]:
    """Return each named Dockerfile stage's text, from its FROM line to the next one."""
    found: dict[str, str] = {}
    name = None
    for line in DOCKERFILE_PATH.read_text().splitlines():
        match = re.match(r"\s*FROM\s+\S+\s+AS\s+(\S+)", line, re.IGNORECASE)
        if match:
            name = match.group(1).lower()
            found[name] = ""
        if name is not None:
            found[name] += line + "\n"
    return found


def env(service: dict[str, Any]) -> dict[str, str]:
    """Return a service's environment as a dict of strings (list or mapping form)."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {k: "" if v is None else str(v) for k, v in raw.items()}


def interpolate(value: str) -> str:
    """Resolve compose's ``${VAR:-default}`` to its default, and a required ``${VAR:?}`` to a
    stand-in secret (the shell is not consulted)."""
    value = re.sub(r"\$\{\w+:\?[^}]*\}", "secret", value)
    return re.sub(r"\$\{\w+(?::?-([^}]*))?\}", lambda m: m.group(1) or "", value)


def command(service: dict[str, Any]) -> list[str]:
    cmd = service["command"]
    return cmd.split() if isinstance(cmd, str) else [str(part) for part in cmd]


def option(cmd: list[str], *names: str) -> str | None:
    """Return the value of a command-line option given as `--opt value` or `--opt=value`."""
    for i, part in enumerate(cmd):
        for name in names:
            if part == name and i + 1 < len(cmd):
                return cmd[i + 1]
            if part.startswith(name + "="):
                return part.split("=", 1)[1]
    return None


def gpu_devices(service: dict[str, Any]) -> list[dict[str, Any]]:
    reservations = service.get("deploy", {}).get("resources", {}).get("reservations", {})
    return [d for d in reservations.get("devices", []) if "gpu" in d.get("capabilities", [])]


def build_target(service: dict[str, Any]) -> str | None:
    build = service.get("build")
    return build.get("target") if isinstance(build, dict) else None


def named_volumes(service: dict[str, Any]) -> set[str]:
    out = set()
    for vol in service.get("volumes", []):
        source = vol.split(":", 1)[0] if isinstance(vol, str) else vol.get("source")
        if source and not source.startswith((".", "/", "~")):
            out.add(source)
    return out


# -- services ----------------------------------------------------------------------------------
def test_expected_services_exist(services: dict[str, Any]) -> None:
    assert set(services) >= INFRA | APP_SERVICES | MONITORING


def test_declared_volumes(compose: dict[str, Any], services: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    assert {"redis-data", "pg-data", "minio-data"} <= declared
    used = set().union(*(named_volumes(s) for s in services.values()))
    assert used <= declared, f"volumes used but not declared: {used - declared}"


@pytest.mark.parametrize(
    "name, probe, volume",
    [
        ("redis", "redis-cli ping", "redis-data"),
        ("postgres", "pg_isready", "pg-data"),
        ("minio", "mc ready local", "minio-data"),
    ],
)
def test_infra_has_healthcheck_and_volume(
    services: dict[str, Any], name: str, probe: str, volume: str
) -> None:
    service = services[name]
    test = service["healthcheck"]["test"]
    assert probe in (test if isinstance(test, str) else " ".join(test))
    assert volume in named_volumes(service)


def test_redis_persists_with_aof(services: dict[str, Any]) -> None:
    cmd = command(services["redis"])
    assert option(cmd, "--appendonly") == "yes"
    assert services["redis"]["image"].startswith("redis:7")
    assert services["postgres"]["image"].startswith("postgres:16")


def test_every_admin_surface_needs_a_secret(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    """Flower, Redis and PostgreSQL refuse to start without a secret; none has a default."""
    required = re.compile(r"^\$\{\w+:\?[^}]*\}$")
    assert required.match(env(services["flower"])["FLOWER_BASIC_AUTH"])
    assert required.match(option(command(services["redis"]), "--requirepass") or "")
    assert required.match(env(services["postgres"])["POSTGRES_PASSWORD"])
    for key in ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"):
        assert required.match(env(services["minio"])[key]), key
    assert required.match(compose["x-aigc-env"]["AIGC_S3_SECRET_ACCESS_KEY"])
    assert required.match(env(services["grafana"])["GF_SECURITY_ADMIN_PASSWORD"])
    assert env(services["grafana"])["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    for key in ("AIGC_DATABASE_URL", "AIGC_BROKER_URL", "AIGC_REDIS_URL"):
        assert ":?" in compose["x-aigc-env"][key], key
    published = {s: svc.get("ports", []) for s, svc in services.items() if svc.get("ports")}
    assert set(published) == {"api", "flower", *MONITORING}, published  # the API checks keys
    for name in published.keys() - {"api"}:
        assert all(str(p).startswith("127.0.0.1:") for p in published[name]), name


def test_migrate_is_one_shot_after_postgres(services: dict[str, Any]) -> None:
    migrate = services["migrate"]
    assert command(migrate)[:3] == ["aigc", "db", "upgrade"]
    assert str(migrate.get("restart", "no")) == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_api(services: dict[str, Any]) -> None:
    api = services["api"]
    assert command(api)[:2] == ["aigc", "api"]
    assert any(str(p).split(":")[-1] == "8000" for p in api["ports"])
    assert "/healthz" in " ".join(api["healthcheck"]["test"])
    assert api["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert api["depends_on"]["redis"]["condition"] == "service_healthy"
    assert build_target(api) == "api"


def test_app_services_wait_for_migrations(services: dict[str, Any]) -> None:
    for name in APP_SERVICES - {"migrate", "flower"}:
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        assert deps["redis"]["condition"] == "service_healthy", name


def test_artifacts_live_in_minio_and_no_volume_is_shared(services: dict[str, Any]) -> None:
    """The API and the workers reach every file through MinIO's bucket, never a shared volume."""
    for name in {"api", "reconciler"} | WORKERS:
        values = env(services[name])
        assert values["AIGC_ARTIFACT_URL"].startswith("s3://"), name
        assert values["AIGC_S3_ENDPOINT_URL"] == "http://minio:9000", name
        assert not named_volumes(services[name]), name
        ready = services[name]["depends_on"]["minio-setup"]["condition"]
        assert ready == "service_completed_successfully", name
    setup, minio = services["minio-setup"], services["minio"]
    assert str(setup.get("restart", "no")) == "no"
    assert setup["depends_on"]["minio"]["condition"] == "service_healthy"
    assert "./deploy/minio/setup.sh:/setup/setup.sh:ro" in setup["volumes"]
    assert (ROOT / "deploy" / "minio" / "setup.sh").is_file()
    # The setup makes the very bucket and account the app uses, and the app is not root.
    app = env(services["api"])
    for key in ("AIGC_ARTIFACT_URL", "AIGC_S3_ACCESS_KEY_ID", "AIGC_S3_SECRET_ACCESS_KEY"):
        assert env(setup)[key] == app[key], key
    assert app["AIGC_S3_ACCESS_KEY_ID"] != env(minio)["MINIO_ROOT_USER"]
    assert "MINIO_ROOT_PASSWORD" not in app and not minio.get("ports")


def test_worker_generate_owns_one_gpu(services: dict[str, Any]) -> None:
    svc = services["worker-generate"]
    cmd = command(svc)
    assert cmd[:2] == ["aigc", "worker"]
    assert option(cmd, "--queues", "-Q") == "generate"
    assert option(cmd, "--pool") == "threads"  # one process per GPU, jobs batched in it
    assert option(cmd, "--name", "-n") == "gpu0@%h"
    [device] = gpu_devices(svc)
    assert device["driver"] == "nvidia"
    assert [str(d) for d in device["device_ids"]] == ["0"]
    assert env(svc)["CUDA_VISIBLE_DEVICES"] == "0"
    assert build_target(svc) == "worker"


def test_worker_train(services: dict[str, Any]) -> None:
    svc = services["worker-train"]
    cmd = command(svc)
    assert cmd[:2] == ["aigc", "worker"]
    assert option(cmd, "--queues", "-Q") == "train"
    assert option(cmd, "--concurrency", "-c") == "1"
    assert option(cmd, "--pool") == "prefork"
    assert gpu_devices(svc)
    assert "CUDA_VISIBLE_DEVICES" in env(svc)
    assert build_target(svc) == "worker"


def test_gpu_workers_env_and_unique_names(services: dict[str, Any]) -> None:
    gpu_workers = {n: s for n, s in services.items() if n.startswith("worker-")}
    assert set(gpu_workers) >= WORKERS
    for name, svc in gpu_workers.items():
        values = env(svc)
        assert values["TF_FORCE_GPU_ALLOW_GROWTH"] == "true", name
        assert values["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false", name
        assert values.get("KERAS_BACKEND", "tensorflow") == "tensorflow", name
    names = [option(command(s), "--name", "-n") for s in gpu_workers.values()]
    assert None not in names and len(set(names)) == len(names), names
    # One generate worker per GPU: no two generate services reserve the same device.
    generate_ids = [
        str(i)
        for n, s in gpu_workers.items()
        if n.startswith("worker-generate")
        for d in gpu_devices(s)
        for i in d.get("device_ids", [])
    ]
    assert len(set(generate_ids)) == len(generate_ids), generate_ids


# -- settings ----------------------------------------------------------------------------------
def test_app_services_share_the_aigc_block(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    shared = {k: str(v) for k, v in compose["x-aigc-env"].items()}
    for name in APP_SERVICES:
        values = env(services[name])
        assert shared.items() <= values.items(), name
    for key in SHARED_KEYS:
        assert len({env(services[n]).get(key) for n in APP_SERVICES}) == 1, key
    assert shared["AIGC_API_HOST"] == "0.0.0.0"


def test_every_aigc_variable_is_a_setting() -> None:
    names = {m.lower() for m in re.findall(r"\bAIGC_([A-Z0-9_]+)", COMPOSE_PATH.read_text())}
    assert names, "no AIGC_ variables found"
    unknown = names - set(Settings.model_fields) - PENDING
    assert not unknown, f"not fields of shared.config.Settings: {sorted(unknown)}"


def test_service_settings_validate(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    fields = set(Settings.model_fields)
    for name in APP_SERVICES:
        values = {
            k: v
            for k, v in env(services[name]).items()
            if k.startswith("AIGC_") and k[5:].lower() in fields
        }
        with monkeypatch.context() as m:
            for key in [k for k in os.environ if k.startswith("AIGC_")]:
                m.delenv(key)
            for key, value in values.items():
                m.setenv(key, interpolate(value))
            settings = Settings()
        assert not settings.is_embedded, name
        assert settings.database_url.startswith("postgresql+psycopg://"), name


# -- Dockerfile --------------------------------------------------------------------------------
def test_dockerfile_stages(stages: dict[str, str]) -> None:
    assert {"api", "worker"} <= set(stages)
    text = DOCKERFILE_PATH.read_text()
    assert re.search(r"^FROM\s+(\$\{PYTHON_IMAGE\}|python:3\.11-slim)", text, re.M | re.I)
    assert "python:3.11-slim" in text
    assert "PYTHONDONTWRITEBYTECODE=1" in text
    assert "PYTHONUNBUFFERED=1" in text


def test_api_stage_has_no_model_dependencies(stages: dict[str, str]) -> None:
    api = stages["api"].lower()
    assert "tensorflow" not in api
    assert "[worker]" not in api
    assert "worker.txt" not in api and "worker-cuda" not in api
    assert "pip install -e ." in api


def test_worker_stage_installs_worker_extra(stages: dict[str, str]) -> None:
    assert ".[worker]" in stages["worker"]


@pytest.mark.parametrize("stage", ["api", "worker", "flower"])
def test_runtime_stages_run_as_non_root(stages: dict[str, str], stage: str) -> None:
    users = re.findall(r"^\s*USER\s+(\S+)", stages[stage], re.M | re.I)
    assert users and users[-1] not in {"root", "0"}, stage


def test_compose_targets_exist(services: dict[str, Any], stages: dict[str, str]) -> None:
    for name, svc in services.items():
        target = build_target(svc)
        if target is not None:
            assert target in stages, f"{name}: no Dockerfile stage {target!r}"
