"""Checkpoints of the trust ledger (pure): old reports folded into their derived state, so replicas stay
bounded while every replica still derives bit-identical trust.

A checkpoint at `boundary` B stands for the set of reports with ts < B: it holds that set's digest and the
fold state right after applying exactly those reports in the total order (trust, latency EWMAs, reporter
budgets of windows that can still be touched, reporter standing, the epoch) and, per reporter, the highest
seq folded. Reports sort by ts first, so folding the checkpoint's state and then the reports with ts >= B
gives the same floats, bit for bit, as folding every report from scratch (hypothesis-tested in
tests/test_checkpoint.py) for reports of honest signers, whose seqs rise with their timestamps. A report at
or below its reporter's folded seq with a later ts (a twin of a folded report, or a signer that broke that
rule) is refused by every replica alike, so replicas still agree with each other.

A checkpoint is *certified* once a quorum of the keyring's anchors signed the same (boundary, digest,
state hash, count); only then may a replica prune the reports below its boundary (Ledger.adopt). The ledger state
becomes (checkpoint, reports at or above its boundary) and stays a CRDT: merge takes the later checkpoint
and the union of reports at or above it (see Ledger.merge). Reports below an adopted checkpoint are refused.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass

from ..errors import DecodeError
from ..wire.codec import packb, unpackb
from ..wire.envelope import decode_envelope
from .rules import Fold, RuleParams

STATE_MAX = 256 << 20  # bytes of a checkpoint state we decode
STATE_VERSION = 3  # 2: a seq watermark per reporter (1 listed every folded seq: it grew with all history);
# 3: latency budgets and the window of each reporter's last corroboration (a version 2 state reads as none)
READABLE_VERSIONS = (2, 3)


def set_digest(reports) -> bytes:
    """sha256 over the reports' keys and content digests, in key order: equal sets <=> equal digests."""
    h = hashlib.sha256()
    for r in sorted(reports, key=lambda r: r.key):
        h.update(r.reporter + r.seq.to_bytes(8, "big") + r.digest)
    return h.digest()


