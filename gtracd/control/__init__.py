"""The control plane as a daemon follows it: heartbeats, the peer view built from them, the ledger replica,
and the follower (peer view + replica + outbox) that seekers and workers both run."""
