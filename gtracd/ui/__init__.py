"""Terminal presentation shared by commands (no network, no torch)."""
