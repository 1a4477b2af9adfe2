"""Test hosts on one machine: network namespaces joined by veth pairs to a bridge.

Each host is a namespace with one interface on a private /24; the test process (in the root
namespace) sits on the bridge too, so it can reach every host. Cutting a host off is taking its
link down; killing a host is killing every process in its namespace.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import uuid
from dataclasses import dataclass, field


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def namespaces_unavailable() -> Exception | None:
    """Return why this machine cannot make network namespaces, or None."""
    probe = f"aigcprobe{os.getpid()}"
    try:
        _ip("netns", "add", probe)
        _ip("netns", "del", probe)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        return RuntimeError(f"cannot create network namespaces here: {detail.strip()}")
    return None


@dataclass
class Host:
    """One test host: a namespace, its address, and its link's name on the bridge side."""

    name: str
    netns: str
    address: str
    link: str

    def run(self, cmd: list[str]) -> list[str]:
        """Return ``cmd`` made to run inside this host."""
        return ["ip", "netns", "exec", self.netns, *cmd]

    def cut(self) -> None:
        """Take the host's link down: it can reach nothing, and nothing can reach it."""
        _ip("link", "set", self.link, "down")

    def reconnect(self) -> None:
        """Bring the host's link back up."""
        _ip("link", "set", self.link, "up")

    def kill_everything(self) -> None:
        """SIGKILL every process running inside the host, like a power cut."""
        pids = _ip("netns", "pids", self.netns, check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


@dataclass
class Network:
    """A bridge and the hosts attached to it; ``close`` removes them all."""

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:4])
    hosts: dict[str, Host] = field(default_factory=dict)
    octet: int = field(default_factory=lambda: 10 + os.getpid() % 200)

    @property
    def bridge(self) -> str:
        """Return the bridge's interface name."""
        return f"aigcbr{self.tag}"

    def subnet(self, last: int) -> str:
        """Return the address ``last`` on this network's /24."""
        return f"10.231.{self.octet}.{last}"

    def up(self, names: list[str]) -> Network:
        """Create the bridge (the root namespace is .1 on it) and one host per name."""
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.subnet(1)}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i, name in enumerate(names, start=2):
            self.hosts[name] = self._host(name, i)
        return self

    def _host(self, name: str, last: int) -> Host:
        netns, outside = f"aigc{self.tag}{name}", f"aigc{self.tag}{last}"
        inside = f"{outside}i"
        _ip("netns", "add", netns)
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", netns)
        _ip("link", "set", outside, "master", self.bridge)
        _ip("link", "set", outside, "up")
        address = self.subnet(last)
        for cmd in (
            ["addr", "add", f"{address}/24", "dev", inside],
            ["link", "set", inside, "up"],
            ["link", "set", "lo", "up"],
        ):
            _ip("-n", netns, *cmd)
        return Host(name, netns, address, outside)

    def close(self) -> None:
        """Kill what runs in the hosts and delete them and the bridge."""
        for host in self.hosts.values():
            host.kill_everything()
            _ip("netns", "del", host.netns, check=False)
            _ip("link", "del", host.link, check=False)
        _ip("link", "del", self.bridge, check=False)
