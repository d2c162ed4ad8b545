"""The worker's compute side: a Shard, its model card (handed to seekers, who read text with it), and
per-session KV caches. Workers never tokenize or detokenize: token ids in, token ids (or hidden states) out.

Synchronous and I/O-free. One owner for the mutable state: the session table and the sessions dict are
changed only by the caller's event loop (open, close, prepare); `compute` runs on the compute thread and
touches nothing but the one session's KV cache it was handed (that session is marked busy meanwhile, so no
eviction picks it). Heartbeats and status read the table on the event loop too.
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..catalog.fingerprint import card_files, card_fingerprint, scheme_weights, weights_digest
from ..ops.histogram import BATCH_BUCKETS, Histogram
from ..protocols.sessions import Refused, SessionTable
from ..wire.kinds import MAX_VERIFY, WIRE_DTYPES
from .batching import forward_steps
from .sampling import sample
from .shard import Shard, crop
from .tensors import TORCH, from_wire, to_wire

HIDDEN_DTYPES = WIRE_DTYPES
CARD_PART = 1 << 20  # bytes of a card file per reply
PREFILL_CHUNK = 256  # positions a prefill computes per turn of the compute slot (others' steps go between)


FLOAT16_MAX = 65504.0


def as_wire_dtype(hidden: torch.Tensor, dtype: str) -> torch.Tensor:
    """A hidden state in the chain's wire dtype; float32 instead where float16 would overflow to inf (which the
    next hop would rightly refuse: an honest worker must not be blamed for the seeker's choice of dtype)."""
    if dtype == "float32" or (dtype == "float16" and float(hidden.abs().max()) > FLOAT16_MAX):
        return hidden
    return hidden.to(TORCH[dtype])


