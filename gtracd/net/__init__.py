"""libp2p shell: hosts, stream framing, gossip. Thin: decisions live in the pure modules."""
