"""Subcommands beyond keys/config: route, bench, model, status, demo (registered lazily so the CLI
starts fast and never imports torch unless a command needs it)."""

from __future__ import annotations


def register(sub) -> None:
    pass
