"""The seeker as a service: a request in (chat messages or prompt text, sampling, limits, stop strings), its
text out as it is generated, through a chain routed per request; conversations are kept open so the next
turn prefills only what is new (seeker/contexts.py). The HTTP API (seeker/api) and the Python client
(seeker/client.py) and the CLI's `generate` (each prompt or chat turn a request) all drive it; the trust
reports and the recent-requests view follow every request.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from ..control.peerview import WorkerEntry
from ..errors import DecodeError, UserError
from ..net.hop import fetch_info
from ..net.host import dial
from ..routing import Params
from ..wire.kinds import WIRE_DTYPES
from .contexts import KEEP, Context, Contexts
from .generation import Generation, GenerationFailed
from .observed import Observed
from .readiness import readiness, view_changed
from .speculation import parse as parse_speculate
from .stops import StopMatcher

if TYPE_CHECKING:
    from gtracd.config import Settings
    from gtracd.control.follower import Follower
    from gtracd.control.peerview import PeerView

log = logging.getLogger("gtracd.service")


async def discover(net, view: PeerView, addrs: list[str], timeout: float = 10.0) -> list[str]:
    """Dial each worker and ask what it hosts. Unreachable peers are reported, not fatal."""

    problems: list[str] = []

    async def one(addr: str) -> None:
        try:
            with trio.fail_after(timeout):
                lp = await dial(net.host, addr, timeout)
                info = await fetch_info(net.host, lp, lp.to_base58(), timeout)
        except UserError:
            raise
        except Exception as e:  # unreachable, timed out, refused: reported, not fatal
            problems.append(f"{addr}: {type(e).__name__}: {e}")
            return
        view.add(WorkerEntry(info["peer_id"], addr, info["start"], info["end"], info["total_layers"], info["model"],
                             info["name"], alive=True))  # last_seen 0: given by --peer, not by heartbeats

    async with trio.open_nursery() as n:
        for a in addrs:
            n.start_soon(one, a)
    return problems


def routing_params(s: Settings) -> Params:
    """The routing parameters a seeker's settings give."""
    return Params(trust_floor=s.trust_floor, penalty_ms=s.penalty_ms, min_reliability=s.larac_min_reliability)


async def wait_for_route(view: PeerView, params: Params, mode: str, timeout: float) -> bool:
    """Heartbeats arrive every heartbeat_s: wait (bounded) until the live view covers every layer, looking again
    whenever the view changes and at least once a second."""

    with trio.move_on_after(timeout):
        while not readiness(view, params, mode)["ready"]:
            await view_changed(view, 1.0)
        return True
    return False


@dataclass(frozen=True)
class Trust:
    """A request's own trust terms (stricter only: the seeker's settings are the least it applies): a higher
    trust floor, a higher spot-check rate, peers and hosts (the peer id a worker's address dials) to avoid."""

    min_trust: float | None = None
    spot_check_rate: float | None = None
    exclude_peers: tuple[str, ...] = ()
    exclude_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Request:
    messages: tuple[tuple[str, str], ...] | None = None  # (role, content) pairs, for the chat template
    prompt: str | None = None  # raw text (a completion)
    max_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False  # generate max_tokens whatever the model says (vLLM's extension; benchmarks)
    top_k: int = 0  # 0: off (the CLI's --top-k; the OpenAI API has none)
    trust: Trust = Trust()
    speculate: int | str | None = None  # this request's speculation (seeker.speculation.parse); None: the setting

    @property
    def sampling(self) -> dict:
        return {"temperature": float(self.temperature), "top_k": int(self.top_k), "top_p": float(self.top_p),
                "seed": int(self.seed)}


@dataclass
class Completion:
    text: str
    finish_reason: str  # "stop" (end of sequence or a stop string) | "length"
    prompt_tokens: int
    completion_tokens: int
    reused_tokens: int  # prompt positions already cached on the chain (context reuse)
    chain: list[str]
    repairs: int
    ttft_s: float  # request in -> first token out
    token_ids: list[int] = field(default_factory=list)  # what the chain generated
    prefill_ms: float = 0.0
    step_ms: list[float] = field(default_factory=list)  # per decode step, seeker-measured end to end
    selection_ms: float = 0.0  # routing's choice of the chain (0 when a kept conversation's chain was reused)
    repair_log: list[dict] = field(default_factory=list)
    hop_latency_ms: list[float] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)  # Generation.provenance: who answered, how it was checked


