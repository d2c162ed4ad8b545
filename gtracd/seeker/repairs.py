"""What one request owes the trust ledger (pure): the repair and blame bookkeeping of a generation.

The generation (seeker/generation.py) and the spot-check driver (seeker/checker.py) record what happened here;
nothing else writes this state. Events:

    avoid(peers)                       never route to these in this request (a caller's exclusions)
    unreachable(peer, error)           a peer routing chose could not be dialled while the chain opened
                                       (nothing was sent): routed around, and reported alone
    hop_failed(peer, span, verdict)    a chain hop failed: routed around from now on; excused (it may serve
                                       again elsewhere, e.g. after moving to heal a hole) if nobody is blamed
    replacement_failed(peer, verdict, error)
                                       a replacement failed while the repair could still wait for another
    repaired(hop, failed, replacement, verdict, error, repair_ms, chain, latency_ms)
                                       hop `hop` runs on `replacement` now; `chain` is the chain as it failed
    convicted(liar, witness, arbiter, evidence)
                                       a spot check caught wrong output: the liar is routed around
    ended(blamed)                      the request failed for good; `blamed` False: no worker is at fault
    new_request()                      a kept conversation's next request: what is owed starts over (the
                                       peers routed around stay routed around)

Questions: `may_repair()` (the per-request budget), `excluded(moved)` (who may not be a replacement),
`outcomes(...)` (what the seeker's own view learns) and `reports(...)` (the trust reports owed). Each
blamed failure costs exactly the peer the blame rules fault (seeker/blame.py), once; an unblamed one costs
nobody. The chain that finished is reported a success (its hops did their part); the seeker's own view
counts the success only when no failure of the request was blamed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .blame import Verdict


@dataclass
class Accounts:
    max_repairs: int | None = None  # None: one repair per failing call; 1: the paper's one-shot per request
    failed: set[str] = field(default_factory=set)  # routed around for the rest of this generation
    excused: dict[str, tuple[int, int]] = field(default_factory=dict)  # failed without blame -> the span it failed on
    repair_log: list[dict] = field(default_factory=list)
    replacement_failures: list[dict] = field(default_factory=list)
    unreached: list[dict] = field(default_factory=list)  # {"peer", "error"}: not dialled while the chain opened
    wrong_outputs: list[dict] = field(default_factory=list)  # {"chain": [liar, witness, arbiter], "evidence"}
    attempts: int = 0  # replacements tried (a failed one counts too)
    final_blamed: bool = True  # False once the request ended on a failure no worker is blamed for

    # ------------------------------------------------------------------ events
    def avoid(self, peers) -> None:
        self.failed |= set(peers)

    def unreachable(self, peer: str, error: str) -> None:
        self.failed.add(peer)
        self.unreached.append({"peer": peer, "error": error})

    def hop_failed(self, peer: str, span: tuple[int, int], v: Verdict) -> None:
        self.failed.add(peer)
        if not v.blamed:
            self.excused[peer] = span

    def attempt(self) -> None:
        """A replacement is being tried."""
        self.attempts += 1

    def replacement_failed(self, peer: str, v: Verdict, error: str, may_wait: bool) -> None:
        """A replacement failed. `may_wait`: the repair goes on to the next candidate, so this failure is
        accounted for alone (otherwise the request's end accounts for it)."""
        self.failed.add(peer)
        if may_wait:
            self.replacement_failures.append({"peer": peer, "blamed": v.blamed, "error": error})

    def repaired(self, hop: int, failed: str, replacement: str, v: Verdict, error: str, repair_ms: float,
                 chain: list[str], latency_ms: list[float]) -> None:
        self.repair_log.append({"hop": hop, "failed": failed, "replacement": replacement, "error": error,
                                "blamed": v.blamed, "verdict": v.kind, "repair_ms": repair_ms, "chain": list(chain),
                                "latency_ms": list(latency_ms)})

    def convicted(self, liar: str, witness: str, arbiter: str, evidence) -> None:
        self.wrong_outputs.append({"chain": [liar, witness, arbiter], "evidence": evidence})
        self.failed.add(liar)

    def ended(self, blamed: bool) -> None:
        self.final_blamed = blamed

    def new_request(self) -> None:
        self.repair_log = []
        self.replacement_failures = []
        self.unreached = []
        self.wrong_outputs = []
        self.final_blamed = True

    # ------------------------------------------------------------------ questions
    def may_repair(self) -> bool:
        return self.max_repairs is None or len(self.repair_log) < self.max_repairs

    def excluded(self, moved) -> set[str]:
        """Failed peers, except an excused one that `moved(peer, span)` away from the span it failed on."""
        return {p for p in self.failed if not (p in self.excused and moved(p, self.excused[p]))}

    def outcomes(self, chain: list[str], success: bool, culprit: str | None) -> list[tuple[list[str], bool, str | None]]:
        """(chain, ok, culprit) for the seeker's own view, in the order the paper's rule applies them."""
        blamed = [r for r in self.repair_log if r["blamed"]]
        everyone = chain + [r["failed"] for r in self.repair_log]
        out = [(w["chain"][:1], False, w["chain"][0]) for w in self.wrong_outputs]
        out += [([f["peer"]], False, f["peer"]) for f in self.replacement_failures if f["blamed"]]
        out += [([u["peer"]], False, u["peer"]) for u in self.unreached]
        if success and not blamed:
            out.append((list(chain), True, None))
        out += [(everyone, False, r["failed"]) for r in blamed]
        if not success and self.final_blamed:
            out.append((everyone if culprit is None or culprit in everyone else [culprit], False, culprit))
        return out

    def reports(self, base: dict, chain: list[str], latency_ms: list[float], success: bool,
                culprit: str | None) -> list[dict]:
        """The trust reports owed: each conviction; one failure per blamed repair naming the failed hop; each
        blamed replacement failure alone; then the final outcome — none when the request ended on an
        unblamed failure, a culprit outside the chain alone, never the hops around it. `latency_ms`: what
        the seeker measured per completed hop of `chain`, in order (shorter when a hop has none)."""
        out = [{**base, "chain": w["chain"], "latency_ms": [], "outcome": "wrong_output", "culprit": 0,
                "evidence": w["evidence"]} for w in self.wrong_outputs]
        for r in self.repair_log:
            if r["blamed"]:
                out.append({**base, "chain": r["chain"], "latency_ms": r["latency_ms"][:r["hop"]],
                            "outcome": "failure", "culprit": r["hop"]})
        for f in self.replacement_failures:  # never part of a chain: each alone
            if f["blamed"]:
                out.append({**base, "chain": [f["peer"]], "latency_ms": [], "outcome": "failure", "culprit": 0})
        for u in self.unreached:  # routed around before the chain opened: each alone
            out.append({**base, "chain": [u["peer"]], "latency_ms": [], "outcome": "failure", "culprit": 0})
        if not success and self.final_blamed and culprit is not None and culprit not in chain:
            out.append({**base, "chain": [culprit], "latency_ms": [], "outcome": "failure", "culprit": 0})
            return out
        if not chain:
            return out
        if success and len(latency_ms) == len(chain):
            out.append({**base, "chain": list(chain), "latency_ms": list(latency_ms), "outcome": "success",
                        "culprit": -1})
        elif not success and self.final_blamed:
            idx = chain.index(culprit) if culprit in chain else -1
            out.append({**base, "chain": list(chain), "latency_ms": latency_ms[:idx] if idx >= 0 else list(latency_ms),
                        "outcome": "failure", "culprit": idx})
        return out
