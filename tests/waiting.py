"""Waiting on other processes in tests: their state is in files they rewrite (status, events), so the wait is a
condition re-checked on a short period, under a deadline that fails the test with what it waited for."""

from __future__ import annotations

import trio


async def until(pred, timeout: float, what: str, step: float = 0.1):
    """Return pred()'s first truthy value; AssertionError naming `what` after `timeout` seconds."""
    with trio.move_on_after(timeout):
        while not (got := pred()):
            await trio.sleep(step)
        return got
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