class Busy(Exception):
    """Every request slot is taken (the HTTP API answers 429)."""


def seeker_generation(net, view: PeerView, s: Settings, sampling: dict, trust: Trust = Trust(), mode: str | None = None,
                      rng: random.Random | None = None, **kw) -> Generation:
    """A generation as a seeker with settings `s` runs it: its routing terms, deadlines, spot checks and repair
    (one place, so a tool driving generations — the lab's sweep — runs the seeker a user runs). A request's own
    trust terms only tighten the settings'; `kw` sets what the settings do not (max_repairs, max_length, ...)."""
    params = routing_params(s)
    params = dataclasses.replace(params, trust_floor=max(params.trust_floor, trust.min_trust or 0.0))
    kw.setdefault("max_length", s.max_length)
    gen = Generation(net, view, params, mode or s.mode, sampling, hop_timeout_floor_s=s.hop_timeout_floor_s,
                     hop_timeout_factor=s.hop_timeout_factor, rng=rng or random.Random(),
                     spot_check_rate=max(s.spot_check_rate, trust.spot_check_rate or 0.0),
                     spot_check_calls=s.spot_check_calls, spot_check_probation=s.spot_check_probation,
                     heal_wait_s=s.heal_wait_s,
                     exclude_hosts=frozenset(trust.exclude_hosts), speculate=s.speculate, wire_dtype=s.wire_dtype,
                     **kw)
    gen.accounts.avoid(trust.exclude_peers)
    return gen


