"""`gtracd --role anchor`: a replica of the trust ledger that decides what gets in.

Reports arrive by gossip (topic `reports`) and directly over /gtrac/ledger/2.0.0 (seekers submit there too,
since gossip can drop). Each is validated (signature, reporter rate limit, chain members known, latencies
plausible; see ledger.admission), added to the CRDT, fsync'd to the report log, and only then acknowledged.
Newly admitted reports are announced on the `ledger` topic as anchor-signed deltas carrying the reporters'
own signed envelopes. Anchors in the keyring are each other's peers: every `sync_s` each anchor runs
anti-entropy with every other (digest -> diff -> want, and pushes what the other lacks), which also brings
a restarted anchor up to date. Seekers pull with the same protocol.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import time
from typing import TYPE_CHECKING

import trio

from ..control.heartbeat import GOSSIP_PAYLOAD_MAX, admit_heartbeats
from ..control.keyring import KeyringKeeper, drop_former, follow_anchors
from ..control.peerview import PeerView
from ..control.replica import (
    DISPLAY_REFOLD_SPACING,
    RULE_SETTINGS,
    Checkpointer,
    Replica,
    checkpoint_lag,
    ledger_gossip,
    rule_params,
)
from ..daemon import runtime as common
from ..daemon.looplag import LoopLag
from ..daemon.node import running_node
from ..errors import DecodeError
from ..identity import Keystore, peer_id_from_public
from ..ledger import Admission, AdmissionParams, Report, verified_reports
from ..ledger.signed import held_report
from ..net.addresses import first_addr
from ..net.framing import FramedStream, FrameTooLarge, StreamClosed
from ..net.ledgersync import anti_entropy
from ..net.protocols import INVITE, LEDGER
from ..protocols.ledgerstream import Hold, LedgerStream, Reply, Submit
from ..protocols.ledgersync import Responder
from ..wire.batch import batch_items, chunks
from ..wire.envelope import Signer
from .announce import AnnounceQueue
from .invites import InviteDesk
from .quota import Quota, QuotaParams

if TYPE_CHECKING:
    from gtracd.config import Settings
    from gtracd.daemon.node import Node
    from gtracd.identity import Identity

log = logging.getLogger("gtracd.anchor")
SETTINGS = ["sync_s", "node_timeout_s", "request_timeout_s", *RULE_SETTINGS, "report_rate", "report_burst",
            "checkpoint_s"]
IDLE_S = 30.0
DELTA_MAX = 96  # reports per ledger_delta (schema cap)
DELTA_BYTES = GOSSIP_PAYLOAD_MAX - 1024  # one yamux frame (see heartbeat.GOSSIP_PAYLOAD_MAX)
MAX_SESSIONS = 10  # anti-entropy sessions with one peer in one round (each asks for at most sync.MAX_WANT)
SUBMIT_PART = 8  # reports of a submission checked per turn of the event loop
HELD_PER_PEER = 4  # ledger streams of a peer over its quota held unread until its retry time, then served
MAX_SHOWN_WORKERS = 4096  # the workers an anchor remembers from heartbeats for status/top (oldest-heard go first)


def delta_chunks(raws: list[bytes]) -> list[list[bytes]]:
    """Split signed reports into ledger_delta bodies that respect both the count and the byte caps."""
    return chunks(raws, DELTA_MAX, DELTA_BYTES)


def keyring_ids(keystore_path, me: str) -> set[str]:
    return {peer_id_from_public(pub) for pub in Keystore(keystore_path).anchors().values()} - {me}


class AnchorDaemon:
    def __init__(self, node: Node, anchors: set[str], data_dir=None):
        s = node.settings
        self.node, self.s = node, s
        self.anchors = anchors  # the other anchors' peer ids (keyring)
        self.epoch_signers = frozenset(anchors | {node.ident.peer_id})  # who may start a ledger epoch
        self.revoked: dict[str, float] = {}  # former (revoked, retired) anchors -> cut-off time (gtracd.keyring)
        self.keyring = KeyringKeeper(node, s.keystore_path, s.keyring_quorum, republish=True)
        self.keyring.on_change.append(self.rekey)
        d = (data_dir or s.home / "anchor") / node.name
        self.replica = Replica(d / "ledger.log", rule_params(s), DISPLAY_REFOLD_SPACING)
        self.admission = Admission(self.replica.ledger, AdmissionParams(
            network=s.network, rate_per_s=s.report_rate, burst=s.report_burst,
            max_latency_ms=s.request_timeout_s * 1000.0, max_age_s=s.reporter_window_s,
            pending_ttl_s=2 * s.node_timeout_s), epoch_signers=self.epoch_signers)
        # what non-anchor peers may ask of the ledger stream, and how often: a follower pulls from one anchor
        # every sync_s, round robin; beyond one session per 3 sync_s (burst 3) its pull waits (Hold), gossip
        # deltas carry the reports meanwhile
        self.quota = Quota(self.anchors, QuotaParams(session_every_s=3 * s.sync_s))
        self.loop_lag = LoopLag()
        self._held: dict[str, int] = {}  # cooling peers' ledger streams held unread
        self.signer = Signer(node.ident)
        # checkpoints of reports older than any an anchor still admits (plus a few sync rounds)
        self.checkpoints = Checkpointer(self.replica, set(self.epoch_signers), s.network, node.gossip.publish,
                                        self.signer, s.checkpoint_s, checkpoint_lag(s))
        # the network as this anchor's heartbeats show it (for `gtracd status` / `top` only; admission keeps
        # its own list): every model, bounded, forgotten with admission's known workers
        self.view = PeerView(s.initial_trust, s.latency0_ms, max_workers=MAX_SHOWN_WORKERS)
        self.view.node_timeout_s = s.node_timeout_s
        self.peer_sync: dict[str, dict] = {}  # peer anchor -> its last anti-entropy round (convergence in top)
        self._syncing: set[str] = set()  # peers an exchange is under way with
        self.sync_meter = {"bytes": 0}  # anti-entropy bytes this anchor initiated, both ways (bench soak)
        self.announce = AnnounceQueue()  # what this anchor announces by ledger_delta, and when (pure)
        self._wake = trio.Event()
        self.counters = {"sync_rounds": 0, "sync_failures": 0, "pulled": 0, "pushed": 0, "deltas_sent": 0,
                         "deltas_received": 0, "submitted": 0, "bad_reports": 0}
        node.status_parts.append(self.status)
        self.heartbeat_hosts: dict[str, float] = {}  # host -> when it last published a valid heartbeat (relay)
        node.members = self.is_member  # who may reserve a slot on this anchor's relay
        self.invites = InviteDesk(d / "invites.json", node.ident.public, s.network)
        node.status_parts.append(self.invites.status)
        self.node.events.many("have", ({"key": [r.reporter.hex(), r.seq], "via": "disk"}
                                        for r in self.replica.ledger.reports()))

    # ---- admission paths
    def _admitted(self, reports: list[Report], via: str, announce_in: float | None) -> None:
        now = time.monotonic()
        self.node.events.many("have", ({"key": [r.reporter.hex(), r.seq], "via": via} for r in reports))
        if announce_in is not None and self.announce.schedule(reports, now, announce_in):
            self._wake.set()

    def is_member(self, host: str) -> bool:
        """A keyring anchor, or a host (libp2p peer id) that published a valid heartbeat on this network within
        node_timeout_s (gossip's signed `from`, so a host cannot claim another's heartbeats)."""
        t = self.heartbeat_hosts.get(host)
        return host in self.anchors or (t is not None and time.monotonic() - t <= self.s.node_timeout_s)

    def _heard_host(self, host: str) -> None:
        now = time.monotonic()
        self.heartbeat_hosts[host] = now
        if len(self.heartbeat_hosts) > MAX_SHOWN_WORKERS:  # bounded: forget the stale, then the oldest
            for h in [h for h, t in self.heartbeat_hosts.items() if now - t > self.s.node_timeout_s]:
                del self.heartbeat_hosts[h]
            while len(self.heartbeat_hosts) > MAX_SHOWN_WORKERS:
                del self.heartbeat_hosts[min(self.heartbeat_hosts, key=self.heartbeat_hosts.get)]

    async def on_heartbeats(self, data: bytes, origin: str) -> None:
        now = time.time()
        newly: list[Report] = []
        for w in admit_heartbeats(self.node, data, now, verified=lambda: self._heard_host(origin)):
            newly += self.admission.heard(w.peer_id, now)
            self.view.heard(w)
        if newly:
            await self.replica.persist(newly)
            self._admitted(newly, "pending", 0.05)

    async def on_reports(self, data: bytes, origin: str) -> None:
        try:
            raws = batch_items(data)  # a seeker's batch, or one report
        except DecodeError:
            self.node.verifier.drop("malformed")
            return
        now, admitted = time.time(), []
        for raw in raws:
            env = self.node.verifier.admit(raw, now, kinds=("trust_report",))
            if env is not None and self.admission.offer(env, now) == "admitted":
                admitted.append(self.replica.ledger.get(env.sender, env.seq))
        if admitted:
            await self.replica.persist(admitted)  # one fsync for the batch
            # the seeker also submitted them to an anchor directly; that anchor announces them first, we only
            # if no delta carrying them shows up within a random 0.2-0.6 s
            self._admitted(admitted, "gossip", random.uniform(0.2, 0.6))

    async def on_ledger(self, data: bytes, origin: str) -> None:
        env = ledger_gossip(self.node.verifier, data, self.anchors, self.s.network)
        if env is None:
            return
        if env.kind == "keyring_update":
            await self.keyring.on_gossip(env)
            return
        if env.kind == "ledger_checkpoint":
            await self.checkpoints.on_signature(env)
            return
        raws = env.body["reports"]
        for raw in raws:  # reports we hold and were about to announce: someone announced them already
            r = held_report(self.replica.ledger, raw)
            if r is not None:
                self.announce.covered(r.key)
        good, bad = verified_reports(raws, self.s.network, self.anchors, self.replica.ledger, self.revoked)
        self.counters["deltas_received"] += 1
        self.counters["bad_reports"] += bad
        new = await self.replica.merge(good)
        self._admitted(new, "delta", None)

    # ---- the keyring
    async def rekey(self, kr) -> None:
        """The keyring changed (control.keyring): sync with, take pushes and deltas from, and count checkpoint
        signatures of its anchors only; drop what a revoked key signed after its revocation."""
        me = self.node.ident.peer_id
        others = set(kr.anchors) - {me}
        follow_anchors(self.node.links, self.anchors, others)  # in place: the quota reads this set
        self.revoked.clear()
        self.revoked.update(kr.former())  # revoked and retired anchors, each with its cut-off time
        if me in self.revoked:
            log.error("this anchor's own key was revoked or retired by a keyring update: other replicas refuse "
                      "what it signs")
        self.epoch_signers = frozenset(others | ({me} if me not in self.revoked else set()))
        self.admission.epoch_signers = self.epoch_signers
        await self.checkpoints.rekey(set(self.epoch_signers))
        await self.purge_revoked()

    async def purge_revoked(self) -> None:
        gone = await drop_former(self.replica, self.revoked)
        self.counters["revoked_dropped"] = self.counters.get("revoked_dropped", 0) + gone

    # ---- announcing deltas
    async def announcer(self) -> None:
        while True:
            wake = self._wake = trio.Event()  # before looking: a report admitted meanwhile sets this one
            now = time.monotonic()
            due = self.announce.due(now)
            if not due:
                nxt = self.announce.next_due()
                with trio.move_on_after(3600.0 if nxt is None else max(0.0, nxt - now)):
                    await wake.wait()
                continue
            for chunk in delta_chunks([r.raw for r in due]):
                env = self.signer.sign("ledger_delta", {"network": self.s.network, "reports": chunk})
                if await self.node.gossip.publish("ledger", env.raw):
                    self.counters["deltas_sent"] += 1

    # ---- the stream protocol (submissions, anti-entropy, seeker pulls)
    async def handle(self, stream) -> None:
        fs = FramedStream(stream)
        remote = fs.remote_peer
        if not self.node.links.allowed(remote):
            await fs.reset()
            return
        until = self.quota.cooling(remote, time.monotonic())
        if until:  # over its own budget: its next streams wait out the retry time unread (a few; more end)
            held = self._held.get(remote, 0)
            if held >= HELD_PER_PEER:
                await fs.reset()
                return
            self._held[remote] = held + 1
            try:
                await trio.sleep(max(0.0, until - time.monotonic()))
            finally:
                self._held[remote] -= 1
                if self._held[remote] <= 0:
                    del self._held[remote]
        # this stream's anti-entropy session (protocols/ledgersync.py); it offers our checkpoint to a replica behind it
        stream = LedgerStream(self.s.network, Responder(self.replica.ledger, proof=self.replica.proof),
                              lambda costs: self.quota.ask_all(remote, costs, time.monotonic()))
        try:
            while True:
                try:
                    kind, body = await fs.read(IDLE_S)
                    ev = stream.receive(kind, body)
                    while isinstance(ev, Hold):  # over its budget for a moment: the answer waits for it
                        await trio.sleep(ev.seconds)
                        ev = stream.receive(kind, body)
                except (DecodeError, FrameTooLarge) as e:
                    ev = stream.malformed(str(e), oversize=isinstance(e, FrameTooLarge))
                if isinstance(ev, Submit):
                    ack = await self._submit(ev.reports, remote)
                    if not ev.reports:  # a ping (gtracd doctor): answered with this clock. Only then: releases
                        ack["now"] = time.time()  # before wire ranges read an ack with `now` as malformed
                    await fs.send("ack", ack, 10)
                elif isinstance(ev, Reply):
                    for k, b in ev.frames:
                        await fs.send(k, b, 10)
                else:
                    if ev.drop is not None:
                        self.node.verifier.drop(ev.drop)
                    await fs.send(*ev.frame, 10)
                    return
        except (StreamClosed, trio.TooSlowError):
            pass
        except Exception:
            log.exception("ledger stream from %s failed", remote)
        finally:
            await fs.close()

    async def _submit(self, raws, remote: str) -> dict:
        results: list[str] = []
        admitted: list[Report] = []
        if remote in self.anchors:  # another anchor pushing what it admitted (anti-entropy): signatures only
            fresh = self.replica.claim(raws)  # (held, or arriving by our own pull from that anchor right now)
            try:
                good, bad = await trio.to_thread.run_sync(verified_reports, fresh, self.s.network,
                                                          self.epoch_signers, None, self.revoked)
                self.counters["bad_reports"] += bad
                new = await self.replica.merge(good)
            finally:
                self.replica.release(fresh)
            self._admitted(new, "sync", None)
            return {"admitted": len(new), "duplicate": len(raws) - bad - len(new), "pending": 0,
                    "dropped": {"malformed": bad} if bad else {}, "results": []}
        self.counters["submitted"] += len(raws)
        done: list[tuple] = []
        seen: set[bytes] = set()
        for i in range(0, len(raws), SUBMIT_PART):  # in parts: the event loop breathes between them
            triaged = self.admission.triage(raws[i:i + SUBMIT_PART], seen)  # cheap checks here, signatures off it
            need = self.admission.needs(triaged)
            oks = await trio.to_thread.run_sync(lambda need=need: [env.signature_ok() for env in need]) \
                if need else await trio.sleep(0) or []
            done += self.admission.finish(triaged, oks, time.time())
        for res, key in done:
            results.append(res)
            if res == "admitted":
                admitted.append(self.replica.ledger.get(*key))
            elif res == "duplicate" and key is not None and self.announce.hurry(key):
                # heard by gossip first and waiting out the jitter: the seeker chose us, announce it now
                self._wake.set()
        await self.replica.persist(admitted)  # fsync'd before the ack leaves
        self._admitted(admitted, "direct", 0.0)
        dropped: dict[str, int] = {}
        for r in results:
            if r not in ("admitted", "duplicate", "pending", "pending_full"):
                dropped[r] = dropped.get(r, 0) + 1
        return {"admitted": len(admitted), "duplicate": results.count("duplicate"),
                "pending": results.count("pending") + results.count("pending_full"), "dropped": dropped,
                "results": results}

    # ---- anti-entropy with the other anchors
    async def sync_forever(self) -> None:
        while True:
            await trio.sleep(self.s.sync_s * random.uniform(0.8, 1.2))
            now = time.time()
            self.admission.expire(now)
            self.view.expire(time.monotonic(), self.admission.p.max_age_s + self.admission.p.pending_ttl_s)
            async with trio.open_nursery() as n:
                for pid in sorted(self.anchors):
                    n.start_soon(self.sync_with, pid)

    async def sync_with(self, pid: str) -> None:
        if pid in self._syncing:  # one exchange with a peer at a time (a round, a reconnect and the start overlap)
            return
        self._syncing.add(pid)
        try:
            await self._sync_with(pid)
        finally:
            self._syncing.discard(pid)

    async def _sync_with(self, pid: str) -> None:
        self.counters["sync_rounds"] += 1

        async def ingest(reports):
            new = await self.replica.merge(reports)
            self._admitted(new, "sync", None)
            return new

        pulled = pushed = bad = 0
        try:
            for _ in range(MAX_SESSIONS):  # back to back while a session hit its cap (a fresh replica catching up)
                with trio.fail_after(30):
                    lp = await self.node.links.connect(pid)
                    x = await anti_entropy(self.node.host, lp, self.s.network, self.replica, ingest,
                                           push=True, epoch_signers=self.epoch_signers, adopt=self.replica.adopt,
                                           revoked=self.revoked,
                                           meter=self.sync_meter)
                pulled, pushed, bad = pulled + x.pulled, pushed + x.pushed, bad + x.bad
                if not x.capped:
                    break
        except Exception as e:  # unreachable, cut, timed out, refused, negotiation failed: retried next round
            self.counters["sync_failures"] += 1
            st = self.peer_sync.setdefault(pid, {"failures": 0})
            st.update(failures=st["failures"] + 1, last_error=repr(e)[:200], failed_at=time.time())
            log.debug("anti-entropy with %s failed: %r", pid, e)
            return
        st = self.peer_sync.setdefault(pid, {"failures": 0})
        # in sync: the round found nothing to move either way (both replicas held the same reports)
        st.update(ok_at=time.time(), pulled=pulled, pushed=pushed, in_sync=pulled == 0 and pushed == 0)
        self.counters["pulled"] += pulled
        self.counters["bad_reports"] += bad
        self.counters["pushed"] += pushed

    def status(self) -> dict:
        trust, lat = self.replica.trust_latency()
        reach = self.node.links.connected() & self.anchors
        return {"ledger": {"reports": len(self.replica.ledger), "reporters": len(self.replica.ledger.heads()),
                           "loaded_from_disk": self.replica.loaded, "persisted": self.replica.persisted,
                           "equivocations": self.replica.ledger.equivocations, "pending": self.admission.pending,
                           "deferred": self.admission.deferred, "quota_refused": dict(self.quota.refused),
                           "admitted": self.admission.admitted, "corrupt_on_disk": self.replica.log.corrupt,
                           "torn_bytes_cut": self.replica.log.torn_bytes},
                "admission_dropped": dict(self.admission.dropped),
                "anchors": {a: {"reachable": a in self.node.links.connected(),
                                "addrs": list(self.node.links.addrs.get(a, ())), **self.peer_sync.get(a, {})}
                            for a in sorted(self.anchors)},
                "known_workers": len(self.admission.known), "workers": self.view.status_rows(time.monotonic(), trust, lat),
                "trust": trust, "latency_ms": lat, "counters": {**self.counters, "sync_bytes": self.sync_meter["bytes"]},
                "loop_lag": self.loop_lag.status(),
                "readiness": {"ready": True, "why": f"admitting reports; {len(reach)} of {len(self.anchors)} peer "
                                                    "anchors connected"},
                **self.checkpoints.status()}

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        node = self.node
        for pid in self.anchors:
            node.links.hold(pid, trusted=True)  # keyring anchors: kept outside the heartbeat-learned budget
        node.status_parts.append(self.keyring.status)
        self.revoked.update(self.keyring.keyring.former())
        await self.purge_revoked()  # a log written before a revocation this keystore holds now
        node.host.set_stream_handler(LEDGER, self.handle)
        node.host.set_stream_handler(INVITE, self.invites.handle)
        async with trio.open_nursery() as n:
            await n.start(self.keyring.run)
            await n.start(node.gossip.serve, "heartbeats", self.on_heartbeats)
            await n.start(node.gossip.serve, "reports", self.on_reports)
            await n.start(node.gossip.serve, "ledger", self.on_ledger)
            n.start_soon(self.announcer)
            n.start_soon(self.loop_lag.run)
            n.start_soon(self.sync_forever)
            n.start_soon(self.sync_with_all_now)
            if self.s.checkpoint_s > 0:
                n.start_soon(self.checkpoints.run, max(0.5, min(self.s.checkpoint_s / 4, 30.0)))
            # a peer anchor (re)connected, e.g. after a partition healed: anti-entropy with it now
            node.links.on_connect.append(lambda pid: n.start_soon(self.sync_with, pid) if pid in self.anchors else None)
            task_status.started()

    async def sync_with_all_now(self) -> None:
        """At start (e.g. after a restart): catch up at once instead of waiting a sync period."""
        async with trio.open_nursery() as n:
            for pid in sorted(self.anchors):
                n.start_soon(self.sync_with, pid)


def main(argv: list[str]) -> int:
    p = common.parser("anchor", "Hold a replica of the trust ledger: validate reports, persist, gossip, sync.",
                      SETTINGS)
    p.add_argument("--events", help="append a JSON-lines trace of ledger events here (tests, benchmarks)")
    args = p.parse_args(argv)
    s = common.settings_from(args, SETTINGS)
    common.setup_logging(args.log_level, s)
    ident = common.identity(args, s, "anchor")
    name = args.name or s.key or "anchor"
    anchors = keyring_ids(s.keystore_path, ident.peer_id)
    if not anchors and not args.ephemeral:
        print("gtracd anchor: the anchor keyring is empty; running without peer anchors "
              "(add them with: gtracd keys trust-anchor FILE)", file=sys.stderr)
    try:
        trio.run(_serve, ident, s, name, anchors, args)
    except KeyboardInterrupt:
        pass
    return 0


async def _serve(ident: Identity, s: Settings, name, anchors, args: argparse.Namespace) -> None:
    async def body(closing: list) -> None:
        async with trio.open_nursery() as outer:
            outer.start_soon(common.until_signalled, outer.cancel_scope)
            async with running_node("anchor", name, ident, s, args.events, not args.ephemeral) as node:
                daemon = AnchorDaemon(node, anchors)
                closing.append(daemon.replica.close)  # after every handler that writes to the log stopped
                await node.nursery.start(daemon.run)
                common.write_ready(args.ready_file, {"role": "anchor", "peer_id": ident.peer_id,
                                                     "addrs": node.addrs, "name": name, "pid": os.getpid(),
                                                     "reports": len(daemon.replica.ledger)})
                print(f"gtracd anchor {name} ready: {first_addr(node.addrs)} ({len(daemon.replica.ledger)} reports on "
                      f"disk, {len(anchors)} peer anchors)", file=sys.stderr, flush=True)
                await trio.sleep_forever()

    await common.closed_after(body)
