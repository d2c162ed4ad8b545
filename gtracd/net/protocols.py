"""Protocol ids and per-frame deadlines."""

INFER = "/gtrac/infer/1.0.0"  # seeker <-> worker sessions: info, tokenize, open, prefill, step, cancel, close
WRITE_TIMEOUT_S = 30.0
LEDGER = "/gtrac/ledger/2.0.0"  # report submission, anti-entropy (protocols/ledgersync.py), seeker pulls
INVITE = "/gtracd/invite/1.0.0"  # `gtracd join` redeems an invite with --uses at its issuing anchor
