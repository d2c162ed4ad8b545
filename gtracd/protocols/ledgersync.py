"""Ledger anti-entropy as a pure state machine (the h11 model): no I/O. A driver feeds each received frame
(kind, body) to `receive` and sends the frames in the returned Step, verifies and merges the raw reports it
carries in `ingest`, and stops when `done`. net/ledgersync.py drives the initiator (a seeker pulling, an
anchor syncing), anchor/main.py the responder.

    initiator                                  responder
    sync_digest {heads page, last,       ->    (collects heads)
                 checkpoint}
                                         <-    sync_checkpoint {state chunk, proof, last} ...  only if the
                                               responder adopted a later checkpoint: the asker verifies the
                                               quorum's signatures and adopts it (a fresh replica bootstraps so)
                                         <-    sync_diff {runs page, last} ...   responder's seqs, as runs,
                                                                                for reporters whose heads differ
    sync_want {runs page, last} ...      ->    (collects)
                                         <-    reports {reports page, more} ... (the wanted reports)
    (an anchor initiator then pushes `give`, what the responder lacks, with `submit`)

Seqs travel as runs [a, b) (a reporter's seqs are mostly consecutive), and every frame is a bounded page:
a reporter with any number of reports, and any number of reporters, fits the schema caps. A session asks
for at most `want_cap` reports; the rest comes next round. Duplicate pages are harmless (collections are
sets/dicts); a frame out of place raises ProtocolError (the driver sends `error` and closes); a lost frame
stalls the session until the driver's deadline, and the next round starts over — nothing half-applied,
because only verified reports are ever merged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import DecodeError
from ..ledger.checkpoint import Checkpoint, id_of, verify_proof
from ..ledger.crdt import Ledger
from ..ledger.report import Report
from ..ledger.report import order as _order
from ..ledger.report import unhex as _unhex

HEADS_PAGE = 2048  # reporters per sync_digest frame
RUNS_PAGE = 4096  # runs per sync_diff / sync_want frame (in total over its reporters)
REPORTS_PAGE = 200  # reports per `reports` frame (each <= 8 KiB signed; the frame cap is 2 MiB)
MAX_WANT = 20_000  # reports asked per session
MAX_REPORTERS = 1 << 20  # reporters one session may name
STATE_CHUNK = 1 << 20  # bytes of checkpoint state per sync_checkpoint frame
MAX_RUNS = 1 << 20  # runs one diff may carry in all
STATE_MAX = 256 << 20  # a checkpoint state we take over sync
U63 = (1 << 63) - 1


class ProtocolError(Exception):
    pass


@dataclass
class Step:
    send: list[tuple[str, dict]] = field(default_factory=list)
    ingest: list[bytes] = field(default_factory=list)  # raw signed reports: verify, then merge
    adopt: tuple | None = None  # (Checkpoint, proof): certified (verified here), for the driver to adopt
    done: bool = False


def to_runs(seqs) -> list[list[int]]:
    """Sorted seqs -> maximal runs [a, b)."""
    out: list[list[int]] = []
    for s in seqs:
        if out and out[-1][1] == s:
            out[-1][1] = s + 1
        else:
            out.append([s, s + 1])
    return out


def runs_count(runs) -> int:
    return sum(b - a for a, b in runs)


def check_runs(runs) -> list[tuple[int, int]]:
    """Well-formed runs: pairs 0 <= a < b <= 2^63-1, sorted, disjoint (adjacent runs are fine)."""
    out, prev = [], -1
    for r in runs:
        if not isinstance(r, (list, tuple)) or len(r) != 2:
            raise ProtocolError("a run is a pair [start, end)")
        a, b = r
        if not (isinstance(a, int) and isinstance(b, int)) or isinstance(a, bool) or isinstance(b, bool):
            raise ProtocolError("run bounds must be integers")
        if not (0 <= a < b <= U63) or a < prev:
            raise ProtocolError(f"bad run [{a}, {b}) (runs must be sorted, disjoint, non-empty)")
        prev = b
        out.append((a, b))
    return out


def _pages(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)] or [[]]


def _runs_pages(runs: dict[str, list[list[int]]]) -> list[dict[str, list[list[int]]]]:
    """Split {reporter: runs} into pages of at most RUNS_PAGE runs (a reporter may span pages)."""
    pages: list[dict] = [{}]
    n = 0
    for rep, rs in runs.items():
        if not rs:
            if n >= RUNS_PAGE:
                pages.append({})
                n = 0
            pages[-1][rep] = []
            n += 1  # an empty entry still takes room
            continue
        i = 0
        while i < len(rs):
            if n >= RUNS_PAGE:
                pages.append({})
                n = 0
            take = rs[i:i + RUNS_PAGE - n]
            pages[-1].setdefault(rep, []).extend(take)
            n += len(take)
            i += len(take)
    return pages


def _add_runs(into: dict[str, list[tuple[int, int]]], body_runs, cap_reporters: int,
              allow_empty: bool = True) -> int:
    """Collect a page of runs; returns how many seqs it added. Streams are reliable, so a run that overlaps
    what came before (a replayed page) is a protocol error, not a duplicate to look up."""
    if not isinstance(body_runs, dict):
        raise ProtocolError("runs must be a map")
    total = sum(len(v) for v in body_runs.values() if isinstance(v, list))
    if total > RUNS_PAGE + len(body_runs):
        raise ProtocolError(f"{total} runs in one page exceed the cap of {RUNS_PAGE}")
    added = 0
    for rep, rs in body_runs.items():
        if _unhex(rep) is None:
            raise ProtocolError(f"bad reporter key {str(rep)[:80]!r}")
        if not rs and not allow_empty:
            raise ProtocolError("an empty run list asks for nothing")
        if rep not in into and len(into) >= cap_reporters:
            raise ProtocolError("too many reporters in one session")
        cur = into.setdefault(rep, [])
        for a, b in check_runs(rs):
            if cur and a < cur[-1][1]:
                raise ProtocolError("runs of one reporter must continue in order across pages")
            cur.append((a, b))
            added += b - a
    return added


def runs_minus(a: list, b: list) -> list[tuple[int, int]]:
    """The seqs in runs a but not in runs b (both sorted and disjoint), as runs: O(len(a) + len(b))."""
    out, j = [], 0
    for lo, hi in a:
        while j < len(b) and b[j][1] <= lo:
            j += 1
        k, cur = j, lo
        while k < len(b) and b[k][0] < hi:
            if b[k][0] > cur:
                out.append((cur, b[k][0]))
            cur = max(cur, b[k][1])
            k += 1
        if cur < hi:
            out.append((cur, hi))
    return out


def runs_union(a, b) -> list[list[int]]:
    """Seqs in runs a or b, as maximal runs (inputs sorted, each disjoint)."""
    out: list[list[int]] = []
    for lo, hi in sorted([*a, *b]):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return out


def runs_head(runs, n: int) -> list[tuple[int, int]]:
    """The first n seqs of runs."""
    out = []
    for a, b in runs:
        if n <= 0:
            break
        out.append((a, min(b, a + n)))
        n -= out[-1][1] - a
    return out


class Initiator:
    """The asking side: sends its heads, learns the responder's seqs where they differ, asks for what it lacks
    (at most want_cap), and works out what the responder lacks (`give`)."""

    def __init__(self, ledger: Ledger, network: str, want_cap: int = MAX_WANT, keyring=None):
        self.ledger, self.network, self.want_cap = ledger, network, want_cap
        self.keyring = frozenset(keyring or ())  # who may certify a checkpoint the responder offers
        self.state = "idle"
        self._theirs: dict[str, list[tuple[int, int]]] = {}
        self._cp: dict | None = None  # a checkpoint arriving in chunks
        self._their_runs = 0
        self.give: list[Report] = []
        self.wanted = 0

    @property
    def capped(self) -> bool:
        """Did this session ask for (or find to give) all one session may? Then more is likely left: a driver
        starts the next session at once instead of waiting a round (a fresh replica catching up)."""
        return max(self.wanted, len(self.give)) >= self.want_cap

    def start(self) -> Step:
        if self.state != "idle":
            raise ProtocolError("already started")
        self.state = "diffing"
        heads = list(self.ledger.heads().items())
        pages = _pages(heads, HEADS_PAGE)
        cp = self.ledger.checkpoint
        extra = {"checkpoint": cp.boundary} if cp is not None else {}
        return Step(send=[("sync_digest", {"network": self.network, "heads": dict(p), "last": i == len(pages) - 1,
                                           **extra}) for i, p in enumerate(pages)])

    def receive(self, kind: str, body: dict) -> Step:
        if self.state == "diffing" and kind == "sync_checkpoint" and not self._theirs:
            return self._checkpoint_page(body)
        if self.state == "diffing" and kind == "sync_diff":
            self._their_runs += sum(len(v) for v in body["runs"].values() if isinstance(v, list))
            if self._their_runs > MAX_RUNS:
                raise ProtocolError(f"more than {MAX_RUNS} runs in one diff")
            _add_runs(self._theirs, body["runs"], MAX_REPORTERS)
            return self._plan() if body["last"] else Step()
        if self.state == "receiving" and kind == "reports":
            if not body["more"]:
                self.state = "done"
            return Step(ingest=list(body["reports"]), done=self.state == "done")
        raise ProtocolError(f"unexpected {kind!r} while {self.state}")

    def _checkpoint_page(self, body: dict) -> Step:
        cid = id_of(body)
        if self._cp is None:  # the first page: the quorum's signatures, checked before any state is kept
            proof = list(body.get("proof") or [])
            why = verify_proof(cid, proof, self.keyring, self.network)
            if why is not None:
                raise ProtocolError(f"the offered checkpoint is not certified: {why}")
            self._cp = {"id": cid, "state": bytearray(), "proof": proof}
        elif self._cp["id"] != cid:
            raise ProtocolError("checkpoint chunks of two checkpoints")
        if len(self._cp["state"]) + len(body["state"]) > STATE_MAX:
            raise ProtocolError("checkpoint state too large")
        self._cp["state"] += body["state"]
        if not body["last"]:
            return Step()
        got, self._cp = self._cp, None
        cp = Checkpoint(cid[0], cid[1], cid[3], bytes(got["state"]))
        if cp.state_hash != cid[2]:
            raise ProtocolError("the offered checkpoint's state is not the one its signatures name")
        try:
            cp.check()  # decoded once here: the adoption and the derivation take what this decoded
        except DecodeError as e:
            raise ProtocolError(f"the offered checkpoint's state does not decode: {e}") from None
        return Step(adopt=(cp, got["proof"]))

    def _plan(self) -> Step:
        want: dict[str, list[list[int]]] = {}
        budget = self.want_cap
        give_budget = self.want_cap
        for rep, theirs in self._theirs.items():
            key = bytes.fromhex(rep)
            mine = [tuple(r) for r in to_runs(self.ledger.seqs(key))]
            if theirs and theirs == mine:  # same seqs, different heads: an equivocation; swap them all
                lack, extra = theirs, mine
            else:
                lack, extra = runs_minus(theirs, mine), runs_minus(mine, theirs)
            cp = self.ledger.checkpoint
            if cp is not None and key in cp.upto:  # a peer yet to adopt our checkpoint: never ask for what it folded
                lack = runs_minus(lack, [(0, cp.upto[key] + 1)])
            lack = runs_head(lack, budget)
            if lack:
                want[rep] = [list(r) for r in lack]
                n = runs_count(lack)
                budget -= n
                self.wanted += n
            for a, b in runs_head(extra, give_budget):
                self.give.extend(r for s in range(a, b) if (r := self.ledger.get(key, s)) is not None)
            give_budget = self.want_cap - len(self.give)
        self.give.sort(key=_order)
        if not want:
            self.state = "done"
            return Step(done=True)
        self.state = "receiving"
        pages = _runs_pages(want)
        return Step(send=[("sync_want", {"runs": p, "last": i == len(pages) - 1}) for i, p in enumerate(pages)])


class Responder:
    """The answering side (an anchor): collects the asker's heads, answers with its own seqs as runs for every
    reporter whose head differs, then serves the wanted reports in pages."""

    def __init__(self, ledger: Ledger, want_cap: int = MAX_WANT, proof: list[bytes] | None = None):
        self.ledger, self.want_cap = ledger, want_cap
        self.proof = proof or []  # the quorum's signatures on the ledger's adopted checkpoint
        self.state = "digest"
        self._heads: dict[str, dict] = {}
        self._want: dict[str, list[tuple[int, int]]] = {}
        self._wanted = 0
        self.ignored = 0  # heads of reporters we do not hold, beyond max_reporters: left out of the diff
        # an honest asker names reporters we mostly know; far more is a memory attack
        self.max_reporters = min(MAX_REPORTERS, 2 * len(ledger.heads()) + HEADS_PAGE * 4)

    def receive(self, kind: str, body: dict) -> Step:
        if self.state == "digest" and kind == "sync_digest":
            heads = body["heads"]
            for k in heads:
                if _unhex(k) is None:
                    raise ProtocolError(f"bad reporter key {str(k)[:80]!r}")
            if len(self._heads) + len(heads) > self.max_reporters:
                # more reporters than we hold (twice over): keep the ones we can compare, ignore the rest for
                # this session (what only the asker holds reaches us another way: its pushes, their gossip)
                known = self.ledger.reporters()
                heads = {k: v for k, v in heads.items() if bytes.fromhex(k) in known}
                self.ignored += len(body["heads"]) - len(heads)
            self._heads.update(heads)
            if not body["last"]:
                return Step()
            self.state = "want"
            send = self._offer(body.get("checkpoint"))
            diff = {rep: to_runs(seqs) for rep, seqs in self.ledger.diff(self._heads).items()}
            pages = _runs_pages(diff)
            return Step(send=send + [("sync_diff", {"runs": p, "last": i == len(pages) - 1})
                                     for i, p in enumerate(pages)])
        if self.state == "want" and kind == "sync_want":
            self._wanted += _add_runs(self._want, body["runs"], self.want_cap, allow_empty=False)
            if self._wanted > self.want_cap:
                raise ProtocolError(f"more than {self.want_cap} reports wanted in one session")
            if not body["last"]:
                return Step()
            self.state = "done"
            picked = []
            for rep, runs in self._want.items():
                key = bytes.fromhex(rep)
                picked.extend(r for a, b in runs for s in range(a, b) if (r := self.ledger.get(key, s)) is not None)
            pages = _pages(picked, REPORTS_PAGE)
            return Step(send=[("reports", {"reports": [r.raw for r in p], "more": i < len(pages) - 1})
                              for i, p in enumerate(pages)], done=True)
        raise ProtocolError(f"unexpected {kind!r} while {self.state}")

    def offer_size(self, theirs: float | None) -> int:
        """The bytes of checkpoint state a digest naming `theirs` would be sent (0: none)."""
        cp = self.ledger.checkpoint
        if cp is None or not self.proof or (theirs is not None and theirs >= cp.boundary):
            return 0
        return len(cp.state)

    def _offer(self, theirs: float | None) -> list[tuple[str, dict]]:
        """Our checkpoint, if it is later than the asker's and we hold its proof."""
        cp = self.ledger.checkpoint
        if cp is None or not self.proof or (theirs is not None and theirs >= cp.boundary):
            return []
        chunks = [cp.state[i:i + STATE_CHUNK] for i in range(0, len(cp.state), STATE_CHUNK)] or [b""]
        return [("sync_checkpoint", {"boundary": cp.boundary, "digest": cp.digest, "state_hash": cp.state_hash,
                                     "count": cp.count, "state": c,
                                     "last": i == len(chunks) - 1, **({"proof": self.proof} if i == 0 else {})})
                for i, c in enumerate(chunks)]
