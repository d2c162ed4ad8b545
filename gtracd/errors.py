"""Error types. A UserError is printed as one line by the CLI and exits 2 (no traceback)."""


class GtracError(Exception):
    """Base of every error gtracd raises on purpose."""


class UserError(GtracError):
    """A mistake the user can fix: bad flag, missing file, wrong passphrase."""


class DecodeError(GtracError):
    """Bytes from the network (or disk) that do not decode to a valid message.

    `field` names the offending field path when one is known.
    """

    def __init__(self, message: str, field: str | None = None):
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class Oversize(DecodeError):
    """A message larger than the cap for its kind."""

    def __init__(self, what: str, size: int, cap: int, field: str | None = None):
        super().__init__(f"{what} of {size} bytes exceeds the cap of {cap}", field)


class Dropped(GtracError):
    """A well-formed message the verifier refuses (bad signature, replay, skew, ...)."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)
