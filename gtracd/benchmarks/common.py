"""What several benchmarks share: a seeker in the bench process that knows a set of workers, and the
human-readable table a result prints as without --json."""

from __future__ import annotations

from contextlib import asynccontextmanager

from ..control.peerview import PeerView
from ..identity import Identity
from ..net.host import running_host
from ..seeker.generation import SeekerNet
from ..seeker.main import discover


@asynccontextmanager
async def seeker_of(addrs: list[str], probation: int = 8):
    """(net, view) of a fresh seeker host that dialled every worker at `addrs` (each one offered to routing at
    once: `probation`); a worker it cannot reach fails the benchmark."""
    async with running_host(Identity.generate()) as host:
        view = PeerView(probation=probation)
        net = SeekerNet(host, view)
        problems = await discover(net, view, addrs)
        if problems:
            raise RuntimeError("; ".join(problems))
        yield net, view


def print_table(title: str, rows: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, v in rows.items():
        t.add_row(k, str(v))
    Console().print(t)
