"""`gtracd --role worker --layers START:END|auto`: hosts a layer range and serves inference sessions.

One long-lived stream per session (/gtrac/infer/1.0.0): open -> prefill -> step ... -> close / cancel.
Compute runs in one worker thread at a time (one torch thread by default); the event loop stays free to
read frames, so a `cancel` arriving mid-step is seen at once and answered with an error frame.

Lifecycle (announced in heartbeats): joining -> loading -> serving (a worker placed by hand starts
serving) -> draining. SIGTERM drains: no new sessions (`draining` refusals), running sessions get
`drain_s` to finish, then the ones left are told `draining` and the worker exits (a second signal exits at
once). `--layers auto` places itself and may move to heal a hole (gtracd.worker.agent).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from ..catalog.fingerprint import fingerprint, scheme_of
from ..control.follower import Follower, anchor_ids
from ..control.heartbeat import Hosted, Nudge, publish_heartbeats
from ..control.peerview import PeerView
from ..daemon import runtime as common
from ..daemon.node import running_node
from ..engine import require_torch, set_threads
from ..engine.footprint import footprint
from ..engine.models import resolve_model
from ..errors import DecodeError, UserError
from ..net.addresses import first_addr
from ..net.framing import FramedStream, FrameTooLarge, StreamClosed
from ..net.protocols import INFER, WRITE_TIMEOUT_S
from ..protocols.infer import REPLIES, End, Extend, Open, Query, Reject, WorkerStream
from ..protocols.sessions import BUSY_RETRY_S, Refused
from ..version import __version__
from ..wire import decode_frame
from ..wire.binding import sign_binding
from ..wire.envelope import Signer
from ..wire.versions import VersionRefused
from .agent import Agent, budget_of, too_small
from .compute import Batcher, FairCompute, InFlight
from .lifecycle import Lifecycle

if TYPE_CHECKING:
    from gtracd.config import Settings
    from gtracd.daemon.node import Node

log = logging.getLogger("gtracd.worker")
SETTINGS = ["model", "quantize", "layers", "torch_threads", "max_batch", "batch_wait_ms", "batch_gate_ms", "max_sessions", "cache_tokens", "session_ttl_s", "max_length",
            "heartbeat_s", "peer_streams", "max_streams", "max_layers", "memory_mib", "drain_s", "heal_after_s",
            "move_window_s", "node_timeout_s", "trust_floor", "initial_trust", "forget_after_s"]
INBOX = 1  # frames read ahead per stream (a `cancel` is still seen mid-step: the reader keeps reading)


def parse_layers(text: str) -> tuple[int, int]:
    try:
        a, b = text.split(":")
        start, end = int(a), int(b)
    except ValueError:
        raise UserError(f"--layers wants START:END (e.g. 0:10), got {text!r}") from None
    if not 0 <= start < end:
        raise UserError(f"--layers {text}: need 0 <= START < END")
    return start, end


@dataclass
class Served:
    """One identity this process serves: its key, the shard it computes with (identities hosting the same
    range in one process share one), and an optional behaviour (the lab's injected delay, failure, CPU burn,
    corruption, crash; None for a real worker)."""

    ident: object
    server: object
    name: str
    behaviour: object = None

    @property
    def peer_id(self) -> str:
        return self.ident.peer_id


def _internal_sid(peer_id: str, sid: bytes) -> bytes:
    """Sessions of different identities sharing one shard never collide (a seeker uses one session id on
    every hop, and a repair may land on another identity of the same process)."""
    return hashlib.sha256(peer_id.encode() + b"\0" + bytes(sid)).digest()[:16]


class WorkerDaemon:
    def __init__(self, served: list[Served], host_id: str, settings: Settings, name: str):
        self.served = {s.peer_id: s for s in served}
        self.default = served[0]
        self.host_id = host_id  # the libp2p (Noise) identity of this process
        self.settings = settings
        self.name = name
        self.compute = FairCompute()  # one slot, round-robin across remote peers
        # decode steps of concurrent sessions share forward passes
        self.batcher = Batcher(self.compute, settings.max_batch, settings.batch_wait_ms / 1000.0,
                               settings.batch_gate_ms / 1000.0)
        self.counters = {"frames": 0, "errors": 0, "bad_frames": 0, "wire_version": 0, "sessions": 0, "cancelled": 0, "injected": 0,
                         "refused_streams": 0, "busy": 0, "internal": 0, "drain_cut": 0}
        self.idle_timeout = settings.session_ttl_s
        self.refusals: dict[str, int] = {}  # error frames sent, by code
        self.streams: dict[str, int] = {}  # open inference streams per remote peer
        self.inflight = InFlight()
        self.lifecycle = Lifecycle()  # joining | loading | serving | draining, announced in heartbeats (pure)
        self.conns: dict[int, tuple[WorkerStream, trio.CancelScope]] = {}  # open streams: their sessions, scope
        self.session_closed = trio.Event()  # set (and replaced) whenever a stream's sessions end
        self.nudge = None  # heartbeat.Nudge: announce a state change at once

    @property
    def state(self) -> str:
        return self.lifecycle.state

    @property
    def target(self) -> tuple[int, int] | None:
        return self.lifecycle.target

    @property
    def leaving(self) -> bool:
        return self.lifecycle.leaving

    def announce(self, changed: bool) -> bool:
        """After a lifecycle event: a change is announced at once (heartbeat nudge)."""
        if changed and self.nudge is not None:
            self.nudge()
        return changed

    def _closed(self) -> None:
        self.session_closed.set()
        self.session_closed = trio.Event()

    def sessions_open(self) -> int:
        return sum(len(stream.sessions) for stream, _ in self.conns.values())

    async def drain(self, bound_s: float) -> int:
        """The lifecycle is draining (a move or a leave): give the running sessions `bound_s` to finish, then
        cut the rest (each is told `draining`, so its seeker repairs without blame). Returns how many were
        cut."""
        if self.nudge is not None:
            self.nudge()  # the draining state out at once (a move announced it a recheck ago; a round may have passed)
            with trio.move_on_after(2.0):  # seekers hear it before we go (or stop taking sessions)
                await self.nudge.published_after_now()
        with trio.move_on_after(bound_s):
            while self.sessions_open():
                await self.session_closed.wait()
        cut = self.sessions_open()
        for _, scope in list(self.conns.values()):
            scope.cancel()
        with trio.move_on_after(5.0):
            while self.conns:
                await self.session_closed.wait()
        self.counters["drain_cut"] += cut
        return cut

    # single-identity workers (the common case) read these
    @property
    def server(self):
        return self.default.server

    def install(self, server) -> None:
        """A self-placing worker's shard: loaded, moved (the old one once every session on it ended)."""
        self.default.server = server

    @property
    def ident(self):
        return self.default.ident

    def _end(self, srv, isid: bytes) -> None:
        """A session ended (closed, cancelled, its stream gone): its cache is freed and no batch waits for it."""
        srv.close(isid)
        self.batcher.forget(srv, isid)

    async def run_compute(self, peer: str, fn, *a, inline: bool = False):
        async with self.compute.slot(peer):
            if inline:  # a decode step (the seeker sends one token; schema caps it at 64): no thread hand-off
                return fn(*a)
            return await trio.to_thread.run_sync(fn, *a)

    async def handle(self, stream) -> None:
        fs = FramedStream(stream)
        remote = fs.remote_peer
        if self.streams.get(remote, 0) >= self.settings.peer_streams or \
                sum(self.streams.values()) >= self.settings.max_streams:
            self.counters["refused_streams"] += 1  # explicit, and never a failure of this worker (seeker.blame)
            await fs.quietly(lambda: self._error(fs, "busy", "too many streams from your peer (or in total)",
                                                 retry_after_s=BUSY_RETRY_S))
            await fs.close()
            return
        self.streams[remote] = self.streams.get(remote, 0) + 1
        stream = WorkerStream()  # the protocol state; each session's handle: (identity, internal id, shard server)
        inbox_send, inbox = trio.open_memory_channel(INBOX)
        interrupted = trio.Event()  # the stream ended or a cancel came: a stalled stage stops
        key = id(fs)
        try:
            with trio.CancelScope() as scope:  # drain() cancels it once its bound passed
                self.conns[key] = (stream, scope)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._reader, fs, remote, inbox_send, stream, interrupted)
                    async for item, size in inbox:
                        try:
                            await self._serve(fs, item, stream, interrupted, remote)
                        finally:
                            self.inflight.release(remote, size)
                    nursery.cancel_scope.cancel()
        except* (StreamClosed, trio.TooSlowError):
            pass  # the seeker went away or stopped reading: its sessions are freed below
        except* Exception as eg:  # never let one stream's failure reach libp2p's handler task
            self.counters["errors"] += 1
            log.error("stream handler failed: %r", eg.exceptions)
        finally:
            while True:  # frames read but never served (the stream ended): their bytes are no longer in flight
                try:
                    _, size = inbox.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    break
                self.inflight.release(remote, size)
            left = self.streams.get(remote, 1) - 1
            if left > 0:
                self.streams[remote] = left
            else:
                self.streams.pop(remote, None)
            held = list(stream.sessions)
            for _, isid, srv in stream.close_all():
                self._end(srv, isid)
            if held and (self.state == "draining" or self.leaving):  # cut by the drain bound: say so
                for sid in held:
                    await fs.quietly(lambda sid=sid: self._error(fs, "draining", "the worker is leaving; this "
                                                                 "session was cut by its drain bound", sid))
            self.conns.pop(key, None)
            self._closed()
            await fs.close()

    async def _reader(self, fs: FramedStream, remote: str, send, stream: WorkerStream,
                      interrupted: trio.Event) -> None:
        async with send:
            try:
                while True:
                    size = 0

                    async def admit(n: int) -> None:  # charged before the body is buffered
                        nonlocal size
                        with trio.fail_after(self.idle_timeout):
                            await self.inflight.acquire(remote, 4 + n)
                        size = 4 + n

                    try:
                        try:
                            raw = await fs.read_raw(self.idle_timeout, admit=admit)
                        except BaseException:
                            self.inflight.release(remote, size)  # charged, never delivered
                            raise
                        item = decode_frame(raw, fs.limits)
                    except FrameTooLarge as e:  # unframeable from here on: answer, then drop the stream
                        self.counters["bad_frames"] += 1
                        await send.send((("_bad", e), 0))
                        return
                    except DecodeError as e:  # answered bad_frame; a wire version outside ours says so
                        self.counters["wire_version" if isinstance(e, VersionRefused) else "bad_frames"] += 1
                        item = ("_bad", e)
                    except (StreamClosed, trio.TooSlowError):
                        return
                    if item[0] == "cancel":  # out of band: mark now, the step in flight answers "cancelled"
                        stream.cancel_seen(item[1]["session"])
                        interrupted.set()
                    try:
                        await send.send((item, size))
                    except BaseException:
                        self.inflight.release(remote, size)
                        raise
            finally:
                stream.gone = True
                interrupted.set()

    async def _error(self, fs, code: str, message: str, sid: bytes | None = None,
                     retry_after_s: float | None = None) -> None:
        self.counters["busy" if code == "busy" else "errors"] += 1
        self.refusals[code] = self.refusals.get(code, 0) + 1
        body = {"code": code, "message": message[:2000]}
        if sid is not None:
            body["session"] = sid
        if retry_after_s is not None:
            body["retry_after_s"] = float(retry_after_s)
        await fs.send("error", body, WRITE_TIMEOUT_S)

    def _open(self, body: dict, stream: WorkerStream, remote: str) -> dict:
        why = self.lifecycle.refusal()
        if why is not None:
            raise Refused("draining", why, BUSY_RETRY_S)
        sid = body["session"]
        sv = self.served.get(body["peer"]) if body.get("peer") else self.default
        if sv is None or (sv.behaviour is not None and not sv.behaviour.alive(time.monotonic())):
            raise Refused("unknown_peer", f"identity {str(body.get('peer'))[-8:]} is not served here")
        isid = _internal_sid(sv.peer_id, sid)
        srv = sv.server
        reply = srv.open({**body, "session": isid}, remote)
        stream.opened(sid, (sv, isid, srv))  # the shard it lives on (a moving worker swaps shards only once drained)
        if sv.behaviour is not None:
            sv.behaviour.opened()
        reply["session"] = sid
        if body.get("nonce") is not None:
            reply["proof"] = sign_binding(sv.ident, self.host_id, body["nonce"], sid)
        return reply

    async def _serve(self, fs: FramedStream, item, stream: WorkerStream, interrupted: trio.Event,
                     remote: str) -> None:
        kind, body = item
        self.counters["frames"] += 1
        ev = stream.receive(kind, body)
        sid = getattr(ev, "session", None)
        try:
            if ev is None:  # close / cancel of a session this stream no longer holds
                return
            if isinstance(ev, Reject):
                if ev.ended is not None:
                    self._ended(ev.ended, cancelled=True)
                await self._error(fs, ev.code, ev.message, ev.session)
            elif isinstance(ev, Query):
                if self.server is None:
                    raise Refused("draining", f"this worker is not serving yet ({self.state})", BUSY_RETRY_S)
                if ev.kind == "info":
                    reply = self.server.info(self.ident.peer_id, self.name, __version__)
                elif ev.kind == "card":
                    reply = self.server.card_index()
                else:
                    reply = self.server.card_part(ev.body)
                await fs.send(REPLIES[ev.kind], reply, WRITE_TIMEOUT_S)
            elif isinstance(ev, Open):
                reply = self._open(ev.body, stream, remote)
                self.counters["sessions"] += 1
                await fs.send("opened", reply, WRITE_TIMEOUT_S)
            elif isinstance(ev, Extend):
                await self._extend(fs, ev, stream, interrupted, remote)
            elif isinstance(ev, End):
                self._ended(ev.handle, ev.cancelled)
        except Refused as e:
            if e.code in ("cancelled", "unknown_session") and sid is not None:  # the session is gone here
                handle = stream.drop(sid)
                if handle is not None:
                    self._ended(handle, cancelled=e.code == "cancelled")
            await self._error(fs, e.code, str(e), sid, e.retry_after_s)
        except DecodeError as e:
            await self._error(fs, "bad_frame", str(e), sid)
        except (StreamClosed, trio.TooSlowError):
            raise
        except Exception as e:  # a bug must not take the worker down: report it, keep serving
            log.exception("internal error on %s", kind)
            self.counters["internal"] += 1
            await self._error(fs, "internal", f"{type(e).__name__}: {e}", sid)

    def _ended(self, handle, cancelled: bool) -> None:
        _, isid, srv = handle
        self._end(srv, isid)
        self._closed()
        if cancelled:
            self.counters["cancelled"] += 1

    async def _extend(self, fs: FramedStream, ev: Extend, stream: WorkerStream, interrupted: trio.Event,
                      remote: str) -> None:
        kind, sid, body = ev.kind, ev.session, ev.body
        sv, isid, srv = ev.handle
        act = sv.behaviour.decide(kind, time.monotonic()) if sv.behaviour is not None else None
        if act is not None:
            if act.gone:  # crashed / left: vanish like a dead process would (the transport breaks)
                self.counters["injected"] += 1
                await fs.reset()
                raise StreamClosed("injected: peer gone")
            if act.delay_s > 0:
                await trio.sleep(act.delay_s)
            if getattr(act, "refuse", None):  # an injected excuse (bench attack: workers choosing their blame)
                self.counters["injected"] += 1
                raise Refused(act.refuse, "refused (injected)")
            if act.stall:  # a failed stage stalls (the paper's failure): the seeker's deadline catches it
                self.counters["injected"] += 1
                with trio.move_on_after(act.stall_s):
                    await interrupted.wait()
                raise Refused("injected_failure", "stalled (injected failure)")
        srv.table.touch(isid, time.monotonic(), busy=True)  # the table is the event loop's (engine/server.py)
        try:
            job = srv.prepare({**body, "session": isid})
            if act is None and srv.batchable(job):  # a decode step: shares a forward pass with the ones ready
                res = await self.batcher.step(remote, srv, job, isid)
            elif act is None and len(parts := srv.split(job)) > 1:
                res = await self._prefill_parts(remote, srv, job, parts, lambda: stream.abandoned(sid))
            else:
                res = await self.run_compute(remote, self._compute, srv, job, act, inline=job.n == 1 and not job.verify)
        finally:
            srv.table.touch(isid, time.monotonic(), busy=False)
        refused = stream.finished(sid)  # a cancel that came meanwhile: the result is dropped
        if refused is not None:
            self._ended(refused.ended, cancelled=True)
            await self._error(fs, refused.code, refused.message, sid)
            return
        res["session"] = sid
        await fs.send("result", res, WRITE_TIMEOUT_S)

    async def _prefill_parts(self, remote: str, srv, job, parts, abandoned) -> dict:
        """A long prefill, one part per turn of the compute slot: other peers' steps go between the parts, so no
        peer's prefill holds the slot past the deadline of a step the worker accepted; a stream that ended
        (or a cancel) stops it between parts."""
        done = []
        for part in parts:
            if abandoned():
                raise Refused("cancelled", "the stream ended or the session was cancelled during the prefill")
            done.append(await self.run_compute(remote, srv.compute_part, part))
        return srv.assemble(job, done)

    @staticmethod
    def _compute(srv, job, act) -> dict:
        """On the compute thread: only the job's own session cache is touched."""
        if act is not None and act.burn_s > 0:  # the plan's cpu_load: real CPU time on this core
            end = time.perf_counter() + act.burn_s
            while time.perf_counter() < end:
                pass
        res = srv.compute(job)
        if act is not None and act.corrupt is not None:  # byzantine: perturbed activations / token
            act.corrupt(res)
        return res


