"""Daemons. Each role parses its own options: gtracd --role ROLE --help."""

from __future__ import annotations

from ..errors import UserError


def run(role: str, argv: list[str]) -> int:
    raise UserError(f"role {role!r} is not built yet")
