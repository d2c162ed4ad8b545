"""Waiting on other processes in tests: their state is in files they rewrite (status, events) or behind a
stream (a worker's session count), so the wait is a condition re-checked on a short period, under a deadline
that fails the test with what it waited for. The condition may be a coroutine function."""

from __future__ import annotations

import inspect
import threading
import time

import trio


async def until(pred, timeout: float, what: str, step: float = 0.1):
    """Return pred()'s first truthy value; AssertionError naming `what` after `timeout` seconds."""
    with trio.move_on_after(timeout):
        while True:
            got = pred()
            if inspect.isawaitable(got):
                got = await got
            if got:
                return got
            await trio.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_until(pred, timeout: float, what: str, step: float = 0.1):
    """`until` for tests outside trio (a process's state, re-checked on a short period)."""
    tick = threading.Event()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        tick.wait(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
