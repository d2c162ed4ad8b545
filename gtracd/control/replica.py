"""A ledger replica as a daemon holds it: the CRDT, its derived trust/latency kept current, and the durable
log behind it. Anchors and seekers both hold one; only anchors decide what gets in (see ledger.admission).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from ..errors import DecodeError
from ..ledger import Derived, Ledger, Report, ReportLog, RuleParams
from ..ledger.checkpoint import (
    Certs,
    Checkpoint,
    boundary_for,
    id_of,
    signed_body,
)
from ..ledger.crdt import make_checkpoint
from ..ledger.signed import is_held
from ..ledger.store import load_checkpoint, save_checkpoint
from ..wire.envelope import decode_envelope

if TYPE_CHECKING:
    from gtracd.config import Settings

log = logging.getLogger("gtracd.replica")
REFOLD_SPACING = 4.0  # after a refold that took t, the next one waits >= 4 t (a seeker routes with the result)
DISPLAY_REFOLD_SPACING = 20.0  # an anchor's derived trust is only shown (status, top): refold more rarely

# the settings every replica of a network must share: they decide the derived numbers
RULE_SETTINGS = ["initial_trust", "reward", "penalty", "unknown_penalty", "alpha", "latency0_ms", "reporter_budget",
                 "reporter_window_s", "wrong_output_penalty", "standing_age_s", "standing_reports", "newcomer_budget",
                 "latency_budget", "newcomer_latency_budget"]


def rule_params(s: Settings) -> RuleParams:
    return RuleParams(initial_trust=s.initial_trust, reward=s.reward, penalty=s.penalty,
                      unknown_penalty=s.unknown_penalty, alpha=s.alpha, latency0_ms=s.latency0_ms,
                      reporter_budget=s.reporter_budget, window_s=s.reporter_window_s,
                      wrong_output_penalty=s.wrong_output_penalty, standing_age_s=s.standing_age_s,
                      standing_reports=s.standing_reports, newcomer_budget=s.newcomer_budget,
                      latency_budget=s.latency_budget, newcomer_latency_budget=s.newcomer_latency_budget)


def checkpoint_lag(s: Settings) -> float:
    """How far behind now checkpoint boundaries stay: anchors admit reports up to reporter_window_s old (and
    hold a report naming an unheard worker up to 2 x node_timeout_s before admitting it), and anti-entropy
    gets ten rounds to spread the last of them."""
    return s.reporter_window_s + 2 * s.node_timeout_s + 10 * s.sync_s


def ledger_gossip(verifier, data: bytes, anchors: set[str], network: str):
    """A `ledger_delta` or `ledger_checkpoint` from gossip: the envelope, or None (drop counted) unless an
    anchor in the keyring signed it for this network. A `keyring_update` is returned as it is (its signatures
    are checked by control.keyring)."""
    env = verifier.admit(data, time.time(), kinds=("ledger_delta", "ledger_checkpoint", "keyring_update"))
    if env is None:
        return None
    if env.kind == "keyring_update":  # any peer may relay one: the quorum of signatures inside is what counts
        return env
    if env.sender_id not in anchors:
        verifier.drop("untrusted_sender")  # ledger data only from keyring anchors
        return None
    if env.body["network"] != network:
        verifier.drop("wrong_network")
        return None
    return env


class Replica:
    def __init__(self, path: Path | None, params: RuleParams, refold_spacing: float = REFOLD_SPACING):
        self.params, self.refold_spacing = params, refold_spacing
        self.ledger = Ledger()
        self.log = ReportLog(path) if path is not None else None
        self.cp_path = path.with_name("checkpoint.bin") if path is not None else None
        self.proof: list[bytes] = []  # the quorum's signatures on the adopted checkpoint
        self.loaded = 0
        self.checkpoint_error: str | None = None
        if self.cp_path is not None and self.cp_path.exists():  # first: the log's folded reports are then refused
            try:
                cp, self.proof = load_checkpoint(self.cp_path)
                self.ledger.adopt(cp)
            except (OSError, DecodeError) as e:
                # moved aside for inspection (never overwritten); peers offer the certified one over sync
                self.checkpoint_error = str(e)
                try:
                    self.cp_path.rename(self.cp_path.with_name(f"checkpoint.bad-{int(time.time())}.bin"))
                except OSError:
                    pass
        if self.log is not None:
            for r in self.log.load():
                self.loaded += self.ledger.add(r)
        self.derived = Derived(self.ledger, params)
        self._shown: tuple[dict, dict] | None = None  # the last derived (trust, latency)
        self._refold_after = 0.0
        self._lock = trio.Lock()
        self.persisted = self.loaded
        self._claimed: set[bytes] = set()  # raws being verified (claim / release)
        self.refuse = None  # a predicate over reports merge leaves out (the role's: a former anchor's late epochs)

    async def checkpoint_at(self, boundary: float) -> Checkpoint | None:
        """This replica's checkpoint at `boundary` (folded in a thread), or None if it already adopted one as
        late."""
        prev = self.ledger.checkpoint
        if prev is not None and boundary <= prev.boundary:
            return None
        below = [r for r in self.ledger.reports() if r.ts < boundary]  # Reports are immutable: safe to share
        return await trio.to_thread.run_sync(make_checkpoint, prev, below, boundary, self.params)

    async def adopt(self, cp: Checkpoint, proof: list[bytes]) -> bool:
        """Adopt a certified checkpoint: prune, then on disk the checkpoint first (atomic), then the log
        rewritten without what it folded (a crash in between leaves reports the load refuses again)."""
        async with self._lock:
            if not self.ledger.adopt(cp):
                return False
            self.proof[:] = proof  # in place: a sync responder reads the proof of what it offers
            if self.log is not None:
                raws = [r.raw for r in self.ledger.reports()]
                await trio.to_thread.run_sync(save_checkpoint, self.cp_path, cp, self.proof)
                await trio.to_thread.run_sync(self.log.rewrite, raws)
            return True

    async def reprove(self, proof: list[bytes]) -> None:
        """The adopted checkpoint's proof replaced (re-signed after a keyring update), on disk too."""
        async with self._lock:
            self.proof[:] = proof  # in place: a sync responder reads it
            if self.cp_path is not None and self.ledger.checkpoint is not None:
                await trio.to_thread.run_sync(save_checkpoint, self.cp_path, self.ledger.checkpoint, self.proof)

    async def purge(self, pred) -> list[Report]:
        """Remove what `pred` selects from the ledger and the log (rewritten: a restart does not bring it back)."""
        async with self._lock:
            gone = self.ledger.discard(pred)
            if gone and self.log is not None:
                raws = [r.raw for r in self.ledger.reports()]
                await trio.to_thread.run_sync(self.log.rewrite, raws)
            return gone

    def checkpoint_status(self) -> dict | None:
        cp = self.ledger.checkpoint
        if cp is None:
            return {"load_error": self.checkpoint_error} if self.checkpoint_error else None
        return {"boundary": cp.boundary, "folded": cp.count, "digest": cp.digest.hex()[:16],
                "signers": len(self.proof), "refused_below": self.ledger.below_checkpoint,
                **({"load_error": self.checkpoint_error} if self.checkpoint_error else {})}

    async def persist(self, reports: list[Report]) -> None:
        """fsync the given (already added) reports before returning: callers acknowledge after this."""
        if self.log is None or not reports:
            return
        async with self._lock:
            await trio.to_thread.run_sync(self.log.append, [r.raw for r in reports])
            self.persisted += len(reports)

    def claim(self, raws) -> list[bytes]:
        """The raws worth verifying: neither held byte for byte nor being verified on another path right now
        (an anchor pulls from a peer while that peer pushes the same reports to it, and checking a signature
        is most of a report's cost). `release` them once merged (or failed)."""
        out = []
        for raw in raws:
            if raw not in self._claimed and not is_held(self.ledger, raw):
                self._claimed.add(raw)
                out.append(raw)
        return out

    def release(self, raws) -> None:
        self._claimed.difference_update(raws)

    async def merge(self, reports: list[Report]) -> list[Report]:
        """Add reports (already verified); persist and return the ones that changed the state. What `refuse`
        selects now is left out (verified before a keyring update the role applied meanwhile)."""
        new = [r for r in reports if not (self.refuse is not None and self.refuse(r)) and self.ledger.add(r)]
        await self.persist(new)
        return new

    def trust_latency(self, fresh: bool = False) -> tuple[dict[str, float], dict[str, float]]:
        """The derived trust and latency. A refold (reports arriving out of order, as a sync's pages do) costs
        a copy of the checkpoint's fold and a fold of everything after it; they are spaced so they take
        at most 1 / (1 + refold_spacing) of the event loop: meanwhile the last values are returned (callers
        ask again every second). `fresh` refolds now."""
        now = time.monotonic()
        if not fresh and self._shown is not None and now < self._refold_after and self.derived.stale():
            return self._shown
        refolds, t0 = self.derived.refolds, time.perf_counter()
        f = self.derived.current()
        if self.derived.refolds != refolds:
            self._refold_after = now + self.refold_spacing * (time.perf_counter() - t0)
        self._shown = (f.trust, f.latency)
        return self._shown

    def close(self) -> None:
        if self.log is not None:
            self.log.close()


