"""Wire versions: what this build writes and what it reads (pure). docs/upgrades.md is the policy.

Every signed envelope and every stream frame carries `v`, the wire version it was written in; the libp2p
protocol ids (`/gtrac/infer/1.0.0`, `/gtrac/ledger/2.0.0`) name the major line, which no minor change
touches. A build writes `WIRE` and reads `SPEAKS` = [WIRE - 1, WIRE + 1] (never below `OLDEST`):

- the previous version, fully (a minor version only adds);
- the next version, by ignoring what it does not know: fields a newer peer adds are dropped before the
  schema check (the signature still covers the bytes as sent), and a kind it does not know is counted as
  `unknown_kind`, not as malformed.

So two adjacent versions interoperate in both directions, and a peer outside the range is refused with the
counted reason `wire_version` (its heartbeats are never heard, so it is never routed to). What a minor
version may change: add optional fields, kinds and frame kinds. Anything else (a field's meaning, a
required field, the signed bytes) takes a new major line: new protocol ids and a new envelope domain.

`GTRACD_WIRE_PREVIEW=next` makes a daemon write the next version, with one field this build does not know
in every body: how the tests run a mixed-version network (docs/upgrades.md).
"""

from __future__ import annotations

import os

from ..errors import DecodeError

CURRENT = 1  # the wire version of this release
OLDEST = 1  # no wire version before it was ever released
PREVIEW = os.environ.get("GTRACD_WIRE_PREVIEW", "") == "next"
WIRE = CURRENT + 1 if PREVIEW else CURRENT  # what this process writes
SPEAKS = (max(OLDEST, WIRE - 1), WIRE + 1)  # what it reads
PREVIEW_FIELD = "x_preview"  # the field a preview build adds to every body (unknown to this release)


class VersionRefused(DecodeError):
    """A message in a wire version outside the range this build reads."""

    def __init__(self, v, what: str):
        super().__init__(f"{what} in wire version {v!r}; this gtracd reads {SPEAKS[0]}-{SPEAKS[1]} "
                         f"(upgrade the older side: see docs/upgrades.md)", f"{what}.v")
        self.v = v


def check_version(v, what: str) -> bool:
    """True if `v` is newer than this release's schemas (ignore what is not known: a preview build knows no
    more than its release); raises VersionRefused outside SPEAKS."""
    if not isinstance(v, int) or isinstance(v, bool) or not SPEAKS[0] <= v <= SPEAKS[1]:
        raise VersionRefused(v, what)
    return v > CURRENT


def preview_body(body: dict) -> dict:
    return {**body, PREVIEW_FIELD: True} if PREVIEW else body