def trim_heap() -> None:
    """Return freed heap pages to the OS (glibc's malloc_trim; a no-op elsewhere). A load in a worker thread
    frees its transient float32 copies into that thread's arena, which glibc would otherwise keep."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


@dataclass
class Job:
    """One prefill / step, prepared on the event loop, computed on the compute thread."""

    sess: Session
    pos: int
    n: int
    inp: dict
    sample: bool
    verify: bool = False  # last hop of a speculative step: the token after every position


@dataclass
class Session:
    sid: bytes
    cache: object
    sampling: dict = field(default_factory=dict)
    wire_dtype: str = "float32"  # what its hidden states travel as (the seeker's choice for the chain)


class ShardServer:
    def __init__(self, folder: Path, start: int, end: int, max_sessions: int = 64, cache_tokens: int = 65536,
                 ttl_s: float = 600.0, clock=time.monotonic, max_length: int | None = None, scheme: str = "float32"):
        self.folder = Path(folder)
        self.scheme = scheme
        self.shard = Shard(folder, start, end, scheme=scheme)
        self.weights = scheme_weights(weights_digest(folder), scheme)  # what it serves: the scheme is part of it
        self.card = card_files(folder)
        self.fingerprint = card_fingerprint(self.weights, self.card)
        self.table = SessionTable(max_sessions, cache_tokens, ttl_s, max_length=max_length)
        self.sessions: dict[bytes, Session] = {}
        self.clock = clock
        cfg = self.shard.config
        self.vocab = cfg.vocab_size
        self.steps = 0
        self.batches = 0  # forward passes that served more than one step, and the steps they served
        self.batched_steps = 0
        self.batch_sizes = Histogram(BATCH_BUCKETS)  # decode steps per forward pass (1: a lone step)
        if scheme != "float32":
            trim_heap()  # quantizing freed float32 copies: give the pages back (glibc keeps them otherwise)

    @property
    def start(self) -> int:
        return self.shard.start

    @property
    def end(self) -> int:
        return self.shard.end

    def _drop(self, sids) -> None:
        for sid in sids:
            self.sessions.pop(sid, None)

    # ---------------------------------------------------------------- frames
    def open(self, body: dict, owner: str = "") -> dict:
        """`owner`: the remote peer that opens it (per-peer caps and fair share, see protocols/sessions.py)."""
        if body["model"] != self.fingerprint:
            raise Refused("wrong_model", f"this worker serves model {self.fingerprint}, not {body['model']}")
        if (body["start"], body["end"]) != (self.start, self.end):
            raise Refused("wrong_layers", f"this worker hosts layers {self.start}:{self.end}, not "
                                          f"{body['start']}:{body['end']}")
        sid = body["session"]
        self._drop(self.table.open(sid, body["max_length"], self.clock(), owner))
        self.sessions[sid] = Session(sid, self.shard.new_cache(), body.get("sampling") or {},
                                     body.get("wire_dtype") or "float32")
        return {"session": sid, "cached": 0, "max_length": self.table.get(sid).max_length}

    def card_index(self) -> dict:
        return {"weights": self.weights, "files": {n: len(b) for n, b in self.card.items()}}

    def card_part(self, body: dict) -> dict:
        data = self.card.get(body["name"])
        if data is None:
            raise Refused("bad_frame", f"no card file {body['name']!r} here")
        off = body["offset"]
        if off > len(data):
            raise Refused("bad_frame", f"offset {off} is beyond the {len(data)} bytes of {body['name']}")
        return {"name": body["name"], "offset": off, "data": data[off:off + CARD_PART]}

    def extend(self, body: dict) -> dict:
        """prefill / step in one call (in-process use and tests): prepare, then compute."""
        return self.compute(self.prepare(body))

    def prepare(self, body: dict) -> Job:
        """prefill / step, the event loop's half: validate, build the inputs, reserve the cache positions
        (evicting idle sessions if the budget needs it)."""
        sid = body["session"]
        sess = self.sessions.get(sid)
        if sess is None or sid not in self.table:
            self.sessions.pop(sid, None)
            raise Refused("unknown_session", "unknown or evicted session (open it again and replay)")
        pos = body["pos"]
        cached = sess.cache.get_seq_length()
        if pos > cached:
            raise Refused("bad_frame", f"pos {pos} is beyond the {cached} cached positions")
        if self.shard.first:
            toks = body.get("tokens")
            if not toks:
                raise Refused("bad_frame", "hop 0 needs tokens")
            if max(toks) >= self.vocab:
                raise Refused("bad_frame", f"token id {max(toks)} outside the vocabulary ({self.vocab})")
            n = len(toks)
            inp = {"input_ids": torch.tensor(toks, dtype=torch.long)}
        else:
            w = body.get("hidden")
            if w is None:
                raise Refused("bad_frame", f"hop {self.start} needs a hidden state")
            hs = self.shard.config.hidden_size
            if w.dtype not in HIDDEN_DTYPES:
                raise Refused("bad_tensor", f"hidden dtype {w.dtype} not accepted ({', '.join(HIDDEN_DTYPES)})")
            if len(w.shape) != 3 or w.shape[0] != 1 or w.shape[1] < 1 or w.shape[2] != hs:
                raise Refused("bad_tensor", f"hidden shape {list(w.shape)} is not [1, n, {hs}]")
            n = w.shape[1]
            inp = {"hidden": from_wire(w)}
            if not bool(torch.isfinite(inp["hidden"]).all()):  # the previous hop's fault (seeker.blame)
                raise Refused("bad_tensor", "non-finite values in the hidden state")
        self._drop(self.table.reserve(sid, pos + n, self.clock()))
        verify = bool(body.get("verify")) and self.shard.last and n <= MAX_VERIFY
        return Job(sess, pos, n, inp, bool(body.get("sample", True)), verify)

    def compute(self, job: Job) -> dict:
        """prefill / step, the compute thread's half: only the job's own session cache is touched."""
        sess, pos = job.sess, job.pos
        sess.cache = crop(sess.cache, pos)
        t0 = time.perf_counter()
        out = self.shard.forward(sess.cache, pos, **job.inp, every=job.verify and job.sample)
        self.steps += 1  # written only by the holder of the compute slot
        if job.n == 1:  # a decode step computed alone
            self.batch_sizes.observe(1)
        return self._result(job, out.hidden, out.logits, t0)

    @staticmethod
    def split(job: Job, size: int = PREFILL_CHUNK) -> list[Job]:
        """A prefill as consecutive parts of at most `size` positions (only the last one samples; a speculative
        step is never split: at most MAX_VERIFY positions)."""
        if job.n <= size or job.verify:
            return [job]
        parts = []
        for a in range(0, job.n, size):
            b = min(job.n, a + size)
            inp = ({"input_ids": job.inp["input_ids"][a:b]} if "input_ids" in job.inp
                   else {"hidden": job.inp["hidden"][:, a:b]})
            parts.append(Job(job.sess, job.pos + a, b - a, inp, job.sample and b == job.n))
        return parts

    def compute_part(self, part: Job) -> tuple:
        """One part of a split prefill, on the compute thread: (hidden, logits, ms)."""
        part.sess.cache = crop(part.sess.cache, part.pos)
        t0 = time.perf_counter()
        out = self.shard.forward(part.sess.cache, part.pos, **part.inp)
        self.steps += 1
        return out.hidden, out.logits, (time.perf_counter() - t0) * 1e3

    def assemble(self, job: Job, parts: list[tuple]) -> dict:
        """The result of a split prefill, as `compute` would answer it (compute time: the parts' sum)."""
        hidden = torch.cat([h for h, _, _ in parts], dim=1) if parts[-1][0] is not None else None
        ms = sum(m for _, _, m in parts)
        return self._result(job, hidden, parts[-1][1], time.perf_counter() - ms / 1e3)

    @staticmethod
    def batchable(job: Job) -> bool:
        """A decode step (one position): it may share a forward pass with others."""
        return job.n == 1 and not job.verify

    def compute_batch(self, jobs: list[Job]) -> list[dict]:
        """Decode steps of different sessions in one forward pass (engine/batching.py), on the compute thread:
        only the jobs' own session caches are touched. Each result is what `compute` would answer; the
        compute time reported is the batch's."""
        if len(jobs) == 1:
            return [self.compute(jobs[0])]
        for job in jobs:
            job.sess.cache = crop(job.sess.cache, job.pos)
        t0 = time.perf_counter()
        caches, positions = [j.sess.cache for j in jobs], [j.pos for j in jobs]
        if self.shard.first:
            hidden, logits = forward_steps(self.shard, caches, positions,
                                           input_ids=[int(j.inp["input_ids"][0]) for j in jobs])
        else:
            hidden, logits = forward_steps(self.shard, caches, positions, hidden=[j.inp["hidden"] for j in jobs])
        self.steps += len(jobs)
        self.batches += 1
        self.batched_steps += len(jobs)
        self.batch_sizes.observe(len(jobs))
        return [self._result(j, hidden[i] if hidden is not None else None,
                             logits[i] if logits is not None else None, t0) for i, j in enumerate(jobs)]

    def _result(self, job: Job, hidden, logits, t0: float) -> dict:
        sess, pos, n = job.sess, job.pos, job.n
        res = {"session": sess.sid, "cached": pos + n}
        if hidden is not None:
            res["hidden"] = to_wire(as_wire_dtype(hidden, sess.wire_dtype))
        elif job.sample:
            sp = sess.sampling
            terms = (sp.get("temperature", 0.0), sp.get("top_k", 0), sp.get("top_p", 1.0), sp.get("seed", 0))
            if logits.dim() == 2:  # a speculative step: each position's token, chosen as a plain step there would
                res["tokens"] = [sample(logits[j], pos + j + 1, *terms) for j in range(n)]
                res["token"] = res["tokens"][-1]
            else:
                res["token"] = sample(logits, pos + n, *terms)
        res["compute_ms"] = (time.perf_counter() - t0) * 1e3
        return res

    def close(self, sid: bytes) -> None:
        self.sessions.pop(sid, None)
        self.table.close(sid)

    def info(self, peer_id: str, name: str, version: str) -> dict:
        return {"peer_id": peer_id, "name": name, "model": self.fingerprint, "family": self.shard.family,
                "start": self.start, "end": self.end, "total_layers": self.shard.total,
                "hidden_size": self.shard.config.hidden_size, "free_tokens": self.table.free_tokens,
                "sessions": len(self.table), "version": version}

