"""Daemons. Each role parses its own options: gtracd --role ROLE --help."""

from __future__ import annotations


def run(role: str, argv: list[str]) -> int:
    if role == "worker":
        from .worker import main
    elif role == "seeker":
        from .seeker import main
    else:
        from .anchor import main
    return main(argv)
