"""Hosts on one machine: Linux network namespaces joined by veth pairs (root; `ip`, `tc`).

`Topology` builds LANs of hosts around routers: each host is a namespace with one veth into its router's
namespace, a /24 per LAN, a default route through the router. A router forwards between its LANs only when
told to (`forward=True`: the LANs reach each other directly; False: only a process on the router itself, a
relay, joins them). Links may be capped with `tc tbf` (rate in Mbit/s). Every name carries a per-run prefix,
everything is deleted on exit, and only these namespaces' addresses are ever targets of traffic.

Processes run inside a namespace through `cmd(host, argv)` (`ip netns exec NAME ...`). `unavailable()` says
why namespaces cannot be made here (not root, no `ip`, a kernel without them), for tests to skip with.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field

TIMEOUT_S = 10.0


def _run(*argv: str) -> str:
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=TIMEOUT_S)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {r.stderr.strip() or r.returncode}")
    return r.stdout


def unavailable() -> str | None:
    """Why namespaces cannot be created here (None: they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is missing"
    name = f"gtprobe{os.getpid()}"
    try:
        _run("ip", "netns", "add", name)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        return f"cannot create a network namespace: {e}"
    _run("ip", "netns", "del", name)
    return None


@dataclass
class Topology:
    """LANs of hosts behind routers. `lans`: lan name -> (router, [hosts]); a router may serve several LANs."""

    lans: dict[str, tuple[str, list[str]]]
    forward: bool = False
    rate_mbit: float | None = None
    prefix: str = field(default_factory=lambda: f"gt{os.getpid() % 100000}")
    addr: dict[str, dict[str, str]] = field(default_factory=dict)  # namespace -> lan -> its IPv4 address
    made: list[str] = field(default_factory=list)

    def ns(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def ip(self, host: str, lan: str | None = None) -> str:
        """A host's (or router's) address, on `lan` when it has several."""
        addrs = self.addr[host]
        return addrs[lan] if lan else next(iter(addrs.values()))

    def cmd(self, host: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns(host), *argv]

    def __enter__(self) -> Topology:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _add(self, name: str) -> None:
        if name not in self.made:
            _run("ip", "netns", "add", self.ns(name))
            self.made.append(name)
            _run(*self.cmd(name, ["ip", "link", "set", "lo", "up"]))

    def _build(self) -> None:
        for n, (lan, (router, hosts)) in enumerate(self.lans.items(), start=1):
            self._add(router)
            net = f"10.{(os.getpid() >> 8) % 200 + 20}.{n}"
            self.addr.setdefault(router, {})[lan] = f"{net}.1"
            _run(*self.cmd(router, ["ip", "link", "add", f"br{n}", "type", "bridge"]))
            _run(*self.cmd(router, ["ip", "addr", "add", f"{net}.1/24", "dev", f"br{n}"]))
            _run(*self.cmd(router, ["ip", "link", "set", f"br{n}", "up"]))
            for k, host in enumerate(hosts, start=2):
                self._add(host)
                inner, outer = f"e{n}h{k}", f"v{n}h{k}"
                _run("ip", "link", "add", inner, "netns", self.ns(host), "type", "veth", "peer", "name", outer,
                     "netns", self.ns(router))
                _run(*self.cmd(router, ["ip", "link", "set", outer, "master", f"br{n}", "up"]))
                _run(*self.cmd(host, ["ip", "addr", "add", f"{net}.{k}/24", "dev", inner]))
                _run(*self.cmd(host, ["ip", "link", "set", inner, "up"]))
                _run(*self.cmd(host, ["ip", "route", "add", "default", "via", f"{net}.1"]))
                self.addr.setdefault(host, {})[lan] = f"{net}.{k}"
                if self.rate_mbit:
                    for where, dev in ((host, inner), (router, outer)):
                        _run(*self.cmd(where, ["tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate",
                                               f"{self.rate_mbit}mbit", "burst", "32kbit", "latency", "400ms"]))
        for router in {r for r, _ in self.lans.values()}:
            _run(*self.cmd(router, ["sysctl", "-qw", f"net.ipv4.ip_forward={1 if self.forward else 0}"]))

    def close(self) -> None:
        for name in reversed(self.made):
            try:
                _run("ip", "netns", "del", self.ns(name))
            except (RuntimeError, OSError, subprocess.TimeoutExpired):
                pass
        self.made.clear()
