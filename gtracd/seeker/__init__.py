"""The seeker role: generation over a chain (hops, repair, spot checks), the blame rules that decide what a
failure costs a worker, the request service with kept conversations, the Python client (`client`), the
OpenAI-compatible HTTP API (`api/`) and the daemon (`main`). The peer view and the follower it shares with
workers live in control/."""
