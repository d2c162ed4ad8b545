"""Wire versions: what this build writes and what it reads (pure). docs/upgrades.md is the policy.

Every signed envelope and every stream frame carries `v`, the wire version it was written in; the libp2p
protocol ids (`/gtrac/infer/1.0.0`, `/gtrac/ledger/2.0.0`) name the major line, which no minor change
touches. A build knows the schemas up to `CURRENT` (a field records the version that added it: `F.since`),
writes each message in the lowest version that has every field it carries (`WIRE` = 1 for the rest, so a
release that reads only version 1 still reads everything that uses nothing newer), and reads `SPEAKS` =
[OLDEST, CURRENT + 1] (a minor version only adds, so every older one of the major line reads fully):

- every older version of the major line, fully (a minor version only adds);
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

CURRENT = 2  # the newest wire version this release knows (2: speculative steps, `verify` and `tokens`)
OLDEST = 1  # no wire version before it was ever released
PREVIEW = os.environ.get("GTRACD_WIRE_PREVIEW", "") == "next"
WIRE = CURRENT + 1 if PREVIEW else OLDEST  # what this process writes a message that uses nothing newer in
SPEAKS = (OLDEST, WIRE + 1 if PREVIEW else CURRENT + 1)  # what it reads
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


def written(needed: int) -> int:
    """The version a message is written in: the lowest that has its fields (`needed`), or a preview's."""
    return WIRE if PREVIEW else max(WIRE, needed)


def preview_body(body: dict) -> dict:
    return {**body, PREVIEW_FIELD: True} if PREVIEW else body
