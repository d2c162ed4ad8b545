"""A small Python client: generate and chat over a gtracd network from Python, without the HTTP layer.

    import gtracd

    # trio
    async with gtracd.open_client(bootstrap=["/ip4/.../p2p/ANCHOR"], network="home") as c:
        print(await c.chat([{"role": "user", "content": "What is the capital of France?"}]))
        async with c.stream("Once upon a time", max_tokens=32) as pieces:
            async for piece in pieces:
                print(piece, end="")

    # plain Python (a trio thread behind it)
    with gtracd.Client(peers=["/ip4/127.0.0.1/tcp/4001/p2p/WORKER", ...]) as c:
        print(c.chat([{"role": "user", "content": "Hi"}], max_tokens=16))
        for piece in c.stream_chat([{"role": "user", "content": "Hi"}]):
            print(piece, end="")

The client runs a seeker in this process (an ephemeral identity unless `key` names one in the keystore):
with `bootstrap` it joins the network (heartbeats, ledger replica, trust reports); with `peers` it dials
those workers directly. Requests go through the same service as the HTTP API (seeker/service.py): chains
routed by G-TRAC, conversations kept open so the next turn prefills only what is new. Breaking out of a
stream (or cancelling the task) cancels the sessions on every hop.
"""

from __future__ import annotations

import math
import queue
import threading
from contextlib import asynccontextmanager

import trio

from ..config import Settings
from ..errors import UserError
from ..identity import Identity, Keystore
from .generation import GenerationFailed
from .running import running_seeker
from .service import Completion, Request, SeekerService, Trust, discover, routing_params, wait_for_route
from .speculation import parse as parse_speculate

__all__ = ["AsyncClient", "Client", "GenerationFailed", "open_client"]


def _request(prompt=None, messages=None, max_tokens=64, temperature=0.0, top_p=1.0, seed=0, stop=(),
             ignore_eos=False, min_trust=None, spot_check_rate=None, exclude_peers=(), exclude_hosts=(),
             speculate=None) -> Request:
    """`min_trust`, `spot_check_rate`, `exclude_peers`, `exclude_hosts`: this request's own, stricter trust
    terms (the result's `provenance` says which chain answered and how it was checked). `speculate`: auto, off
    or K draft tokens (None: the seeker's setting); the text is the same either way."""
    if (prompt is None) == (messages is None):
        raise UserError("give a prompt or messages")
    for name, v in (("min_trust", min_trust), ("spot_check_rate", spot_check_rate)):
        if v is not None and not 0.0 <= v <= 1.0:
            raise UserError(f"{name} must be in [0, 1]")
    msgs = None if messages is None else tuple((m["role"], m["content"]) for m in messages)
    if speculate is not None:
        try:
            speculate = parse_speculate(speculate)
        except ValueError as e:
            raise UserError(str(e)) from None
    return Request(messages=msgs, prompt=prompt, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                   seed=seed, stop=tuple([stop] if isinstance(stop, str) else stop), ignore_eos=ignore_eos,
                   trust=Trust(min_trust, spot_check_rate, tuple(exclude_peers), tuple(exclude_hosts)),
                   speculate=speculate)


class AsyncClient:
    """Use `open_client(...)`; this is what it yields."""

    def __init__(self, service):
        self.service = service

    async def complete(self, prompt: str, **kw) -> Completion:
        return await self.service.complete(_request(prompt=prompt, **kw))

    async def generate(self, prompt: str, **kw) -> str:
        return (await self.complete(prompt, **kw)).text

    async def chat_completion(self, messages: list[dict], **kw) -> Completion:
        return await self.service.complete(_request(messages=messages, **kw))

    async def chat(self, messages: list[dict], **kw) -> str:
        return (await self.chat_completion(messages, **kw)).text

    @asynccontextmanager
    async def stream(self, prompt: str | None = None, messages: list[dict] | None = None, **kw):
        """`async with c.stream(...) as pieces: async for piece in pieces: ...` — text pieces as they are
        generated; leaving the block early cancels the request on every hop."""
        req = _request(prompt=prompt, messages=messages, **kw)
        send, recv = trio.open_memory_channel(math.inf)  # at most max_tokens pieces

        async def run() -> None:
            async with send:
                try:
                    await self.service.complete(req, lambda t: send.send_nowait(t) if t else None)
                except GenerationFailed as e:
                    send.send_nowait(e)

        async def pieces():
            async for item in recv:
                if isinstance(item, GenerationFailed):
                    raise item
                yield item

        async with trio.open_nursery() as n:
            n.start_soon(run)
            try:
                yield pieces()
            finally:
                n.cancel_scope.cancel()

    def stream_chat(self, messages: list[dict], **kw):
        return self.stream(messages=messages, **kw)


