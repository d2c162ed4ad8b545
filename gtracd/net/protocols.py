"""Protocol ids and per-frame deadlines."""

INFER = "/gtrac/infer/1.0.0"  # seeker <-> worker sessions: info, tokenize, open, prefill, step, cancel, close
SYNC = "/gtrac/sync/1.0.0"  # anchor anti-entropy and report submission
WRITE_TIMEOUT_S = 30.0
