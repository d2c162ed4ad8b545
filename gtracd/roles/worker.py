"""`gtracd --role worker --layers START:END`: hosts a layer range and serves inference sessions.

One long-lived stream per session (/gtrac/infer/1.0.0): open -> prefill -> step ... -> close / cancel.
Compute runs in one worker thread at a time (one torch thread by default); the event loop stays free to
read frames, so a `cancel` arriving mid-step is seen at once and answered with an error frame.
"""

from __future__ import annotations

import logging
import os
import sys
import time

import trio

from .. import __version__
from ..errors import DecodeError, UserError
from ..net.framing import FramedStream, FrameTooLarge, StreamClosed
from ..net.protocols import INFER, WRITE_TIMEOUT_S
from ..sessions import Refused
from . import common

log = logging.getLogger("gtracd.worker")
SETTINGS = ["model", "layers", "torch_threads", "max_sessions", "cache_tokens", "session_ttl_s", "max_length",
            "heartbeat_s"]


def parse_layers(text: str) -> tuple[int, int]:
    try:
        a, b = text.split(":")
        start, end = int(a), int(b)
    except ValueError:
        raise UserError(f"--layers wants START:END (e.g. 0:10), got {text!r}") from None
    if not 0 <= start < end:
        raise UserError(f"--layers {text}: need 0 <= START < END")
    return start, end


class WorkerDaemon:
    def __init__(self, server, ident, settings, name: str):
        self.server = server
        self.ident = ident
        self.settings = settings
        self.name = name
        self.compute = trio.CapacityLimiter(1)
        self.counters = {"frames": 0, "errors": 0, "bad_frames": 0, "sessions": 0, "cancelled": 0}
        self.idle_timeout = settings.session_ttl_s

    async def run_compute(self, fn, *a, inline: bool = False):
        async with self.compute:
            if inline:  # a decode step (the seeker sends one token; schema caps it at 64): no thread hand-off
                return fn(*a)
            return await trio.to_thread.run_sync(fn, *a)

    async def handle(self, stream) -> None:
        fs = FramedStream(stream)
        owned: set[bytes] = set()
        inbox_send, inbox = trio.open_memory_channel(16)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._reader, fs, inbox_send, nursery.cancel_scope)
                async for item in inbox:
                    await self._serve(fs, item, owned)
                nursery.cancel_scope.cancel()
        except* (StreamClosed, trio.TooSlowError):
            pass  # the seeker went away or stopped reading: its sessions are freed below
        except* Exception as eg:  # never let one stream's failure reach libp2p's handler task
            self.counters["errors"] += 1
            log.error("stream handler failed: %r", eg.exceptions)
        finally:
            for sid in owned:
                self.server.close(sid)
            await fs.close()

    async def _reader(self, fs: FramedStream, send, scope: trio.CancelScope) -> None:
        async with send:
            while True:
                try:
                    item = await fs.read(self.idle_timeout)
                except FrameTooLarge as e:  # unframeable from here on: answer, then drop the stream
                    self.counters["bad_frames"] += 1
                    await send.send(("_bad", e))
                    return
                except DecodeError as e:
                    self.counters["bad_frames"] += 1
                    item = ("_bad", e)
                except (StreamClosed, trio.TooSlowError):
                    return
                if item[0] == "cancel":  # out of band: mark now, the step in flight answers "cancelled"
                    sess = self.server.sessions.get(item[1]["session"])
                    if sess is not None:
                        sess.cancelled = True
                await send.send(item)

    async def _error(self, fs, code: str, message: str, sid: bytes | None = None) -> None:
        self.counters["errors"] += 1
        body = {"code": code, "message": message[:2000]}
        if sid is not None:
            body["session"] = sid
        await fs.send("error", body, WRITE_TIMEOUT_S)

    async def _serve(self, fs: FramedStream, item, owned: set[bytes]) -> None:
        kind, body = item
        self.counters["frames"] += 1
        srv = self.server
        sid = body.get("session") if isinstance(body, dict) else None
        try:
            if kind == "_bad":
                code = "bad_tensor" if body.field and "hidden" in body.field else "bad_frame"
                await self._error(fs, code, str(body))
            elif kind == "info":
                await fs.send("info_reply", srv.info(self.ident.peer_id, self.name, __version__), WRITE_TIMEOUT_S)
            elif kind == "tokenize":
                await fs.send("tokens", await self.run_compute(srv.tokenize, body), WRITE_TIMEOUT_S)
            elif kind == "open":
                reply = srv.open(body)
                owned.add(sid)
                self.counters["sessions"] += 1
                await fs.send("opened", reply, WRITE_TIMEOUT_S)
            elif kind in ("prefill", "step"):
                if sid not in owned:
                    raise Refused("unknown_session", "session not opened on this stream")
                sess = srv.sessions.get(sid)
                if sess is not None and sess.cancelled:
                    raise Refused("cancelled", "session was cancelled")
                srv.table.touch(sid, time.monotonic(), busy=True)
                try:
                    res = await self.run_compute(srv.extend, body, inline=kind == "step")
                finally:
                    srv.table.touch(sid, time.monotonic(), busy=False)
                sess = srv.sessions.get(sid)
                if sess is not None and sess.cancelled:
                    raise Refused("cancelled", "cancelled during the step; session closed")
                await fs.send("result", res, WRITE_TIMEOUT_S)
            elif kind == "cancel":
                if sid in owned:
                    srv.close(sid)
                    owned.discard(sid)
                    self.counters["cancelled"] += 1
            elif kind == "close":
                if sid in owned:
                    srv.close(sid)
                    owned.discard(sid)
            else:
                await self._error(fs, "bad_frame", f"a worker does not take {kind!r} frames")
        except Refused as e:
            if e.code == "cancelled" and sid in owned:
                srv.close(sid)
                owned.discard(sid)
                self.counters["cancelled"] += 1
            await self._error(fs, e.code, str(e), sid)
        except DecodeError as e:
            await self._error(fs, "bad_frame", str(e), sid)
        except (StreamClosed, trio.TooSlowError):
            raise
        except Exception as e:  # a bug must not take the worker down: report it, keep serving
            log.exception("internal error on %s", kind)
            await self._error(fs, "internal", f"{type(e).__name__}: {e}", sid)



