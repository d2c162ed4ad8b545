"""The follower: a local ledger replica plus the liveness view, kept current in the background, and the
outbox of the trust reports this daemon signs. Seekers run one (they route from it) and so do self-placing
workers (they place themselves from it).

- Heartbeats (gossip) feed the PeerView; a worker is alive iff heard within node_timeout_s.
- Ledger data is accepted only from anchors in the keyring: anchor-signed `ledger_delta` gossip, and a pull
  (anti-entropy, this side never pushes) from one keyring anchor every `sync_s`. Derived trust and latency
  are folded into the view, so routing reads memory and never waits on an anchor; with every anchor down
  it routes from what it has (and from its own observations).
- Trust reports this seeker emits go out by gossip AND straight to an anchor over a stream; until an anchor
  has acknowledged one (admitted, or already held) it stays in an fsync'd outbox and is retried.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import time
from typing import TYPE_CHECKING

import trio

from ..catalog.fingerprint import pinned_model, scheme_of  # torch-free
from ..daemon.node import write_status  # atomic JSON write
from ..identity import Keystore, peer_id_from_public
from ..ledger import ReportLog, verified_reports
from ..net.addresses import is_circuit
from ..net.ledgersync import anti_entropy, submit
from ..wire.batch import BATCH_S, report_batches
from ..wire.envelope import Signer
from .heartbeat import admit_heartbeats
from .keyring import KeyringKeeper, drop_former, follow_anchors
from .outbox import Outbox
from .peerview import PeerView
from .replica import Checkpointer, Replica, ledger_gossip, rule_params

if TYPE_CHECKING:
    from gtracd.config import Settings
    from gtracd.daemon.node import Node

log = logging.getLogger("gtracd.seeker")


class Follower:
    def __init__(self, node: Node, view: PeerView, anchors: set[str], data_dir=None):
        s = node.settings
        self.node, self.s, self.view, self.anchors = node, s, view, anchors
        self.revoked: dict[str, float] = {}  # former (revoked, retired) anchors -> cut-off time (gtracd.keyring)
        self.keyring = KeyringKeeper(node, s.keystore_path, s.keyring_quorum)
        self.keyring.on_change.append(self.rekey)
        d = (data_dir or s.home / "seeker") / node.name
        self.replica = Replica(d / "ledger.log", rule_params(s))
        # adopts what a quorum of anchors signed; the view routes with the trust derived from it at once
        self.checkpoints = Checkpointer(self.replica, anchors, s.network, on_adopt=self.apply_ledger)
        self.view_path = d / "view.json"
        self._load_view()
        self._outbox_log = ReportLog(d / "outbox.log")
        self.outbox = Outbox({(r.reporter, r.seq): r.raw for r in self._outbox_log.load()})
        self.signer = Signer(node.ident)
        self._flush_wake = trio.Event()
        self._flush_lock = trio.Lock()
        self._to_gossip: list[bytes] = []  # signed reports waiting for the next gossip batch
        self._gossip_wake = trio.Event()
        self.ingested = trio.Event()  # set (and replaced) whenever new ledger records arrive
        self.counters = {"reports_sent": 0, "reports_acked": 0, "reports_refused": 0, "pulls": 0, "pull_failures": 0,
                         "pulled": 0, "deltas": 0, "bad_reports": 0, "submit_failures": 0}
        self.refused: dict[str, int] = {}
        self._rr = 0
        self.last_pull_ok: float | None = None
        self.behind = False  # the last pull asked for all a session may: more to fetch
        self.apply_ledger()
        node.events.many("have", ({"key": [r.reporter.hex(), r.seq], "via": "disk"}
                                  for r in self.replica.ledger.reports()))

    # ---- the liveness view survives restarts (a fresh process routes before the next heartbeat, and can
    # reach the workers directly when every anchor is down)
    def _load_view(self) -> None:
        try:
            doc = json.loads(self.view_path.read_text())
        except (OSError, ValueError):
            return
        for e in self.view.restore(from_wall(doc), time.monotonic(), self.s.node_timeout_s, self.s.forget_after_s):
            self._keep(e)  # dial it: if it is still up, its next heartbeat marks it alive

    def save_view(self) -> None:


        ws = [dataclasses.asdict(w) for w in self.view.workers.values() if w.last_seen]
        self.view_path.parent.mkdir(parents=True, exist_ok=True)
        write_status(self.view_path, to_wall({"workers": ws}))

    def _keep(self, w) -> None:
        """Stay connected to live workers' hosts, so their heartbeats reach us even with every anchor down. A
        worker reachable only through relays is learned but not held: holding would take one of its relay's
        few circuits per follower, and with the relays (the anchors) down the circuit is gone anyway."""
        addrs = w.addrs or [w.addr]
        try:
            pid = self.node.links.learn(addrs)
        except Exception:
            return
        if any(not is_circuit(a) for a in addrs):
            self.node.links.hold(pid)  # bounded: heartbeats are untrusted input

    # ---- ledger -> view
    def apply_ledger(self) -> None:
        trust, lat = self.replica.trust_latency()
        self.view.set_ledger(trust, lat)

    async def _ingest(self, reports, via: str):
        new = await self.replica.merge(reports)
        self.node.events.many("have", ({"key": [r.reporter.hex(), r.seq], "via": via} for r in new))
        if new:
            self.apply_ledger()
            self.ingested.set()
            self.ingested = trio.Event()
        return new

    # ---- gossip handlers
    async def on_heartbeats(self, data: bytes, origin: str) -> None:
        for w in admit_heartbeats(self.node, data):
            if self.view.heard(w):
                self.node.events("worker_up", peer=w.peer_id)
                self._keep(w)

    async def on_ledger(self, data: bytes, origin: str) -> None:
        env = ledger_gossip(self.node.verifier, data, self.anchors, self.s.network)  # keyring anchors only
        if env is None:
            return
        if env.kind == "keyring_update":
            await self.keyring.on_gossip(env)
            return
        if env.kind == "ledger_checkpoint":  # adopted once a quorum signed the state this replica computes too
            await self.checkpoints.on_signature(env)
            return
        good, bad = verified_reports(env.body["reports"], self.s.network, self.anchors, self.replica.ledger,
                                     self.revoked)
        self.counters["deltas"] += 1
        self.counters["bad_reports"] += bad
        await self._ingest(good, "delta")

    async def rekey(self, kr) -> None:
        """The keyring changed (control.keyring): hold the anchors it names, count only their signatures, and
        drop what a former anchor signed after its cut-off."""
        follow_anchors(self.node.links, self.anchors, kr.anchors)
        self.revoked.clear()
        self.revoked.update(kr.former())  # revoked and retired anchors, each with its cut-off time
        await self.checkpoints.rekey(self.anchors)
        await self.purge_revoked()

    async def purge_revoked(self) -> None:
        gone = await drop_former(self.replica, self.revoked)
        if gone:
            self.counters["revoked_dropped"] = self.counters.get("revoked_dropped", 0) + gone
            self.apply_ledger()

    async def _adopt(self, cp, proof) -> None:
        """A certified checkpoint an anchor offered over sync (verified by protocols.ledgersync)."""
        if await self.replica.adopt(cp, proof):
            self.apply_ledger()

    # ---- background loops
    def reachable_anchors(self) -> list[str]:
        return sorted(a for a in self.anchors if a in self.node.links.addrs and self.node.links.allowed(a))

    async def pull_forever(self) -> None:
        while True:
            await self.pull_once()
            if not self.behind:  # else the next session at once: a fresh seeker catching up on history
                await trio.sleep(self.s.sync_s * random.uniform(0.8, 1.2))

    async def pull_once(self) -> bool:
        """Anti-entropy with the next keyring anchor (round robin, skipping unreachable ones)."""
        cands = self.reachable_anchors()
        for k in range(len(cands)):
            pid = cands[(self._rr + k) % len(cands)]
            self.counters["pulls"] += 1
            try:
                with trio.fail_after(20):
                    lp = await self.node.links.connect(pid)
                    x = await anti_entropy(self.node.host, lp, self.s.network, self.replica,
                                           lambda rs: self._ingest(rs, "pull"), push=False,
                                           epoch_signers=self.anchors, adopt=self._adopt, revoked=self.revoked)
            except Exception as e:  # unreachable / timed out / refused: try the next anchor
                self.counters["pull_failures"] += 1
                log.debug("pull from %s failed: %r", pid, e)
                continue
            self._rr = (self._rr + k + 1) % max(1, len(cands))
            self.counters["pulled"] += x.pulled
            self.counters["bad_reports"] += x.bad
            self.last_pull_ok = time.monotonic()
            self.behind = x.capped
            return True
        return False

    async def liveness_forever(self) -> None:
        last_save = 0.0
        while True:
            now = time.monotonic()
            self.apply_ledger()  # a refold the replica spaced out (replica.trust_latency) lands here
            for pid in self.view.expire(now, self.s.forget_after_s):
                self.node.events("worker_forgotten", peer=pid)
            for pid in self.view.refresh(now, self.s.node_timeout_s):
                self.node.events("worker_down", peer=pid)
                w = self.view.workers[pid]
                host = w.addr.rsplit("/p2p/", 1)[-1]
                if not any(x.alive and x.addr.endswith(host) for x in self.view.workers.values()):
                    self.node.links.release(host)  # stop redialling a host with no live identity
            if now - last_save >= 5.0:
                try:
                    await trio.to_thread.run_sync(self.save_view)
                except OSError as e:
                    log.warning("cannot save the view: %s", e)
                last_save = now
            await trio.sleep(min(1.0, self.s.node_timeout_s / 4))

    # ---- reports
    async def report(self, bodies: list[dict]) -> list[bytes]:
        """Sign, persist in the outbox, gossip; the flusher then submits them to an anchor."""
        envs = [self.signer.sign("trust_report", b) for b in bodies]
        if not envs:
            return []
        await trio.to_thread.run_sync(self._outbox_log.append, [e.raw for e in envs])
        for e in envs:
            self.outbox.add((e.sender, e.seq), e.raw)
            self.node.events("report", key=[e.sender.hex(), e.seq], ts=e.ts)
            self._to_gossip.append(e.raw)
        self.counters["reports_sent"] += len(envs)
        self._flush_wake.set()
        self._gossip_wake.set()
        return [e.raw for e in envs]

    async def gossip_forever(self) -> None:
        """Gossip reports in batches (wire/batch.py): what arrives within BATCH_S goes out together. Gossip is
        the redundant path (the outbox submits every report to an anchor until one acknowledges it)."""
        while True:
            await self._gossip_wake.wait()
            await trio.sleep(BATCH_S)
            self._gossip_wake = trio.Event()
            batch, self._to_gossip = self._to_gossip, []
            for msg in report_batches(batch):
                await self.node.gossip.publish("reports", msg)

    async def flush_forever(self) -> None:
        while True:
            wake = self._flush_wake = trio.Event()  # before looking: a report added meanwhile sets this one
            if not self.outbox:
                await wake.wait()
                continue
            before = self.outbox.keys()
            await self.flush_once()
            if before & self.outbox.keys():  # no anchor took them (down, or asked us to retry): back off
                with trio.move_on_after(self.s.sync_s):
                    await wake.wait()

    async def flush_once(self) -> bool:
        """Submit the outbox to the first anchor that answers. True if one did."""
        async with self._flush_lock:  # the background flusher and drain() never interleave
            return await self._flush_locked()

    async def _flush_locked(self) -> bool:
        items = self.outbox.batch()
        if not items:
            return True
        cands = self.reachable_anchors()
        random.shuffle(cands)
        for pid in cands:
            try:
                with trio.fail_after(15):
                    lp = await self.node.links.connect(pid)
                    ack = await submit(self.node.host, lp, self.s.network, [raw for _, raw in items])
            except Exception as e:  # unreachable, reset, timed out, refused, a malformed ack: the next anchor
                self.counters["submit_failures"] += 1
                log.debug("submit to %s failed: %r", pid, e)
                continue
            answer = self.outbox.answered(items, list(ack["results"]))
            self.counters["reports_acked"] += answer.acked
            for res, n in answer.refused.items():  # refused for good (stale, implausible...): say so
                self.counters["reports_refused"] += n
                self.refused[res] = self.refused.get(res, 0) + n
                log.warning("anchor %s refused %d trust report(s): %s", pid[-8:], n, res)
            if not answer.changed:
                return True
            try:
                await trio.to_thread.run_sync(self._rewrite_outbox)
            except OSError as e:  # the acknowledged entries are re-sent next time: duplicates, never losses
                log.warning("cannot rewrite the outbox: %s", e)
            return True
        return False

    def _rewrite_outbox(self) -> None:
        self._outbox_log.rewrite(self.outbox.raws())

    async def drain(self, timeout: float) -> int:
        """Best effort before exit: try to hand the outbox to an anchor; what is left stays on disk."""
        with trio.move_on_after(timeout):
            while self.outbox:
                if not await self.flush_once():
                    await trio.sleep(0.5)
        return len(self.outbox)

    def status(self) -> dict:
        trust, lat = self.replica.trust_latency()
        now = time.monotonic()
        return {"ledger": {"reports": len(self.replica.ledger), "reporters": len(self.replica.ledger.heads()),
                           "loaded_from_disk": self.replica.loaded,
                           "last_pull_age_s": None if self.last_pull_ok is None else round(now - self.last_pull_ok, 1)},
                "anchors": {a: {"reachable": a in self.node.links.connected()} for a in sorted(self.anchors)},
                "outbox": len(self.outbox), "refused": self.refused, "counters": self.counters,
                "workers": self.view.status_rows(now), "trust_floor": self.s.trust_floor, "model": self.view.model,
                "trust": trust, "latency_ms": lat, **self.checkpoints.status()}

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        node = self.node
        for pid in self.anchors:
            node.links.hold(pid, trusted=True)  # keyring anchors: kept outside the heartbeat-learned budget
        node.status_parts.append(self.status)
        node.status_parts.append(self.keyring.status)
        self.revoked.update(self.keyring.keyring.former())
        await self.purge_revoked()  # a log written before a revocation this keystore holds now
        async with trio.open_nursery() as n:
            await n.start(self.keyring.run)
            await n.start(node.gossip.serve, "heartbeats", self.on_heartbeats)
            await n.start(node.gossip.serve, "ledger", self.on_ledger)
            n.start_soon(self.pull_forever)
            n.start_soon(self.flush_forever)
            n.start_soon(self.gossip_forever)
            n.start_soon(self.liveness_forever)
            node.links.on_connect.append(lambda pid: n.start_soon(self.pull_once) if pid in self.anchors else None)
            task_status.started()

    def close(self) -> None:
        try:
            self.save_view()
        except OSError:
            pass
        self.replica.close()
        self._outbox_log.close()


def _shifted(doc, shift: float) -> dict:
    if not isinstance(doc, dict) or not isinstance(doc.get("workers"), list):
        return {}
    return {**doc, "workers": [{**w, "last_seen": w["last_seen"] + shift} if isinstance(w, dict) and isinstance(
        w.get("last_seen"), (int, float)) and not isinstance(w.get("last_seen"), bool) else w
        for w in doc["workers"]]}


def to_wall(doc: dict) -> dict:
    """A view to save: last_seen is monotonic (meaningful in this process only), saved as wall time."""
    return {**_shifted(doc, time.time() - time.monotonic()), "saved_at": time.time()}


def from_wall(doc) -> dict:
    """A saved view with its wall-clock last_seen times moved onto this process's monotonic clock."""
    return _shifted(doc, time.monotonic() - time.time())


def pinned_view(s: Settings) -> PeerView:
    """A seeker's view from its settings, pinned to the one model it serves (`--model`, default the built-in
    SmolLM2)."""

    view = PeerView(s.initial_trust, s.latency0_ms, s.alpha, s.reward, s.penalty, s.unknown_penalty,
                    *pinned_model(s.model, scheme_of(s.quantize)))
    view.node_timeout_s = s.node_timeout_s  # ghosts leave routing at once, not at the next refresh
    return view


def anchor_ids(keystore_path) -> set[str]:
    return {peer_id_from_public(pub) for pub in Keystore(keystore_path).anchors().values()}