@asynccontextmanager
async def open_client(bootstrap: list[str] | None = None, peers: list[str] | None = None, network: str = "default",
                      model: str = "smollm2-135m", key: str | None = None, data_dir: str | None = None,
                      route_timeout_s: float = 30.0, **settings):
    """A seeker in this process, ready to route (waits until a chain covers the model)."""

    if not bootstrap and not peers:
        raise UserError("give bootstrap (anchor multiaddrs) or peers (worker multiaddrs)")
    s = Settings(bootstrap=list(bootstrap or []), network=network, model=model, data_dir=data_dir, **settings)
    ident = Keystore(s.keystore_path).load(key) if key else Identity.generate()
    name = key or f"client-{ident.peer_id[-8:]}"
    async with running_seeker(name, ident, s) as sk:
        view, cache, net = sk.view, sk.cache, sk.net
        if peers:
            problems = await discover(net, view, list(peers))
            if problems and not view.workers:
                raise UserError("no worker answered: " + "; ".join(problems))
        if not await wait_for_route(view, routing_params(s), s.mode, route_timeout_s):
            raise UserError(f"no live chain covering {model} within {route_timeout_s:g} s")
        service = SeekerService(net, view, s, cache)
        try:
            yield AsyncClient(service)
        finally:
            await service.aclose()
            if cache is not None:
                with trio.CancelScope(shield=True):
                    await cache.drain(5.0)


class Client:
    """The same client for code that is not async: a trio thread runs the seeker; calls block."""

    def __init__(self, **kw):
        self._kw = kw
        self._token = None
        self._client: AsyncClient | None = None
        self._stop: trio.Event | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def __enter__(self) -> Client:
        ready = threading.Event()

        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            self._stop = trio.Event()
            try:
                async with open_client(**self._kw) as c:
                    self._client = c
                    ready.set()
                    await self._stop.wait()
            except BaseException as e:
                self._error = e
                ready.set()

        self._thread = threading.Thread(target=trio.run, args=(main,), daemon=True, name="gtracd-client")
        self._thread.start()
        ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc) -> None:
        if self._token is not None and self._stop is not None:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        if self._thread is not None:
            self._thread.join(30)

    def _call(self, fn, *a, **kw):
        return trio.from_thread.run(lambda: fn(*a, **kw), trio_token=self._token)

    def generate(self, prompt: str, **kw) -> str:
        return self._call(self._client.generate, prompt, **kw)

    def complete(self, prompt: str, **kw) -> Completion:
        return self._call(self._client.complete, prompt, **kw)

    def chat(self, messages: list[dict], **kw) -> str:
        return self._call(self._client.chat, messages, **kw)

    def chat_completion(self, messages: list[dict], **kw) -> Completion:
        return self._call(self._client.chat_completion, messages, **kw)

    def stream(self, prompt: str | None = None, messages: list[dict] | None = None, **kw):
        """Text pieces as they come (a generator; closing it early cancels the request on every hop)."""
        q: queue.Queue = queue.Queue()
        done = object()
        scope_box: list[trio.CancelScope] = []

        async def pump() -> None:
            with trio.CancelScope() as scope:
                scope_box.append(scope)
                try:
                    async with self._client.stream(prompt, messages, **kw) as pieces:
                        async for piece in pieces:
                            q.put(piece)
                except Exception as e:  # delivered to the caller's thread
                    q.put(e)
                    return
            q.put(done)

        threading.Thread(target=lambda: trio.from_thread.run(pump, trio_token=self._token), daemon=True).start()
        try:
            while True:
                item = q.get()
                if item is done:
                    return
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            if scope_box:
                trio.from_thread.run_sync(scope_box[0].cancel, trio_token=self._token)

    def stream_chat(self, messages: list[dict], **kw):
        return self.stream(messages=messages, **kw)
