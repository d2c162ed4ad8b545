"""The trust ledger (pure): a state-based CRDT of admitted trust reports, and the deterministic
derivation of trust and latency from it."""

from .crdt import Ledger, Report, RuleParams, derive

__all__ = ["Ledger", "Report", "RuleParams", "derive"]
