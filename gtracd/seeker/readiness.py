"""Is this seeker ready to serve, and if not, why (pure: the view and the routing terms in, an answer out).
`/health`, `gtracd status` and `/metrics` (`gtracd_ready`) say it; a request that arrives while the seeker is
not ready waits (bounded: route_wait_s) for a route instead of failing at once (seeker.service), woken when
the view changes (`view_changed`, which a repair waiting for a replacement uses too)."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import trio

from ..routing import NoRoute, Params, route
from ..routing.coverage import coverage

if TYPE_CHECKING:
    from gtracd.control.peerview import PeerView


def readiness(view: PeerView, params: Params, mode: str, now: float | None = None) -> dict:
    """{"ready": bool, "why": one line, "workers": live workers serving the model}."""
    mt = view.pinned()
    if mt is None:
        seen = view.models_seen()
        if not seen:
            return {"ready": False, "why": "no worker heard yet (discovering)", "workers": 0}
        return {"ready": False, "why": f"no worker serves the pinned model (heard {sum(seen.values())} serving "
                                       f"{len(seen)} other model(s))", "workers": 0}
    snap = view.snapshot(mt[0], now)
    live = sum(1 for p in snap.peers if p.alive)
    if not live:
        return {"ready": False, "why": "no worker serving the model heard yet (discovering)", "workers": 0}
    try:
        route(snap, mode, params, rng=random.Random(0))
    except NoRoute as e:
        holes = coverage(snap, params.trust_floor).holes
        where = (f"layers {', '.join(f'{a}:{b}' for a, b in holes)} of {mt[1]} have no live worker at or above "
                 f"the trust floor" if holes else str(e))
        return {"ready": False, "why": f"no chain covers the model: {where} ({live} live workers)", "workers": live}
    return {"ready": True, "why": f"a chain covers all {mt[1]} layers ({live} live workers)", "workers": live}


async def view_changed(view: PeerView, seconds: float) -> None:
    """Return when a worker appears, returns, moves or changes state (PeerView.listeners), or after `seconds`
    (what the listeners do not announce changes too: trust from the ledger, busy peers expiring)."""
    changed = trio.Event()
    view.listeners.append(changed.set)
    try:
        with trio.move_on_after(max(0.0, seconds)):
            await changed.wait()
    finally:
        view.listeners.remove(changed.set)
