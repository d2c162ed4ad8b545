"""A loopback control-plane network of real processes (tests, `gtracd bench ledger`): anchors with a shared
keyring on fixed ports (so a restarted anchor comes back where its peers look for it), a testbed fleet of
worker identities, and seekers, all writing event traces the caller reads to time convergence.
"""

from __future__ import annotations

import json
import signal
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..identity import Keystore
from .launch import WorkerProc, start_procs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ControlNet:
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="gtracd-cn-")))
    network: str = "cn-test"
    heartbeat_s: float = 2.0
    sync_s: float = 2.0
    node_timeout_s: float = 10.0
    procs: dict[str, WorkerProc] = field(default_factory=dict)
    anchor_addrs: dict[str, str] = field(default_factory=dict)
    anchor_extra: list[str] = field(default_factory=list)  # more setting flags for the anchors (the lab's)
    seeker_extra: list[str] = field(default_factory=list)  # and for the seekers (rule settings must match)

    @property
    def keystore(self) -> Path:
        return self.root / "keys"

    def common(self, name: str) -> list[str]:
        return ["--network", self.network, "--data-dir", str(self.root), "--keystore", str(self.keystore),
                "--sync-s", str(self.sync_s),
                "--node-timeout-s", str(self.node_timeout_s), "--name", name]

    def events_path(self, name: str) -> Path:
        return self.root / "events" / f"{name}.jsonl"

    def make_anchors(self, names: list[str]) -> None:
        ks = Keystore(self.keystore)
        for n in names:
            ident = ks.load_or_create(n)
            ks.trust_anchor(ident.public.hex())
            self.anchor_addrs[n] = f"/ip4/127.0.0.1/tcp/{free_port()}/p2p/{ident.peer_id}"

    def _anchor_cmd(self, name: str) -> tuple[list[str], str]:
        port = self.anchor_addrs[name].split("/tcp/")[1].split("/")[0]
        boot = ",".join(a for n, a in self.anchor_addrs.items() if n != name)
        return (["--role", "anchor", "--key", name, "--listen", f"/ip4/127.0.0.1/tcp/{port}",
                 "--bootstrap", boot, "--events", str(self.events_path(name))] + self.common(name)
                + self.anchor_extra, name)

    def _boot_all(self) -> str:
        return ",".join(self.anchor_addrs.values())

    def start(self, anchors: list[str], fleet: int = 0, seekers: dict[str, float] | None = None,
              fleet_stages: int = 3) -> None:
        (self.root / "events").mkdir(parents=True, exist_ok=True)
        self.make_anchors(anchors)
        cmds = [self._anchor_cmd(n) for n in anchors]
        if fleet:
            cmds.append((["testbed", "fleet", "--identities", str(fleet), "--stages", str(fleet_stages),
                          "--network", self.network, "--data-dir", str(self.root), "--bootstrap", self._boot_all(),
                          "--heartbeat-s", str(self.heartbeat_s), "--name", "fleet"], "fleet"))
        for name, rate in (seekers or {}).items():
            cmds.append(self._seeker_cmd(name, rate))
        for p, (_, name) in zip(start_procs(cmds, 60, self.root), cmds, strict=True):
            self.procs[name] = p

    def _seeker_cmd(self, name: str, rate: float) -> tuple[list[str], str]:
        return (["--role", "seeker", "--key", name, "--bootstrap", self._boot_all(), "--network", self.network,
                 "--data-dir", str(self.root), "--keystore", str(self.keystore), "--name", name,
                 "serve", "--testbed-reports", str(rate), "--events", str(self.events_path(name)),
                 "--sync-s", str(self.sync_s), "--node-timeout-s", str(self.node_timeout_s)] + self.seeker_extra, name)

    def kill9(self, name: str) -> None:
        self.procs.pop(name).kill9()

    def stop(self, name: str) -> int:
        return self.procs.pop(name).stop()

    def restart_anchor(self, name: str) -> None:
        self.procs[name] = start_procs([self._anchor_cmd(name)], 60, self.root)[0]

    def start_seeker(self, name: str, rate: float) -> None:
        self.procs[name] = start_procs([self._seeker_cmd(name, rate)], 60, self.root)[0]

    def set_seeker_rate(self, name: str, rate: float) -> None:
        self.procs.pop(name).stop()
        self.start_seeker(name, rate)

    def partition(self, groups: list[list[str]]) -> None:
        """Cut every link between processes of different groups (each process drops its side on SIGUSR1)."""
        side = {n: i for i, g in enumerate(groups) for n in g}
        for name, p in self.procs.items():
            cut = [q.peer_id for other, q in self.procs.items() if side.get(other, -1) != side.get(name, -2)
                   and other != name]
            self._signal_cut(name, p, cut)

    def heal(self) -> None:
        for name, p in self.procs.items():
            self._signal_cut(name, p, [])

    def _signal_cut(self, name: str, p: WorkerProc, cut: list[str]) -> None:
        path = self.root / "run" / f"{p.info['role']}-{name}.cut"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(cut))
        p.proc.send_signal(signal.SIGUSR1)

    def events(self, name: str | None = None) -> list[dict]:
        out = []
        files = [self.events_path(name)] if name else sorted((self.root / "events").glob("*.jsonl"))
        for f in files:
            if not f.exists():
                continue
            for line in f.read_text().splitlines():
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass  # a line being written
        return out

    def holders(self) -> dict[tuple[str, int], set[str]]:
        """(reporter hex, seq) -> the replicas holding it (from the traces)."""
        out: dict[tuple[str, int], set[str]] = {}
        for e in self.events():
            if e["ev"] == "have":
                out.setdefault(tuple(e["key"]), set()).add(e["who"])
        return out

    def status(self, name: str) -> dict | None:
        best = None
        for f in (self.root / "run").glob(f"*-{name}-*.json"):
            try:
                doc = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            if doc.get("name") == name and (best is None or doc.get("written_at", 0) > best.get("written_at", 0)):
                best = doc
        return best

    def stop_all(self) -> dict[str, int]:
        return {n: p.stop() for n, p in list(self.procs.items())}