def main(argv: list[str]) -> int:
    p = common.parser("worker", "Host a contiguous layer range of a transformer and serve inference sessions.",
                      SETTINGS)
    args = p.parse_args(argv)
    s = common.settings_from(args, SETTINGS)
    if not s.layers:
        raise UserError("a worker needs --layers START:END (e.g. --layers 0:10) or --layers auto")
    auto = s.layers.strip() == "auto"
    start, end = (0, 0) if auto else parse_layers(s.layers)
    if not auto and (s.max_layers or s.memory_mib):
        raise UserError("--max-layers / --memory-mib size a worker placed with --layers auto")
    os.environ.setdefault("OMP_NUM_THREADS", str(s.torch_threads))  # before torch loads
    common.setup_logging(args.log_level, s)

    require_torch()
    from ..engine.server import ShardServer

    set_threads(s.torch_threads)
    folder = resolve_model(s.model, log=lambda m: print(m, file=sys.stderr))
    scheme = scheme_of(s.quantize)

    def load(a: int, b: int):
        t0 = time.perf_counter()
        srv = ShardServer(folder, a, b, s.max_sessions, s.cache_tokens, s.session_ttl_s, max_length=s.max_length,
                          scheme=scheme)
        log.info("loaded layers %d:%d of %s (%s) in %.2fs", a, b, folder, scheme, time.perf_counter() - t0)
        return srv

    default = (args.name or "worker") if auto else f"worker-{start}-{end}"  # a second auto worker: --name
    ident = common.identity(args, s, default)
    name = args.name or s.key or default  # the key name: two workers on one range with their own keys differ
    server = None if auto else load(start, end)
    daemon = WorkerDaemon([Served(ident, server, name)], ident.peer_id, s, name)
    try:
        trio.run(_serve, daemon, args, (folder, load) if auto else None)
    except KeyboardInterrupt:
        pass
    return 0


