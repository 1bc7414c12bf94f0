"""A peer on the far side of a veth pair, in a network namespace of its own,
that can vanish without FIN or RST: its link goes down and every packet to
it is dropped from then on, as when a laptop sleeps or a phone leaves the
network. Needs root and iproute2 (``ip``); :func:`veth_peer` skips (fails
in CI) where they are missing."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from tests.conftest import ROOT, require


@dataclass
class VethPeer:
    """The namespace ``name``; this side's address ``server_ip`` (on the
    default namespace's end of the pair) and the peer's ``peer_ip``."""

    name: str
    server_ip: str
    peer_ip: str
    link: str

    def popen(self, args: list[str], **kwargs: object) -> subprocess.Popen[str]:
        """Start ``args`` in the peer's namespace, this project importable."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
            [*self.exec_prefix, *args], env=env, text=True, **kwargs
        )

    def python(self, *args: str, **kwargs: object) -> subprocess.Popen[str]:
        return self.popen([sys.executable, *args], **kwargs)

    @property
    def exec_prefix(self) -> tuple[str, ...]:
        """What runs a command in the peer's namespace."""
        return ("ip", "netns", "exec", self.name)

    def vanish(self) -> None:
        """Take the peer's link down: nothing reaches it, nothing is sent."""
        _ip("-n", self.name, "link", "set", self.link, "down")

    def restore(self) -> None:
        """Bring the peer's link up again."""
        _ip("-n", self.name, "link", "set", self.link, "up")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def _addresses() -> tuple[str, str]:
    """A /30 of 10.0.0.0/8 of this process's own: two pytest-xdist workers
    never share one (a PID is at most 22 bits)."""
    pid = os.getpid()
    base = f"10.{(pid >> 14) & 255}.{(pid >> 6) & 255}.{(pid & 63) * 4}"
    prefix, last = base.rsplit(".", 1)
    return f"{prefix}.{int(last) + 1}", f"{prefix}.{int(last) + 2}"


@contextlib.contextmanager
def veth_peer() -> Iterator[VethPeer]:
    """A namespace joined to this one by a veth pair, removed at the end
    (the pair goes with the namespace)."""
    require(os.geteuid() == 0, "network namespaces need root")
    require(shutil.which("ip") is not None, "network namespaces need iproute2 (ip)")
    tag = f"fsc{os.getpid()}"
    name, here, there = tag, f"{tag}a", f"{tag}b"
    server_ip, peer_ip = _addresses()
    with contextlib.suppress(subprocess.CalledProcessError):
        _ip("netns", "del", name)  # left by an earlier process of this PID, killed
    try:
        _ip("netns", "add", name)
    except subprocess.CalledProcessError as exc:
        require(False, f"cannot make a network namespace: {exc.stderr.strip()}")
    try:
        _ip("link", "add", here, "type", "veth", "peer", "name", there, "netns", name)
        _ip("addr", "add", f"{server_ip}/30", "dev", here)
        _ip("link", "set", here, "up")
        _ip("-n", name, "addr", "add", f"{peer_ip}/30", "dev", there)
        _ip("-n", name, "link", "set", there, "up")
        _ip("-n", name, "link", "set", "lo", "up")
        yield VethPeer(name, server_ip, peer_ip, there)
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("link", "del", here)
        _ip("netns", "del", name)
