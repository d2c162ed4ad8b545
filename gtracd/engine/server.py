"""The worker's compute side: a Shard, its tokenizer (first/last hops), and per-session KV caches.

Synchronous and I/O-free. One owner for the mutable state: the session table and the sessions dict are
changed only by the caller's event loop (open, close, prepare); `compute` runs on the compute thread and
touches nothing but the one session's KV cache it was handed (that session is marked busy meanwhile, so no
eviction picks it). Heartbeats and status read the table on the event loop too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..protocols.sessions import Refused, SessionTable
from .batching import forward_steps
from .models import fingerprint
from .sampling import Detokenizer, sample
from .shard import Shard, crop
from .tensors import from_wire, to_wire

HIDDEN_DTYPES = ("float32", "float16", "bfloat16")


@dataclass
class Job:
    """One prefill / step, prepared on the event loop, computed on the compute thread."""

    sess: Session
    pos: int
    n: int
    inp: dict
    text_ids: list[int] | None
    sample: bool
    ctx: list[int]


@dataclass
class Session:
    sid: bytes
    cache: object
    sampling: dict = field(default_factory=dict)


class ShardServer:
    def __init__(self, folder: Path, start: int, end: int, max_sessions: int = 64, cache_tokens: int = 65536,
                 ttl_s: float = 600.0, clock=time.monotonic):
        self.folder = Path(folder)
        self.shard = Shard(folder, start, end)
        self.fingerprint = fingerprint(folder)
        self.tokenizer = None
        if (self.shard.first or self.shard.last) and (
                (self.folder / "tokenizer.json").exists() or (self.folder / "tokenizer_config.json").exists()):
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.detok = Detokenizer(self.tokenizer) if self.tokenizer is not None else None
        self.table = SessionTable(max_sessions, cache_tokens, ttl_s)
        self.sessions: dict[bytes, Session] = {}
        self.clock = clock
        cfg = self.shard.config
        self.vocab = cfg.vocab_size
        eos = getattr(cfg, "eos_token_id", None)
        try:
            from transformers import GenerationConfig

            gen_eos = GenerationConfig.from_pretrained(str(folder)).eos_token_id
            eos = gen_eos if gen_eos is not None else eos
        except (OSError, ValueError):
            pass
        self.eos = set(eos if isinstance(eos, list) else ([eos] if eos is not None else []))
        self.steps = 0
        self.batches = 0  # forward passes that served more than one step, and the steps they served
        self.batched_steps = 0

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
        self.sessions[sid] = Session(sid, self.shard.new_cache(), body.get("sampling") or {})
        return {"session": sid, "cached": 0, "max_length": self.table.get(sid).max_length}

    def tokenize(self, body: dict) -> dict:
        if not self.shard.first:
            raise Refused("wrong_layers", "only hop 0 (the worker hosting layer 0) tokenizes")
        if self.tokenizer is None:
            raise Refused("bad_frame", "this model folder has no tokenizer: send token ids")
        if body.get("messages") is not None:
            ids = self.tokenizer.apply_chat_template(
                body["messages"], add_generation_prompt=body.get("add_generation_prompt", True), tokenize=True)
            if not isinstance(ids, list):
                ids = ids["input_ids"]
        elif body.get("text") is not None:
            ids = self.tokenizer(body["text"], add_special_tokens=True)["input_ids"]
        else:
            raise Refused("bad_frame", "tokenize needs text or messages")
        return {"tokens": [int(t) for t in ids], "eos": sorted(self.eos)}

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
        text_ids = None
        if self.shard.first:
            toks = body.get("tokens")
            if not toks and body.get("text") is not None:  # hop 0 tokenizes; the ids go back to the seeker
                toks = text_ids = self.tokenize({"text": body["text"]})["tokens"]
            if not toks:
                raise Refused("bad_frame", "hop 0 needs tokens or text")
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
        return Job(sess, pos, n, inp, text_ids, bool(body.get("sample", True)), body.get("ctx") or [])

    def compute(self, job: Job) -> dict:
        """prefill / step, the compute thread's half: only the job's own session cache is touched."""
        sess, pos = job.sess, job.pos
        sess.cache = crop(sess.cache, pos)
        t0 = time.perf_counter()
        out = self.shard.forward(sess.cache, pos, **job.inp)
        self.steps += 1  # written only by the holder of the compute slot
        return self._result(job, out.hidden, out.logits, t0)

    @staticmethod
    def batchable(job: Job) -> bool:
        """A decode step (one position, no text to tokenize): it may share a forward pass with others."""
        return job.n == 1 and job.text_ids is None

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
        return [self._result(j, hidden[i] if hidden is not None else None,
                             logits[i] if logits is not None else None, t0) for i, j in enumerate(jobs)]

    def _result(self, job: Job, hidden, logits, t0: float) -> dict:
        sess, pos, n = job.sess, job.pos, job.n
        res = {"session": sess.sid, "cached": pos + n}
        if job.text_ids is not None:
            res["tokens"] = job.text_ids
        if hidden is not None:
            res["hidden"] = to_wire(hidden)
        elif job.sample:
            sp = sess.sampling
            tok = sample(logits, pos + n, sp.get("temperature", 0.0), sp.get("top_k", 0), sp.get("top_p", 1.0),
                         sp.get("seed", 0))
            res["token"] = tok
            res["eos"] = tok in self.eos
            if self.detok is not None:
                res["piece"] = self.detok.piece(job.ctx, tok)[:1024]
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