class SeekerService:
    def __init__(self, net, view: PeerView, settings: Settings, cache: Follower | None = None, recent=None, keep: int = KEEP, max_requests: int = 16):
        self.net, self.view, self.s, self.cache, self.recent = net, view, settings, cache, recent
        try:
            parse_speculate(settings.speculate)
        except ValueError as e:
            raise UserError(f"speculate: {e}") from None
        if settings.wire_dtype not in WIRE_DTYPES:
            raise UserError(f"wire_dtype {settings.wire_dtype!r}: choose {', '.join(WIRE_DTYPES)}")
        self.contexts = Contexts(keep)
        self.max_requests = max_requests
        self.slots = trio.Semaphore(max_requests, max_value=max(1, max_requests))
        self.counters = {"requests": 0, "failed": 0, "cancelled": 0, "busy": 0}
        self.observed = Observed()

    def new_generation(self, sampling: dict, trust: Trust = Trust()) -> Generation:
        return seeker_generation(self.net, self.view, self.s, sampling, trust)

    def model(self) -> str | None:
        """The fingerprint of the model this seeker serves, once a worker announced it."""
        mt = self.view.pinned()
        return mt[0] if mt else None

    async def report(self, gen: Generation, ok: bool, culprit, tokens: int, seconds: float | None,
                     error: str | None = None) -> None:
        """A request ended: trust outcome, the signed reports, the recent-requests view."""
        gen.trust_outcome(ok, culprit)
        if self.recent is not None and seconds is not None:
            self.recent.record(gen, ok, culprit, tokens, seconds, error)
        if self.cache is not None:
            try:
                await self.cache.report(gen.report_bodies(self.s.network, ok, culprit, tokens))
            except DecodeError as e:  # a report we could not form never costs the user the answer
                log.warning("trust report not sent: %s", e)

    async def complete(self, req: Request, on_text=None, on_chain=None) -> Completion:
        """Generate; `on_text(str)` gets the text as it is produced (stop strings never shown; "" once at the
        first token if it shows no text, so a stream can start at the first token); `on_chain(gen)` once a
        new chain is open. Raises GenerationFailed when the chain fails beyond repair, Busy when every slot is
        taken."""
        self.observed.in_flight += 1
        try:
            if self.s.route_wait_s > 0:  # still discovering (or a worker restarting): wait for a route first,
                await wait_for_route(self.view, routing_params(self.s), self.s.mode, self.s.route_wait_s)  # no slot held
            try:
                self.slots.acquire_nowait()
            except trio.WouldBlock:
                self.counters["busy"] += 1
                self.observed.outcomes.add("busy")
                raise Busy(f"all {self.max_requests} request slots are busy") from None
            try:
                return await self._complete(req, on_text, on_chain)
            finally:
                self.slots.release()
        finally:
            self.observed.in_flight -= 1

    async def _complete(self, req: Request, on_text, on_chain) -> Completion:
        self.counters["requests"] += 1
        key = (tuple(sorted(req.sampling.items())), req.trust)
        said = req.messages if req.messages is not None else req.prompt
        ctx = self.contexts.take(said, key)
        gen = ctx.gen if ctx is not None else self.new_generation(req.sampling, req.trust)
        gen.new_request()
        gen.speculate(self.s.speculate if req.speculate is None else req.speculate)
        matcher = StopMatcher(req.stop)
        t0 = time.monotonic()
        first: list[float] = []

        def piece(p: str) -> bool:
            out = matcher.feed(p)
            if on_text is not None and (out or not first):  # the first token, even without text, starts output
                on_text(out)
            if not first:
                first.append(time.monotonic() - t0)
            return matcher.stopped

        try:
            with trio.fail_after(self.s.request_timeout_s + req.max_tokens * 2.0):
                if not gen.hops:
                    await gen.start()
                    if on_chain is not None:
                        on_chain(gen)
                if req.messages is not None:
                    tokens = await gen.tokenize(messages=[{"role": r, "content": c} for r, c in req.messages])
                else:
                    tokens = await gen.tokenize(text=req.prompt)
                r = await gen.turn(tokens, req.max_tokens, piece, ignore_eos=req.ignore_eos)
            tail = matcher.flush()
            if tail and on_text is not None:
                on_text(tail)
        except GenerationFailed as e:
            self.counters["failed"] += 1
            self.observed.ended(gen, e.code)
            await self.report(gen, False, e.culprit, 0, time.monotonic() - t0, str(e))
            await gen.cancel()
            raise
        except trio.TooSlowError:
            self.counters["failed"] += 1
            self.observed.ended(gen, "timeout")
            await gen.cancel()
            raise GenerationFailed(f"timed out after {self.s.request_timeout_s + req.max_tokens * 2.0:.0f} s",
                                   blamed=False) from None
        except BaseException:  # the client went away (cancelled), or a bug: free every hop's session
            self.counters["cancelled"] += 1
            self.observed.ended(gen, "cancelled")
            await gen.cancel()
            raise
        self.observed.ended(gen, "ok")
        self.observed.completed(first[0] if first else time.monotonic() - t0, r.step_ms, len(r.tokens),
                                r.prompt_tokens, r.reused)
        await self.report(gen, True, None, len(r.tokens), time.monotonic() - t0)
        kept = said + (("assistant", matcher.text),) if req.messages is not None else said + matcher.text
        for old in self.contexts.give_back(Context(gen, key, kept)):
            await old.gen.aclose()
        return Completion(matcher.text, "stop" if (r.eos or r.stopped) else "length", r.prompt_tokens,
                          len(r.tokens), r.reused, r.chain, r.repairs,
                          first[0] if first else time.monotonic() - t0, r.tokens, r.prefill_ms, r.step_ms,
                          r.selection_ms, list(gen.repair_log), gen.hop_latency_ms(), gen.provenance())

    def readiness(self) -> dict:
        return readiness(self.view, routing_params(self.s), self.s.mode)

    def status(self) -> dict:
        return {**self.observed.status(), "service": {**self.counters, "contexts": len(self.contexts), "reuse_hits": self.contexts.hits,
                            "reuse_misses": self.contexts.misses}}

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            for c in self.contexts.drain():
                await c.gen.aclose()