def fold_state(f: Fold, boundary: float, upto: dict[bytes, int]) -> bytes:
    """The fold's state as canonical bytes, with each reporter's highest folded seq. Budgets of windows that
    ended before the boundary are left out: no report at or after it can touch them."""
    first_window = int(boundary // f.p.window_s)
    return packb({
        "v": STATE_VERSION, "boundary": boundary, "upto": sorted(upto.items()), "applied": f.applied,
        "epoch": f.epoch,
        "last": None if f.last is None else [f.last[0], f.last[1], f.last[2]],
        "any_established": f.any_established,
        "trust": sorted(f.trust.items()), "latency": sorted(f.latency.items()),
        "spent": sorted([rep, peer, w, v] for (rep, peer, w), v in f.spent.items() if w >= first_window),
        "newcomer_spent": sorted(f.newcomer_spent.items()),
        "lat_spent": sorted([rep, peer, w, v] for (rep, peer, w), v in f.lat_spent.items() if w >= first_window),
        "newcomer_lat_spent": sorted(f.newcomer_lat_spent.items()), "stood": sorted(f.stood.items()),
        "first": sorted(f.first.items()), "corroborated": sorted(f.corroborated.items()),
        "recent": sorted([peer, sorted([rep, ts, ok] for rep, (ts, ok) in seen.items())]
                         for peer, seen in f.recent.items()),
    })


def _f(x) -> float:
    if type(x) is float and -math.inf < x < math.inf:  # the common case, fast (NaN fails the comparison)
        return x
    if type(x) is int:
        return float(x)
    raise DecodeError("checkpoint state: a number is malformed", "state")


def _recent(seen) -> dict[bytes, tuple[float, bool]]:
    """One worker's recent reporters, in the order heard (ts order), as the fold keeps them."""
    entries = [(_f(ts), bytes(rep), bool(ok)) for rep, ts, ok in seen]
    entries.sort()
    return {rep: (ts, ok) for ts, rep, ok in entries}


def fold_from_state(data: bytes, p: RuleParams) -> Fold:
    """A Fold to continue from (DecodeError on anything malformed: the state is checked against its certified
    hash before it gets here, so this guards our own bugs and disk corruption)."""
    return decode_state(data, p)[0]


def decode_state(data: bytes, p: RuleParams) -> tuple[Fold, dict[bytes, int]]:
    """The fold and the per-reporter seq watermarks a state holds (DecodeError on anything malformed)."""
    d = unpackb(data, STATE_MAX)
    try:
        if not isinstance(d, dict) or d.get("v") not in READABLE_VERSIONS:
            raise DecodeError(f"checkpoint state: version {d.get('v') if isinstance(d, dict) else None!r} is not "
                              f"one of {READABLE_VERSIONS}", "state.v")
        f = Fold(p)
        f.applied, f.epoch, f.any_established = int(d["applied"]), int(d["epoch"]), bool(d["any_established"])
        f.last = None if d["last"] is None else (_f(d["last"][0]), bytes(d["last"][1]), int(d["last"][2]))
        f.trust = {str(k): _f(v) for k, v in d["trust"]}
        f.latency = {str(k): _f(v) for k, v in d["latency"]}
        f.spent = {(bytes(rep), str(peer), int(w)): _f(v) for rep, peer, w, v in d["spent"]}
        f.newcomer_spent = {str(k): _f(v) for k, v in d["newcomer_spent"]}
        f.lat_spent = {(bytes(rep), str(peer), int(w)): _f(v) for rep, peer, w, v in d.get("lat_spent", [])}
        f.newcomer_lat_spent = {str(k): _f(v) for k, v in d.get("newcomer_lat_spent", [])}
        f.stood = {bytes(k): int(v) for k, v in d.get("stood", [])}
        f.first = {bytes(k): _f(v) for k, v in d["first"]}
        f.corroborated = {bytes(k): int(v) for k, v in d["corroborated"]}
        f.recent = {str(peer): _recent(seen) for peer, seen in d["recent"]}
        upto = {bytes(k): int(v) for k, v in d["upto"]}
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise DecodeError(f"checkpoint state: malformed ({type(e).__name__})", "state") from None
    return f, upto


@dataclass(frozen=True)
class Checkpoint:
    boundary: float  # reports with ts < boundary are folded into `state`
    digest: bytes  # set_digest of the slice folded, chained with the previous checkpoint's digest
    count: int  # how many
    state: bytes  # fold_state at the boundary

    @property
    def state_hash(self) -> bytes:
        return hashlib.sha256(self.state).digest()

    @functools.cached_property
    def upto(self) -> dict[bytes, int]:
        """Per reporter, the highest seq folded (into this checkpoint or an earlier one of its chain). Set
        without decoding by make_checkpoint and check(); otherwise check() decodes the state here (DecodeError)."""
        self.check()
        return self.__dict__["upto"]

    def covers(self, r) -> bool:
        """Is this report decided by the checkpoint: below its boundary, or at or below its reporter's folded
        seq watermark? An honest signer's seqs and timestamps rise together (wire.envelope.Signer), so every
        report of it at or below the watermark has ts < boundary; what the watermark adds is refusing twins
        of folded reports with a later ts (folded twice) and keeping the state one number per reporter,
        whatever the history's length."""
        if r.ts < self.boundary:
            return True
        w = self.upto.get(r.reporter)
        return w is not None and r.seq <= w

    @property
    def id(self) -> tuple[float, bytes, bytes, int]:
        """What anchors sign: (boundary, digest, state hash, count)."""
        return (self.boundary, self.digest, self.state_hash, self.count)

    def check(self) -> None:
        """Decode the whole state now (DecodeError if anything is malformed) and keep what it gave: the seq
        watermarks (`upto`), and the fold for the first `fold` call. A certified state arriving by sync (or
        loaded from disk) is then decoded once on its way to the replica's derivation, not three times
        (~0.4 s each for a month of history)."""
        f, upto = decode_state(self.state, RuleParams())
        self.__dict__["upto"] = upto  # the cached_property's slot
        self.__dict__["_checked_fold"] = f

    def fold(self, p: RuleParams) -> Fold:
        """The fold at the boundary, the caller's own to apply reports to."""
        f = self.__dict__.pop("_checked_fold", None)  # handed over once (it is the caller's from here on)
        if f is None:
            return fold_from_state(self.state, p)
        f.p = p  # decoding does not depend on the rule parameters; applying does
        return f


def later(a: Checkpoint | None, b: Checkpoint | None) -> Checkpoint | None:
    """The checkpoint a merge keeps: the later boundary; at one boundary (two quorums cannot honestly
    disagree) the smaller id, so every replica picks the same one."""
    if a is None or b is None:
        return a or b
    return min(a, b, key=lambda c: (-c.boundary, c.digest, c.state_hash))


def boundary_for(now: float, period_s: float, lag_s: float) -> float:
    """The checkpoint boundary due at `now`: the last multiple of period_s at least lag_s in the past (lag_s
    covers the slander window and how old a report may be when admitted, so no honest report can still
    arrive below it)."""
    return math.floor((now - lag_s) / period_s) * period_s


def signed_body(cp: Checkpoint, network: str) -> dict:
    """What an anchor signs (a `ledger_checkpoint` envelope body)."""
    return {"network": network, "boundary": cp.boundary, "digest": cp.digest, "state_hash": cp.state_hash,
            "count": cp.count}


def id_of(body: dict) -> tuple[float, bytes, bytes, int]:
    return (float(body["boundary"]), bytes(body["digest"]), bytes(body["state_hash"]), int(body["count"]))


def verify_proof(cid: tuple, proof: list[bytes], keyring, network: str) -> str | None:
    """None if a quorum of distinct keyring anchors signed this checkpoint id (Checkpoint.id: boundary,
    digest, state hash, count) for this network; else why not."""

    signers = set()
    for raw in proof:
        try:
            env = decode_envelope(bytes(raw))
        except DecodeError:
            return "a signature does not decode"
        if env.kind != "ledger_checkpoint" or not env.signature_ok():
            return "a signature does not verify"
        if env.body["network"] != network or id_of(env.body) != cid:
            return "a signature names another checkpoint"
        if env.sender_id in keyring:
            signers.add(env.sender_id)
    need = quorum(len(keyring))
    return None if len(signers) >= need else f"{len(signers)} keyring anchors signed it, {need} needed"


def quorum(keyring_size: int) -> int:
    """A majority of the keyring's anchors: two quorums always share an honest-or-not anchor, so with fewer
    than half of them lying, two different states at one boundary cannot both be certified."""
    return keyring_size // 2 + 1


class Certs:
    """Keyring anchors' signatures on checkpoint ids, collected from gossip (pure). An id is certified once a
    quorum of distinct keyring anchors signed it. Bounded: per signer only its latest KEEP boundaries."""

    KEEP = 4

    def __init__(self, keyring, quorum_size: int | None = None):
        self.keyring = frozenset(keyring)
        self.quorum = quorum_size or quorum(len(self.keyring))
        self.sigs: dict[tuple, dict[str, bytes]] = {}  # id -> signer -> the signed envelope (a proof)
        self._fixed = quorum_size

    def rekey(self, keyring) -> None:
        """A new keyring: signatures of keys no longer in it are forgotten, the quorum follows its size."""
        self.keyring = frozenset(keyring)
        self.quorum = self._fixed or quorum(len(self.keyring))
        for c in list(self.sigs):
            self.sigs[c] = {k: v for k, v in self.sigs[c].items() if k in self.keyring}
            if not self.sigs[c]:
                del self.sigs[c]

    def add(self, signer: str, cid: tuple, raw: bytes) -> bool:
        """Record one signature; True if it made `cid` certified just now."""
        if signer not in self.keyring:
            return False
        was = self.certified(cid)
        self.sigs.setdefault(cid, {})[signer] = raw
        mine = sorted((c for c, s in self.sigs.items() if signer in s), key=lambda c: c[0])
        for c in mine[:-self.KEEP]:
            del self.sigs[c][signer]
            if not self.sigs[c]:
                del self.sigs[c]
        return not was and self.certified(cid)

    def certified(self, cid: tuple) -> bool:
        return len(self.sigs.get(cid, ())) >= self.quorum

    def proof(self, cid: tuple) -> list[bytes]:
        return list(self.sigs.get(cid, {}).values())

    def forget_below(self, boundary: float) -> None:
        for c in [c for c in self.sigs if c[0] < boundary]:
            del self.sigs[c]

    def latest_certified(self) -> tuple | None:
        ok = [c for c in self.sigs if self.certified(c)]
        return max(ok, key=lambda c: c[0]) if ok else None