class Checkpointer:
    """Drives checkpoints for one replica (anchors and seekers alike): collects keyring anchors' signatures
    from gossip and adopts a checkpoint once a quorum signed it and this replica computed the same state.
    An anchor (`signer` given) also proposes: every round it computes its checkpoint at the boundary due
    (`boundary_for(now, checkpoint_s, lag)`), signs it and gossips the signature, again each round until a
    checkpoint at least that late is adopted (gossip is lossy). The state machine is ledger.checkpoint.Certs;
    this is its driver, on the daemon's event loop."""

    def __init__(self, replica: Replica, keyring: set[str], network: str, publish=None, signer=None,
                 checkpoint_s: float = 0.0, lag_s: float = 0.0, on_adopt=None):
        self.replica, self.network, self.publish, self.signer = replica, network, publish, signer
        self.certs = Certs(keyring)
        self.checkpoint_s, self.lag_s = checkpoint_s, lag_s
        self.mine: dict[tuple, Checkpoint] = {}  # checkpoints this replica computed, by id (the last few)
        self.on_adopt = on_adopt  # e.g. a seeker refreshing the trust its view routes with
        self._mismatch: tuple | None = None  # (certified id, ledger version) we folded differently: not again
        self.counters = {"signed": 0, "adopted": 0, "mismatched": 0, "signatures": 0, "errors": 0}

    async def rekey(self, keyring: set[str]) -> None:
        """The keyring changed: only its anchors' signatures count from now on (gtracd.keyring). The adopted
        checkpoint's proof may have leaned on a key no longer in it (new replicas could not adopt it, and the
        reports it folded are gone): an anchor signs its adopted checkpoint again, and once the remaining
        anchors' signatures make a quorum the proof is replaced (_refresh_proof)."""
        self.certs.rekey(keyring)
        cp = self.replica.ledger.checkpoint
        if cp is not None and self.signer is not None:
            env = self.signer.sign("ledger_checkpoint", signed_body(cp, self.network))
            self.certs.add(self.signer.ident.peer_id, cp.id, env.raw)
            if self.publish is not None:
                await self.publish("ledger", env.raw)
        await self._guarded(self._refresh_proof)

    def proof_signers(self) -> set[str]:
        """The current keyring anchors whose signatures the adopted checkpoint's proof holds."""
        out = set()
        for raw in self.replica.proof:
            try:
                env = decode_envelope(bytes(raw))
            except DecodeError:
                continue
            if env.sender_id in self.certs.keyring:
                out.add(env.sender_id)
        return out

    async def _refresh_proof(self) -> None:
        cp = self.replica.ledger.checkpoint
        if cp is None or not self.certs.certified(cp.id) or len(self.proof_signers()) >= self.certs.quorum:
            return
        await self.replica.reprove(self.certs.proof(cp.id))
        self.counters["reproved"] = self.counters.get("reproved", 0) + 1

    async def on_signature(self, env) -> None:
        self.counters["signatures"] += 1
        self.certs.add(env.sender_id, id_of(env.body), env.raw)
        await self._guarded(self._maybe_adopt)
        await self._guarded(self._refresh_proof)

    async def _guarded(self, step) -> None:
        """A checkpoint step that fails (a disk full, a state too large, a bug) is counted and logged; it
        never takes the daemon down, and the next round tries again."""
        try:
            await step()
        except (OSError, ValueError, DecodeError) as e:
            self.counters["errors"] += 1
            log.warning("checkpoint step failed: %s", e)

    async def _maybe_adopt(self) -> None:
        cid = self.certs.latest_certified()
        adopted = self.replica.ledger.checkpoint
        if cid is None or (adopted is not None and cid[0] <= adopted.boundary):
            return
        lg = self.replica.ledger
        version = (cid, len(lg), lg.rewrites)
        cp = self.mine.get(cid)
        if cp is None:
            if self._mismatch == version:  # folded it already and disagreed; nothing changed since
                return
            cp = await self.replica.checkpoint_at(cid[0])
            if cp is None:
                return
            self._remember(cp)
        if cp.id != cid:  # this replica folded another set below the boundary than the quorum did: sync with
            self.counters["mismatched"] += 1  # an anchor brings the certified state (sync_checkpoint)
            self._mismatch = version
            return
        if await self.replica.adopt(cp, self.certs.proof(cid)):
            self.counters["adopted"] += 1
            self.certs.forget_below(cp.boundary)
            self.mine = {k: v for k, v in self.mine.items() if k[0] > cp.boundary}
            if self.on_adopt is not None:
                self.on_adopt()

    def _remember(self, cp: Checkpoint) -> None:
        self.mine[cp.id] = cp
        while len(self.mine) > 3:  # each holds a whole state (MiBs on a big network)
            del self.mine[min(self.mine, key=lambda k: k[0])]

    async def propose(self, now: float) -> None:
        """Anchors: sign this replica's checkpoint at the boundary due now (wall clock: reports carry wall
        timestamps), unless one at least as late is adopted."""
        if self.signer is None or self.checkpoint_s <= 0:
            return
        boundary = boundary_for(now, self.checkpoint_s, self.lag_s)
        adopted = self.replica.ledger.checkpoint
        if boundary <= 0 or (adopted is not None and boundary <= adopted.boundary):
            return
        cp = await self.replica.checkpoint_at(boundary)
        if cp is None:
            return
        self._remember(cp)
        env = self.signer.sign("ledger_checkpoint", signed_body(cp, self.network))
        self.certs.add(self.signer.ident.peer_id, cp.id, env.raw)
        self.counters["signed"] += 1
        if self.publish is not None:
            await self.publish("ledger", env.raw)
        await self._maybe_adopt()

    async def run(self, every: float) -> None:
        while True:
            await self._guarded(lambda: self.propose(time.time()))
            await trio.sleep(every)

    def status(self) -> dict:
        return {"checkpoint": self.replica.checkpoint_status(), "checkpoints": dict(self.counters)}
