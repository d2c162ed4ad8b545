"""A generation over a chain of workers, seeker-mediated (trio shell around pure routing).

For every step the seeker sends hop i its input, takes the output and sends it to hop i+1, so it measures
each hop itself (honest latency) and knows exactly which hop failed (no worker can frame another).

Bounded one-shot repair (G-TRAC): when a hop fails, a replacement with the same layer range and trust above
the floor is opened and replayed the exact inputs this hop received in this session (same chunks, same
shapes, so its KV cache is bit-identical), then the step is retried once. Progress is never discarded and
the finished text equals a failure-free run. What a failure costs the worker is decided by seeker.blame
(refusals and evictions cost nothing); a sampled share of hops is spot-checked on an independent replica
(seeker.checker; rate 0 by default here, the daemon's `spot_check_rate` setting otherwise).
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from dataclasses import dataclass

import trio

from ..control.peerview import PeerView, WorkerEntry
from ..errors import GtracError, UserError
from ..net.hop import HopError, HopFailed
from ..protocols.sessions import BUSY_RETRY_S
from ..routing import NoRoute, Params, Peer, replacement, route
from ..tokens.tokenizer import Tokenizer
from ..wire.kinds import STEP_HIDDEN
from .blame import verdict
from .checker import Convicted, SpotChecker, checked_call, cut_history
from .hops import Chunk, Hop, SeekerNet, host_of, replay_plan
from .readiness import view_changed
from .repairs import Accounts
from .speculation import MAX_DRAFT, Speculation, accepted, propose

log = logging.getLogger("gtracd.seeker")
PIECE_CONTEXT = 8  # tokens before a new one decoded with it (a piece may depend on its neighbours)
OPEN_ROUTES = 4  # routes a chain's opening tries, each around the peers the ones before could not reach


class GenerationFailed(GtracError):
    """`culprit`: the worker to blame (a failure report names it); None when no worker is at fault (a refusal,
    an eviction, no route). `blamed` False: report nothing at all (see seeker.blame). `code`: what kind of
    failure, for callers that answer for it (the HTTP API): "no_route", "context_length_exceeded",
    "bad_prompt" (the chat template refused it), "unsupported_model" (a tokenizer this seeker cannot read),
    or "chain_failed"."""

    def __init__(self, message: str, culprit: str | None = None, blamed: bool = True, code: str = "chain_failed"):
        self.culprit = culprit if blamed else None
        self.blamed = blamed
        self.code = code
        super().__init__(message)


@dataclass
class TurnResult:
    tokens: list[int]
    text: str
    prefill_ms: float
    step_ms: list[float]
    repairs: int
    chain: list[str]
    selection_ms: float
    eos: bool
    stopped: bool = False  # on_piece asked to stop (a stop string)
    prompt_tokens: int = 0
    reused: int = 0  # prompt positions already cached on the chain (not prefilled again)


def first_of(eg: BaseException, cls: type) -> BaseException | None:
    if isinstance(eg, cls):
        return eg
    for e in getattr(eg, "exceptions", ()):
        found = first_of(e, cls)
        if found is not None:
            return found
    return None


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class Generation:
    def __init__(self, net: SeekerNet, view: PeerView, params: Params, mode: str = "g-trac",
                 sampling: dict | None = None, max_length: int = 4096, hop_timeout_floor_s: float = 2.0,
                 hop_timeout_factor: float = 10.0, open_timeout_s: float = 10.0, rng: random.Random | None = None,
                 max_repairs: int | None = None, spot_check_rate: float = 0.0, spot_check_calls: int = 4,
                 spot_check_probation: int = 0,
                 check_rng: random.Random | None = None, heal_wait_s: float = 0.0,
                 exclude_hosts: frozenset[str] = frozenset(), speculate: int | str = "off",
                 wire_dtype: str = "float32"):
        self.net, self.view, self.params, self.mode = net, view, params, mode
        self.sampling = sampling or {"temperature": 0.0, "top_k": 0, "top_p": 1.0, "seed": 0}
        self.max_length = max_length
        self.floor_s, self.factor = hop_timeout_floor_s, hop_timeout_factor
        self.open_timeout = open_timeout_s
        self.rng = rng or random.Random()
        self.sid = os.urandom(16)
        self.hops: list[Hop] = []
        self.fed: list[int] = []
        self.model: str | None = None
        self.selection_ms = 0.0
        self.exact_replay_max = 8  # longer histories: decode steps merged into one chunk (see replay_plan)
        self.heal_wait_s = heal_wait_s  # how long a repair with no replacement waits for one to appear
        self.accounts = Accounts(max_repairs)  # repairs, blame, convictions: what this request owes (pure)
        self._width: int | None = None  # the model's hidden width, from the first relayed hidden state
        self._turn_limit = 0  # the positions this turn may reach (what every replacement must grant)
        self._at = 0  # tokens this turn generated so far (where spot-check windows open)
        self.selected: list[tuple[str, float, float]] = []  # (peer, trust, latency ms) as routing saw them
        self.trace: list[dict] = []  # per forward pass: e2e, summed hop wall and compute time, hops
        self._calls: list[tuple[float, float]] = []
        self.checker = SpotChecker(spot_check_rate, spot_check_calls, self.sid, check_rng or random.SystemRandom(),
                                   probation=spot_check_probation,
                                   verified=lambda pid: view.verified.get(pid, 0) >= spot_check_probation)
        self.exclude_hosts = exclude_hosts  # the request's own: no hop, replacement or witness on these hosts
        self.selected_trust: dict[str, float] = {}  # peer -> its trust when routing chose it (provenance)
        self.open_routes = OPEN_ROUTES  # routes tried while opening, each without the peers it could not reach
        self.speculation = Speculation(speculate)  # drafts per decode step (seeker.speculation)
        self.wire_dtype = wire_dtype  # hidden states between hops (every hop and witness of this chain)

    def speculate(self, setting: int | str) -> None:
        """This request's speculation setting (a kept generation keeps what it learned if it is unchanged)."""
        if Speculation(setting).setting != self.speculation.setting:
            self.speculation = Speculation(setting)

    # ------------------------------------------------------------------ chain
    @property
    def chain(self) -> list[str]:
        return [h.peer.peer_id for h in self.hops]

    async def start(self) -> None:
        mt = self.view.pinned()
        if mt is None:
            seen = self.view.models_seen()
            if not seen:
                raise GenerationFailed("no workers known: give --peer MULTIADDR (or bootstrap to a network)",
                                       code="no_route")
            want = self.view.model or "one model"
            raise GenerationFailed(f"no worker serves {want}; workers announce " +
                                   ", ".join(f"{fp} ({n})" for fp, n in sorted(seen.items())) +
                                   " (pin the model with --model NAME|FOLDER|FINGERPRINT)", code="no_route")
        self.model = mt[0]
        self.hops = []
        for attempt in range(self.open_routes):
            snap = self.view.snapshot(self.model)
            t0 = time.perf_counter()
            try:
                r = route(snap, self.mode, self.params, rng=self.rng,
                          exclude=self.failed | self.view.busy(time.monotonic()) | self.banned())
            except NoRoute as e:
                if attempt:  # the peers it could not reach were the only way
                    raise self._failed(f"no chain covers the model without the {len(self.accounts.unreached)} "
                                       f"peer(s) it could not reach: {e}", None, False, "no_route") from None
                raise GenerationFailed(f"no chain covers the model: {e}", code="no_route") from None
            self.selection_ms += (time.perf_counter() - t0) * 1e3
            self.selected = [(p.id, p.trust, p.latency_ms) for p in r.chain]
            self.selected_trust.update({p.id: p.trust for p in r.chain})
            try:
                self.hops = [Hop(self.view.workers[p.id], await self.net.session(p.id, self.open_timeout))
                             for p in r.chain]
                break
            except HopFailed as e:  # unreachable before anything was sent: route around it, that peer reported alone
                self.accounts.unreachable(e.peer, str(e))
                self.view.unreachable(e.peer)
                self.net.forget(e.peer)
                log.warning("cannot reach %s while opening the chain (%s); routing around it", e.peer[-8:], e)
                last = e
        else:
            p = self.view.workers.get(last.peer)
            where = f" (layers {p.start}:{p.end})" if p is not None else ""
            # each peer it could not reach is reported alone (Accounts.reports); nobody else is at fault
            raise self._failed(f"cannot reach {last.peer[-8:]}{where}: {last}; {len(self.accounts.unreached)} "
                               f"unreachable peer(s) routed around, {self.open_routes} routes tried", None,
                               False) from None
        try:
            async with trio.open_nursery() as n:
                for i in range(len(self.hops)):
                    n.start_soon(self._open_or_repair, i)
        except BaseExceptionGroup as eg:
            failed = first_of(eg, GenerationFailed)
            if failed is not None:
                raise failed from None
            raise

    @property
    def repairs(self) -> int:
        return len(self.accounts.repair_log)

    @property
    def repair_log(self) -> list[dict]:
        return self.accounts.repair_log

    @property
    def replacement_failures(self) -> list[dict]:
        return self.accounts.replacement_failures

    @property
    def repair_attempts(self) -> int:
        return self.accounts.attempts

    @property
    def failed(self) -> set[str]:
        """Peers routed around for the rest of this generation (read-only: Accounts owns it)."""
        return frozenset(self.accounts.failed)

    @property
    def granted_length(self) -> int:
        """The session length every hop agreed to (workers clamp to their cache budget)."""
        return min([self.max_length] + [h.session.max_length or self.max_length for h in self.hops])

    def _open_body(self, w: WorkerEntry) -> dict:
        body = {"session": self.sid, "model": w.model, "start": w.start, "end": w.end,
                "max_length": self.max_length, "sampling": self.sampling, "peer": w.peer_id, "nonce": os.urandom(16)}
        if self.wire_dtype != "float32":  # (float32 needs no field: a release before it reads the open as ever)
            body["wire_dtype"] = self.wire_dtype
        return body

    async def _open_or_repair(self, i: int) -> None:
        hop = self.hops[i]
        try:
            await hop.session.open(self._open_body(hop.peer), self.open_timeout)
        except (HopFailed, HopError) as e:
            await self._repair(i, e)

    # ------------------------------------------------------------------ deadlines
    def deadline(self, hop: Hop, n: int) -> float:
        """Derived from this hop's measured step latency, never a fixed 20 s."""
        est = self.view.latency(hop.peer.peer_id) / 1e3
        return max(self.floor_s, self.factor * est) * (1.0 + n / 16.0)

    # ------------------------------------------------------------------ repair
    def _failed(self, message: str, culprit: str | None, blamed: bool, code: str = "chain_failed") -> GenerationFailed:
        self.accounts.ended(blamed)
        return GenerationFailed(message, culprit, blamed, code)

    def _verdict(self, err: BaseException, hop: Hop):
        return verdict(err, self.view.drained_since(hop.peer.peer_id, hop.opened_at))

    def _excluded(self) -> set[str]:
        """Never a replacement: failed peers, busy ones, and chain members still hosting the range they serve
        in this chain. A peer that moved to another range (healing a hole) may serve there, whether it is
        still in the chain or its session here was cut by its drain without blame."""
        def moved(pid: str, rng: tuple[int, int]) -> bool:
            w = self.view.workers.get(pid)
            return w is not None and (w.start, w.end) != rng

        same = {h.peer.peer_id for h in self.hops if not moved(h.peer.peer_id, (h.peer.start, h.peer.end))}
        return self.accounts.excluded(moved) | same | self.view.busy(time.monotonic()) | self.banned()

    def banned(self) -> set[str]:
        """Peers on the hosts this request excludes."""
        if not self.exclude_hosts:
            return set()
        return {p for p, w in self.view.workers.items() if host_of(w.addr) in self.exclude_hosts}

    async def _replacement(self, old: Hop, deadline: float):
        """The best live replacement for the range `old` served (the view may already show its peer
        elsewhere); until `deadline` (heal_wait_s), wait for one to appear (a self-placing worker moving to
        heal the hole) whenever the view changes."""
        failed = Peer(old.peer.peer_id, old.peer.start, old.peer.end, 0.0, 0.0, False)
        while True:
            rep = replacement(self.view.snapshot(self.model), failed, self.params, exclude=self._excluded())
            if rep is not None or trio.current_time() >= deadline:
                return rep
            await view_changed(self.view, min(deadline - trio.current_time(), 1.0))

    async def open_replayed(self, pid: str, history: list[Chunk]) -> Hop:
        """A session on `pid` fed `history`, the inputs a hop of this generation received (what a replacement
        or a witness must have cached). On a failure the session is aborted and the error raised with the hop
        it opened attached as `err.hop` (None if it never got that far)."""
        hop = None
        try:
            hs = await self.net.session(pid, self.open_timeout)
            hop = Hop(self.view.workers[pid], hs, history=list(history))
            await hs.open(self._open_body(hop.peer), self.open_timeout)
            need = max([self._turn_limit] + [c.pos + c.n for c in hop.history])
            if hs.max_length is not None and hs.max_length < need:  # it would rightly refuse a later step
                raise HopError(pid, "too_long", f"granted {hs.max_length} positions, this chain needs {need}",
                               request="open", local=True)
            for ch in replay_plan(hop.history, self.exact_replay_max):
                await hs.timed("prefill", ch.body(self.sid, sample=False), self.deadline(hop, ch.n))
            return hop
        except (HopFailed, HopError) as e:
            if hop is not None:
                await hop.session.abort()
            e.hop = hop
            raise

    async def swap_hop(self, i: int, new: Hop) -> None:
        """Hop i's replica `new` (a witness that mirrored every input) takes its place; the old session ends."""
        old = self.hops[i]
        await old.session.abort()
        new.history = list(old.history)  # the caller appends the chunk of the call in progress
        self.hops[i] = new
        self.selected_trust[new.peer.peer_id] = self.view.trust(new.peer.peer_id)

    async def _repair(self, i: int, err: Exception) -> None:
        old = self.hops[i]
        pid = old.peer.peer_id
        v = self._verdict(err, old)
        self.accounts.hop_failed(pid, (old.peer.start, old.peer.end), v)
        if v.kind == "refusal":  # route around it for as long as it asked
            self.view.refused(pid, time.monotonic() + (v.retry_after_s or BUSY_RETRY_S))
        if not self.accounts.may_repair():
            await old.session.abort()
            raise self._failed(f"hop {i} (layers {old.peer.start}:{old.peer.end}) failed ({err}) after "
                               f"{len(self.repair_log)} repair(s) this request", pid, v.blamed)
        self.view.unreachable(pid, alive=isinstance(err, HopError))  # a transport failure: presumed gone
        await self.checker.drop(i)  # a replaced hop's witness no longer mirrors it
        self.net.forget(pid)
        await old.session.abort()
        t0 = time.perf_counter()
        deadline = trio.current_time() + self.heal_wait_s
        while True:
            rep = await self._replacement(old, deadline)
            if rep is None:
                raise self._failed(f"hop {i} (layers {old.peer.start}:{old.peer.end}) failed ({err}) and no "
                                   f"replacement with trust >= {self.params.trust_floor:g} is known", pid, v.blamed)
            log.warning("hop %d %s failed (%s); repairing with %s", i, pid[-8:], err, rep.id[-8:])
            self.accounts.attempt()
            try:
                new = await self.open_replayed(rep.id, old.history)
                break
            except (HopFailed, HopError) as e2:
                v2 = self._verdict(e2, e2.hop) if e2.hop is not None else verdict(e2)
                if v2.kind == "refusal":
                    self.view.refused(rep.id, time.monotonic() + (v2.retry_after_s or BUSY_RETRY_S))
                may_wait = trio.current_time() < deadline
                self.accounts.replacement_failed(rep.id, v2, str(e2), may_wait)
                if may_wait:  # still allowed to wait: the next replacement
                    if isinstance(e2, HopFailed):
                        self.view.unreachable(rep.id)  # presumed gone, like the hop it replaced
                    continue
                # blame the original hop if it was at fault, else the replacement if it was
                who = pid if v.blamed else (rep.id if v2.blamed else None)
                raise self._failed(f"repair of hop {i} on {rep.id[-8:]} failed too: {e2}", who,
                                   who is not None) from None
        self.hops[i] = new
        self.selected_trust[rep.id] = rep.trust
        await self.checker.redraw(i, rep.id)  # the replacement is checked like any hop
        self.accounts.repaired(i, pid, rep.id, v, str(err), (time.perf_counter() - t0) * 1e3,
                               [h.peer.peer_id for h in self.hops[:i]] + [pid] + [h.peer.peer_id for h in self.hops[i + 1:]],
                               [x for x in (h.latency_ms() for h in self.hops[:i]) if x])

    # ------------------------------------------------------------------ steps
    async def _hop_call(self, i: int, kind: str, chunk: Chunk) -> dict:
        for attempt in (0, 1):
            hop = self.hops[i]
            try:
                if self.checker.due(i, self._at):  # a replacement's first call too: it is checked like any hop
                    try:
                        res, ms = await checked_call(self, i, kind, chunk)
                    except Convicted as c:  # by a sub-chain witness: reported as wrong output, the request ends
                        raise self._failed(f"{c}; no replica serves its exact range to go on with", None,
                                           False) from None
                    hop = self.hops[i]  # a liar caught by the check was replaced by its witness
                else:
                    res, ms = await hop.session.timed(kind, chunk.body(self.sid), self.deadline(hop, chunk.n))
            except (HopFailed, HopError) as e:
                if i > 0 and getattr(e, "code", None) == "bad_tensor":  # it refused what hop i-1 produced
                    producer = self.hops[i - 1].peer
                    raise self._failed(f"hop {i} refused the hidden state hop {i - 1} ({producer.peer_id[-8:]}) "
                                       f"produced: {e}", producer.peer_id, True) from None
                if attempt == 1:
                    v = self._verdict(e, hop)
                    raise self._failed(f"hop {i} failed again after repair: {e}", hop.peer.peer_id, v.blamed) from None
                await self._repair(i, e)
                continue
            hop.history.append(chunk)
            hop.call_ms.append(ms)
            self._calls.append((ms, res.get("compute_ms", 0.0)))
            if chunk.n == 1 or kind == "step":  # a decode step (a speculative one costs about the same on a CPU)
                hop.step_ms.append(ms)
                hop.compute_ms.append(res["compute_ms"])
                self.view.observe_latency(hop.peer.peer_id, ms)
            return res
        raise AssertionError("unreachable")

    async def forward(self, pos: int, tokens: list[int], verify: bool = False) -> dict:
        """One pass through the chain. `verify`: a speculative step (the last token and its drafts): the last
        hop answers the token it chooses after every position."""
        kind = "prefill" if len(tokens) > 1 and not verify else "step"
        last = len(self.hops) - 1
        chunk = Chunk(pos, len(tokens), tokens=list(tokens), verify=verify and last == 0)
        t0 = time.perf_counter()
        self._calls = []
        for i in range(len(self.hops)):
            res = await self._hop_call(i, kind, chunk)
            if i < last:
                h = res.get("hidden")
                bad = self._bad_hidden(h, len(tokens))
                if bad:  # checked before it is relayed: a hop can never get the next one blamed
                    raise self._failed(f"hop {i} returned {bad}", self.hops[i].peer.peer_id, True)
                chunk = Chunk(pos, len(tokens), hidden={"dtype": h.dtype, "shape": list(h.shape), "data": bytes(h.data)},
                              verify=verify and i + 1 == last)
        if res.get("token") is None:
            raise self._failed("the last hop returned no token", self.hops[last].peer.peer_id, True)
        self.trace.append({"e2e_ms": (time.perf_counter() - t0) * 1e3, "hop_wall_ms": sum(c[0] for c in self._calls),
                           "hop_cpu_ms": sum(c[1] for c in self._calls), "hops": len(self.hops)})
        return res

    def _bad_hidden(self, h, n: int) -> str | None:
        """What is wrong with a hop's hidden state output for an n-position chunk (None: fine). Every hop of
        one model has the same width; the first one seen sets it."""
        if h is None:
            return "no hidden state"
        if h.dtype not in ("float32", "float16", "bfloat16"):
            return f"a hidden state of dtype {h.dtype}"
        width = self._width or (h.shape[2] if len(h.shape) == 3 else None)
        if len(h.shape) != 3 or tuple(h.shape[:2]) != (1, n) or h.shape[2] != width:
            return f"a hidden state of shape {list(h.shape)}, not [1, {n}, {width}]"
        self._width = width
        return None

    def _truncate(self, pos: int) -> None:
        for hop in self.hops:
            hop.history = cut_history(hop.history, pos)
        self.fed = self.fed[:pos]

    async def tokenizer(self) -> Tokenizer:
        """The pinned model's tokenizer, its card fetched from hop 0 and verified once per process (a forged
        card is that hop's protocol failure: repaired and blamed like any)."""
        if not self.hops:
            await self.start()
        tok = self.net.cards.get(self.model)
        for attempt in (0, 1):
            if tok is not None:
                return tok
            hop = self.hops[0]
            try:
                tok = await self.net.cards.tokenizer(self.model, hop.session, self.deadline(hop, 64))
            except (HopFailed, HopError) as e:
                if attempt == 1:
                    raise self._failed(f"the model card failed: {e}", hop.peer.peer_id, self._verdict(e, hop).blamed) from None
                await self._repair(0, e)
            except UserError as e:  # a card this seeker cannot read (an unsupported tokenizer): nobody's fault
                raise self._failed(str(e), None, False, "unsupported_model") from None
        return tok

    async def tokenize(self, text: str | None = None, messages: list[dict] | None = None) -> list[int]:
        """The prompt's token ids, made here from the verified card (no worker chooses what the model reads):
        `messages` through the chat template, else `text` with the tokenizer's special tokens."""
        tok = await self.tokenizer()
        try:
            if messages is not None:
                return await trio.to_thread.run_sync(tok.chat, messages)
            return await trio.to_thread.run_sync(tok.encode, text or "")
        except UserError as e:
            raise self._failed(str(e), None, False, "bad_prompt") from None

    async def turn(self, tokens: list[int], max_new_tokens: int, on_piece=None, ignore_eos: bool = False,
                   recompute: bool = False) -> TurnResult:
        """Generate after the full conversation `tokens`; only positions not already cached are prefilled.
        `on_piece(text)` gets each token's piece of text ("" if it shows none); if it returns True (exactly)
        the turn stops there (a stop string).

        recompute=True resends the whole prefix every token with no KV reuse (the reference
        implementation's approach; benchmarks only)."""
        if not self.hops:
            await self.start()
        limit = self.granted_length
        self._turn_limit = limit  # a replacement must grant as much (open_replayed)
        if len(tokens) >= limit:
            raise self._failed(f"the prompt's {len(tokens)} tokens do not fit the {limit} positions the chain "
                               f"granted (max_length / worker cache budget)", None, False, "context_length_exceeded")
        max_new_tokens = min(max_new_tokens, limit - len(tokens))
        tok_r = await self.tokenizer()
        await self.checker.plan(self.chain, max_new_tokens)  # this turn's spot checks
        pos = common_prefix(self.fed, tokens)
        if pos == len(tokens):
            pos -= 1  # need at least one position to get logits
        reused = pos
        self._truncate(pos)
        new = tokens[pos:]
        out: list[int] = []
        text: list[str] = []
        steps: list[float] = []
        prefill_ms = 0.0
        eos = stopped = False
        step = 0
        while len(out) < max_new_tokens and not (eos or stopped):
            t0 = time.perf_counter()
            if recompute:
                self._truncate(0)
                new, pos = list(tokens) + out, 0
            drafts: list[int] = []
            self._at = len(out)
            if step > 0 and not recompute:  # speculative decoding (seeker.speculation): drafts from the context
                k = min(self.speculation.want(), max_new_tokens - len(out) - 1, limit - pos - 1, self._max_draft())
                drafts = propose(tokens + out, k) if k > 0 else []
            emitted = await self._decode(pos, new, drafts)
            ms = (time.perf_counter() - t0) * 1e3
            if step == 0:
                prefill_ms = ms
            else:
                steps.extend([ms / len(emitted)] * len(emitted))  # per token: a speculative trip yields several
            step += 1
            pos += len(new) + len(emitted) - 1  # the last token and the drafts that held
            for tok in emitted:
                if tok >= tok_r.vocab_size:  # an id no text can come from
                    raise self._failed(f"the last hop returned token {tok} outside the vocabulary "
                                       f"({tok_r.vocab_size})", self.hops[-1].peer.peer_id, True)
                out.append(tok)
                if tok in tok_r.eos and not ignore_eos:  # the seeker's own reading of the id, never a worker's flag
                    eos = True
                    break
                piece = tok_r.piece(out[-PIECE_CONTEXT - 1:-1], tok)
                text.append(piece)
                if on_piece is not None and on_piece(piece) is True:  # every token ("" if it shows no text)
                    stopped = True
                    break
            new = [out[-1]]
        for hop_peer, witness in await self.checker.end_turn():  # whole turns checked call by call, and matched
            self.view.passed_check(hop_peer)
            self.view.outcome([witness], True)
        return TurnResult(out, "".join(text), prefill_ms, steps, self.repairs, self.chain, self.selection_ms, eos,
                          stopped, len(tokens), reused)

    def _max_draft(self) -> int:
        """Drafts a step may carry: a speculative step's hidden state must fit a step frame."""
        return MAX_DRAFT if not self._width else max(0, min(MAX_DRAFT, STEP_HIDDEN // self._width - 2))

    async def _decode(self, pos: int, new: list[int], drafts: list[int]) -> list[int]:
        """Feed `new` at `pos` (with `drafts` after it: a speculative step) and return the tokens it yields: the
        next one, or the drafts the chain confirmed plus the one after them. Positions of rejected drafts are
        dropped from every hop's cache at its next call, which starts before them."""
        if drafts:
            res = await self.forward(pos, new + drafts, verify=True)
            chosen = res.get("tokens")
            if isinstance(chosen, list) and len(chosen) == len(new) + len(drafts):
                chosen = chosen[len(new) - 1:]  # the choices after the last new token and after each draft
                m = accepted(drafts, chosen)
                self.speculation.observe(len(drafts), m)
                # what the chain keeps: the last token and the confirmed drafts. Histories keep the whole step: a
                # replacement or witness replayed it computes exactly what the hop did, and every session drops
                # the rejected positions when its next call starts there
                self.fed = (self.fed + new + drafts)[:pos + len(new) + m]
                return drafts[:m] + [chosen[m]]
            # a last hop that cannot verify (a release before wire version 2): this step again, plainly
            log.info("the last hop %s did not verify a speculative step; speculation off for this generation",
                     self.hops[-1].peer.peer_id[-8:])
            self.speculation.off()
        res = await self.forward(pos, new)
        self.fed.extend(new)
        if res.get("token") is None:
            raise self._failed("the last hop returned no token", self.hops[-1].peer.peer_id, True)
        return [res["token"]]

    def new_request(self) -> None:
        """A kept generation serves another request: what the last one's trust reports covered starts over
        (the chain, its sessions and what they cached stay)."""
        self.accounts.new_request()
        self.checker.counters = dict.fromkeys(self.checker.counters, 0)
        self.speculation.counters = dict.fromkeys(self.speculation.counters, 0)  # (what it learned stays)
        self.trace = []
        for h in self.hops:
            h.step_ms.clear()
            h.call_ms.clear()
            h.compute_ms.clear()

    def trust_outcome(self, success: bool, culprit: str | None) -> None:
        """What this request taught the seeker's own view (the ledger's reports come back through anchors)."""
        for chain, ok, who in self.accounts.outcomes(self.chain, success, culprit):
            self.view.outcome(chain, ok, who)

    def report_bodies(self, network: str, success: bool, culprit: str | None, tokens: int) -> list[dict]:
        """The trust reports this request owes the anchors (pure; seeker/repairs.py decides which).
        Latencies are what this seeker measured, per completed hop."""
        base = {"network": network, "request_id": self.sid, "model": self.model or "", "mode": self.mode,
                "tokens": tokens}
        lats: list[float] = []
        for h in self.hops:
            ms = h.latency_ms()
            if ms is None or ms <= 0:
                break
            lats.append(ms)
        return self.accounts.reports(base, self.chain, lats, success, culprit)

    def provenance(self) -> dict:
        """Who answered and how it was checked (the API's and the client's `gtracd` field): the chain as it
        finished (peer, host, layers, trust when chosen), the spot checks of this request, every repair, and
        the trust terms it ran under."""
        c = self.checker.counters
        return {
            "model": self.model,
            "chain": [{"peer": h.peer.peer_id, "host": host_of(h.peer.addr), "layers": [h.peer.start, h.peer.end],
                       "name": h.peer.name, "trust": round(self.selected_trust.get(h.peer.peer_id,
                                                                                   self.view.trust(h.peer.peer_id)), 4)}
                      for h in self.hops],
            # one decode step on one hop, both ways, frames with headers (over the chain as it finished)
            "bytes_per_step_per_hop": round(sum(getattr(h.session, "step_bytes", 0) for h in self.hops)
                                            / max(1, sum(getattr(h.session, "steps", 0) for h in self.hops))),
            "spot_checks": {"rate": self.checker.rate, "hops": c["hops"], "calls": c["calls"],
                            "mismatches": c["mismatches"], "inconclusive": c["inconclusive"],
                            "no_replica": c["no_replica"], "aborted": c["aborted"],
                            "convicted": [w["chain"][0] for w in self.accounts.wrong_outputs]},
            "repairs": [{"hop": r["hop"], "failed": r["failed"], "replacement": r["replacement"],
                         "verdict": r["verdict"], "blamed": r["blamed"], "error": r["error"][:200]}
                        for r in self.repair_log],
            "trust_floor": self.params.trust_floor,
            "speculation": {"setting": self.speculation.setting, **{k: self.speculation.counters[k] for k in
                                                                    ("trips", "drafted", "accepted")}},
            "avoided": {"peers": sorted(self.accounts.failed), "hosts": sorted(self.exclude_hosts)},
        }

    def hop_latency_ms(self) -> list[float]:
        return [sum(h.step_ms) / len(h.step_ms) if h.step_ms else math.nan for h in self.hops]

    async def _end(self, how: str) -> None:
        with trio.CancelScope(shield=True):
            await self.checker.close()
            async with trio.open_nursery() as n:
                for h in self.hops:
                    n.start_soon(getattr(h.session, how), self.sid)

    async def cancel(self) -> None:
        """Ctrl-C, errors: cancel the session on every hop (bounded, shielded)."""
        await self._end("cancel")

    async def aclose(self) -> None:
        await self._end("close")
