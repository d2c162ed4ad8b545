"""What the seeker's requests did, for `/metrics` (pure; the request service is the one writer): outcomes by
code, tokens, TTFT and per-token latency histograms, repairs by verdict, spot-check events."""

from __future__ import annotations

from ..ops.histogram import TOKEN_BUCKETS, TTFT_BUCKETS, Histogram, Tally


class Observed:
    def __init__(self):
        self.outcomes = Tally()
        self.repairs = Tally()
        self.spot_checks = Tally()
        self.speculation = dict.fromkeys(("trips", "drafted", "accepted"), 0)  # speculative decoding
        self.ttft = Histogram(TTFT_BUCKETS)
        self.token = Histogram(TOKEN_BUCKETS)
        self.tokens = self.prompt_tokens = self.reused_tokens = 0
        self.in_flight = 0

    def ended(self, gen, outcome: str) -> None:
        """A request ended (`outcome`: ok, a GenerationFailed code, timeout, cancelled): its repairs and spot
        checks (the generation's counters cover this request only: Generation.new_request resets them)."""
        self.outcomes.add(outcome)
        for r in gen.repair_log:
            self.repairs.add(str(r.get("verdict")))
        for k, n in gen.checker.counters.items():
            if n:
                self.spot_checks.add(k, n)
        for k in ("trips", "drafted", "accepted"):
            self.speculation[k] += gen.speculation.counters[k]

    def completed(self, ttft_s: float, step_ms: list[float], tokens: int, prompt_tokens: int, reused: int) -> None:
        self.ttft.observe(ttft_s)
        for ms in step_ms:
            self.token.observe(ms / 1000)
        self.tokens += tokens
        self.prompt_tokens += prompt_tokens
        self.reused_tokens += reused

    def status(self) -> dict:
        return {"observed": {"outcomes": self.outcomes.snapshot(), "repairs": self.repairs.snapshot(),
                             "spot_checks": self.spot_checks.snapshot(), "speculation": dict(self.speculation),
                             "ttft": self.ttft.snapshot(),
                             "token": self.token.snapshot(), "tokens": self.tokens,
                             "prompt_tokens": self.prompt_tokens, "reused_tokens": self.reused_tokens,
                             "in_flight": self.in_flight}}
