"""The worker's lifecycle (pure), announced in its heartbeats:

    joining --placed--> loading --loaded--> serving --move(target)--> draining(target) --drained--> loading ...
       (a worker placed by hand starts serving)        \\--stay-- (a rival moves instead) --/
    any state --leave--> draining (no target, leaving: final; only the exit follows)

Only `serving` takes new sessions; every other state refuses them with `draining` (a refusal, never blamed).
A leave overrides a move in progress: once leaving, no event but another leave changes anything. An event
that makes no sense in the current state (serving twice, a move while loading) is a driver's bug and raises.
Drivers: worker/main.py (the leave on SIGTERM, the drain itself) and worker/agent.py (placement, moves).
"""

from __future__ import annotations

JOINING, LOADING, SERVING, DRAINING = "joining", "loading", "serving", "draining"
STATES = (JOINING, LOADING, SERVING, DRAINING)


class LifecycleError(Exception):
    """An event not allowed in the current state (a driver's bug, never a peer's)."""


class Lifecycle:
    def __init__(self, state: str = SERVING):
        if state not in STATES:
            raise LifecycleError(f"unknown state {state!r}")
        self.state = state
        self.target: tuple[int, int] | None = None  # draining to move here
        self.leaving = False

    def _go(self, allowed: tuple[str, ...], state: str, target: tuple[int, int] | None = None) -> bool:
        if self.leaving:
            return False  # a leave overrides everything after it
        if self.state not in allowed:
            raise LifecycleError(f"cannot go {self.state} -> {state}")
        self.state, self.target = state, target
        return True

    # ------------------------------------------------------------------ events (True: the state changed)
    def join(self) -> bool:
        return self._go((SERVING, JOINING), JOINING)

    def placed(self) -> bool:
        """Chose (or re-chose) a range: loading it."""
        return self._go((JOINING, LOADING), LOADING)

    def drained(self) -> bool:
        """A move's drain finished: loading the target range."""
        return self._go((DRAINING,), LOADING)

    def loaded(self) -> bool:
        return self._go((LOADING,), SERVING)

    def move(self, target: tuple[int, int]) -> bool:
        """Announce a move: no new sessions, the running ones drain."""
        return self._go((SERVING,), DRAINING, tuple(target))

    def stay(self) -> bool:
        """A move called off before its drain (a rival heals the same hole)."""
        return self._go((DRAINING,), SERVING)

    def leave(self) -> bool:
        """A graceful leave (SIGTERM): drain, then exit. Final."""
        changed = not self.leaving or self.state != DRAINING
        self.state, self.target, self.leaving = DRAINING, None, True
        return changed

    # ------------------------------------------------------------------ questions
    @property
    def serving(self) -> bool:
        return self.state == SERVING

    def refusal(self) -> str | None:
        """Why a new session is refused now (None: it is taken)."""
        if self.state == SERVING:
            return None
        if self.state == DRAINING:
            return "this worker takes no new sessions (draining)"
        return f"this worker is not serving yet ({self.state})"
