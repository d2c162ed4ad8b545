"""The trust ledger (pure): a state-based CRDT of admitted trust reports, the deterministic derivation of
trust and latency from it, anchor-side admission, and the durable report log."""

from .admission import Admission, AdmissionParams
from .crdt import Derived, Fold, Ledger, Report, RuleParams, derive
from .signed import verified_report, verified_reports
from .store import ReportLog

__all__ = ["Admission", "AdmissionParams", "Derived", "Fold", "Ledger", "Report", "ReportLog", "RuleParams",
           "derive", "verified_report", "verified_reports"]
