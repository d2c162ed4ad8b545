"""The seeker's pieces: generation over a chain (with repair and spot checks), its peer view, the blame
rules that decide what a failure costs a worker, and the cache (ledger replica + liveness + outbox)."""
