"""Private Redis and PostgreSQL servers the tests start, stop, freeze and thaw at will.

Outage tests cannot stop the machine's shared servers, so they run their own: a ``redis-server``
on a free port, and a PostgreSQL cluster made with ``initdb`` in a temporary folder (run as the
``postgres`` user, since PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from ops.launcher import free_port
from tests.support import wait_for

PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def missing_servers() -> Exception | None:
    """Return why private servers cannot run here, or None."""
    if shutil.which("redis-server") is None:
        return FileNotFoundError("redis-server is not installed")
    if not PG_BIN_DIRS:
        return FileNotFoundError("PostgreSQL server binaries are not installed")
    return None


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


class PrivateRedis:
    """A ``redis-server`` on a free port that keeps nothing on disk."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        """Return the URL of one of its databases."""
        return f"redis://{self.host}:{self.port}/{db}"

    def start(self, netns: str | None = None) -> PrivateRedis:
        """Start the server (inside a network namespace if given) and wait until it answers."""
        cmd = ["redis-server", "--bind", self.host, "--port", str(self.port)]
        # No password on a private test network: protected mode would refuse other hosts.
        cmd += ["--save", "", "--appendonly", "no", "--protected-mode", "no"]
        if netns:
            cmd = ["ip", "netns", "exec", netns, *cmd]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        ping = ["redis-cli", "-h", self.host, "-p", str(self.port), "ping"]
        if netns:
            ping = ["ip", "netns", "exec", netns, *ping]
        wait_for(lambda: subprocess.run(ping, capture_output=True).stdout.strip() == b"PONG", 20)
        return self

    def stop(self) -> None:
        """Stop the server (its data is gone: it keeps nothing on disk)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class PrivatePostgres:
    """A PostgreSQL cluster of its own, with trust authentication and a database ``aigc``."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port()
        self.bin = PG_BIN_DIRS[0]
        self.dir = Path(tempfile.mkdtemp(prefix="aigc-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.netns: str | None = None
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        subprocess.run(
            _as_postgres(
                [
                    str(self.bin / "initdb"),
                    "-D",
                    str(self.data),
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
        )
        # Trust every host of the test network too, not only this one's loopback.
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write("host all all 0.0.0.0/0 trust\n")

    @property
    def url(self) -> str:
        """Return the SQLAlchemy URL of its ``aigc`` database."""
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/aigc"

    def start(self, netns: str | None = None) -> PrivatePostgres:
        """Start the server (inside a network namespace if given) and create ``aigc`` once."""
        self.netns = netns
        options = f"-h {self.host} -p {self.port} -k {self.dir} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        self._run(
            "psql", "-h", self.host, "-p", str(self.port), "-c", "CREATE DATABASE aigc", check=False
        )
        return self

    def stop(self) -> None:
        """Stop the server at once; clients see refused connections."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop", check=False)

    def freeze(self) -> None:
        """Stop every server process with SIGSTOP: clients see silence, not refusals."""
        for pid in self._pids():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """Resume every server process after ``freeze``."""
        for pid in self._pids():
            os.kill(pid, signal.SIGCONT)

    def destroy(self) -> None:
        """Stop the server and delete its files."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _pids(self) -> list[int]:
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = [
            int(p.name)
            for p in Path("/proc").iterdir()
            if p.name.isdigit() and _parent(p) == postmaster
        ]
        return [postmaster, *children]

    def _run(self, tool: str, *args: str, check: bool = True) -> None:
        cmd = _as_postgres([str(self.bin / tool), *args])
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if check and done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stderr or done.stdout}")


def _parent(proc_dir: Path) -> int | None:
    try:
        return int((proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def stack_values(
    base: dict[str, Any], tmp: Path, redis: PrivateRedis, database_url: str, **extra: Any
) -> dict[str, Any]:
    """Return the settings of a stack on a private Redis and its own database, files in ``tmp``."""
    own = {
        "artifact_dir": tmp / "artifacts",
        "database_url": database_url,
        "broker_url": redis.url(0),
        "redis_url": redis.url(1),
    }
    return {**base, **own, **extra}
