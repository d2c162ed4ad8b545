"""`gtracd --role anchor` (control plane: not built yet)."""

from ..errors import UserError


def main(argv: list[str]) -> int:
    raise UserError("role 'anchor' is not built yet (control-plane issue)")