def main(argv: list[str]) -> int:
    p = common.parser("worker", "Host a contiguous layer range of a transformer and serve inference sessions.",
                      SETTINGS)
    args = p.parse_args(argv)
    s = common.settings_from(args, SETTINGS)
    if not s.layers:
        raise UserError("a worker needs --layers START:END (e.g. --layers 0:10)")
    start, end = parse_layers(s.layers)
    os.environ.setdefault("OMP_NUM_THREADS", str(s.torch_threads))  # before torch loads
    common.setup_logging(args.log_level)
    from ..engine import require_torch

    require_torch()
    from ..engine.models import resolve_model
    from ..engine.server import ShardServer
    from ..engine.shard import set_threads

    set_threads(s.torch_threads)
    folder = resolve_model(s.model, log=lambda m: print(m, file=sys.stderr))
    ident = common.identity(args, s, f"worker-{start}-{end}")
    t0 = time.perf_counter()
    server = ShardServer(folder, start, end, s.max_sessions, s.cache_tokens, s.session_ttl_s)
    log.info("loaded layers %d:%d of %s in %.2fs", start, end, folder, time.perf_counter() - t0)
    name = args.name or f"worker-{start}-{end}"
    try:
        trio.run(_serve, WorkerDaemon(server, ident, s, name), args)
    except KeyboardInterrupt:
        pass
    return 0


async def _serve(daemon: WorkerDaemon, args) -> None:
    from ..heartbeat import Hosted, publish_heartbeats
    from ..node import running_node
    from ..wire.envelope import Signer

    s = daemon.settings
    srv = daemon.server
    async with trio.open_nursery() as outer:
        outer.start_soon(common.until_signalled, outer.cancel_scope)
        async with running_node("worker", daemon.name, daemon.ident, s,
                                persistent_peerstore=not args.ephemeral) as node:
            node.host.set_stream_handler(INFER, daemon.handle)
            addrs = node.addrs
            hosted = Hosted(Signer(daemon.ident), srv.fingerprint, srv.start, srv.end, srv.shard.total, addrs,
                            daemon.name, state=lambda: {"free_tokens": srv.table.free_tokens,
                                                        "load": len(srv.table) / max(1, s.max_sessions)})
            node.extra_status = lambda: {"layers": [srv.start, srv.end], "model": srv.fingerprint,
                                         "sessions": len(srv.table), "free_tokens": srv.table.free_tokens,
                                         "counters": daemon.counters}
            node.nursery.start_soon(publish_heartbeats, node, [hosted], s.heartbeat_s)
            info = {"role": "worker", "peer_id": daemon.ident.peer_id, "addrs": addrs, "start": srv.start,
                    "end": srv.end, "total_layers": srv.shard.total, "model": srv.fingerprint, "name": daemon.name,
                    "pid": os.getpid()}
            common.write_ready(args.ready_file, info)
            print(f"gtracd worker {daemon.name} layers {srv.start}:{srv.end} ready: {addrs[0]}", file=sys.stderr,
                  flush=True)
            await trio.sleep_forever()