async def _until_drained(daemon: WorkerDaemon, cancel_scope: trio.CancelScope) -> None:
    """First SIGTERM / SIGINT: graceful leave (drain within drain_s, then exit); a second one: exit now."""

    async def leave():
        if daemon.server is not None:
            print(f"gtracd worker {daemon.name}: draining ({daemon.sessions_open()} session(s), at most "
                  f"{daemon.settings.drain_s:g}s; signal again to exit now)", file=sys.stderr, flush=True)
            daemon.announce(daemon.lifecycle.leave())  # overrides a move in progress
            await daemon.drain(daemon.settings.drain_s)
        cancel_scope.cancel()

    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as sigs:
        async with trio.open_nursery() as n:
            asked = False
            async for _ in sigs:
                if asked:
                    break  # asked twice: exit now
                asked = True
                n.start_soon(leave)
            cancel_scope.cancel()


async def _serve(daemon: WorkerDaemon, args: argparse.Namespace, auto) -> None:
    daemon.nudge = Nudge()

    async def body(closing: list) -> None:
        async with trio.open_nursery() as outer:
            outer.start_soon(_until_drained, daemon, outer.cancel_scope)
            await _run(daemon, args, auto, closing)

    await common.closed_after(body)


async def _run(daemon: WorkerDaemon, args: argparse.Namespace, auto, closing: list) -> None:
    s = daemon.settings
    async with running_node("worker", daemon.name, daemon.ident, s,
                            persistent_peerstore=not args.ephemeral) as node:
        node.host.set_stream_handler(INFER, daemon.handle)
        addrs = node.addrs
        agent = None
        if auto is not None:
            agent, follower = await _start_agent(daemon, node, s, *auto)
            closing.append(follower.close)
            fp, total = agent.model, agent.fp.layers
        else:
            fp, total = daemon.server.fingerprint, daemon.server.shard.total

        def live() -> dict:
            srv = daemon.server
            out = {"state": daemon.state, "target": list(daemon.target) if daemon.target else None,
                   "free_tokens": srv.table.free_tokens if srv else 0,
                   "load": len(srv.table) / max(1, s.max_sessions) if srv else 0.0}
            if agent is not None:
                a, b = agent.range or (0, 0)
                out.update(start=a, end=b, auto=True, max_layers=s.max_layers, memory_mib=s.memory_mib)
            return out

        start, end = (0, 0) if agent else (daemon.server.start, daemon.server.end)
        hosted = Hosted(Signer(daemon.ident), fp, start, end, total, lambda: node.addrs, daemon.name, state=live)

        def status() -> dict:
            srv = daemon.server
            out = {"layers": [srv.start, srv.end] if srv else None, "model": fp, "total_layers": total,
                   "quantize": scheme_of(s.quantize),
                   "state": daemon.state, "readiness": {"ready": daemon.state == "serving" and srv is not None,
                                                        "why": f"{daemon.state}" + (
                                                            f" layers {srv.start}:{srv.end}" if srv else "")},
                   "sessions": len(srv.table) if srv else 0, "free_tokens": srv.table.free_tokens if srv else 0,
                   "counters": daemon.counters, "refusals": daemon.refusals,
                   "batching": {"max_batch": s.max_batch, "passes": srv.batches if srv else 0,
                                "steps": srv.batched_steps if srv else 0},
                   "observed": {"batch": srv.batch_sizes.snapshot()} if srv else {}}
            if agent is not None:
                out["placement"] = agent.status()
            return out

        node.status_parts.append(status)
        node.nursery.start_soon(publish_heartbeats, node, [hosted], s.heartbeat_s, daemon.nudge)
        if agent is not None:
            await agent.join()
            node.nursery.start_soon(agent.heal_forever)
        srv = daemon.server
        info = {"role": "worker", "peer_id": daemon.ident.peer_id, "addrs": addrs, "start": srv.start,
                "end": srv.end, "total_layers": total, "model": fp, "name": daemon.name, "pid": os.getpid(),
                "auto": agent is not None}
        common.write_ready(args.ready_file, info)
        print(f"gtracd worker {daemon.name} layers {srv.start}:{srv.end} ready: {first_addr(addrs)}", file=sys.stderr,
              flush=True)
        await trio.sleep_forever()


async def _start_agent(daemon: WorkerDaemon, node: Node, s: Settings, folder, load) -> tuple[Agent, Follower]:
    """The self-placing worker's view of the network (heartbeats + ledger replica, as a seeker keeps it) and
    its placement agent; the caller closes the follower after the node stopped."""

    scheme = scheme_of(s.quantize)
    fp = fingerprint(folder, scheme)
    foot = footprint(folder, scheme)
    budget = budget_of(s.max_layers, s.memory_mib)
    if not budget.fits(foot):  # fail at start, not after a survey
        raise too_small(budget, foot)
    view = PeerView(s.initial_trust, model=fp, depth=foot.layers)
    view.node_timeout_s = s.node_timeout_s
    cache = Follower(node, view, anchor_ids(s.keystore_path), data_dir=s.home / "worker")
    await node.nursery.start(cache.run)
    return Agent(daemon, view, daemon.ident.peer_id, fp, foot, budget, s, load), cache
