"""Daemons. Each role parses its own options: gtracd --role ROLE --help."""

from __future__ import annotations

from ..anchor.main import main as anchor_main
from ..seeker.main import main as seeker_main
from ..worker.main import main as worker_main

MAINS = {"worker": worker_main, "seeker": seeker_main, "anchor": anchor_main}


def run(role: str, argv: list[str]) -> int:
    return MAINS[role](argv)
