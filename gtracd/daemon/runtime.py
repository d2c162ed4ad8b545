"""What every daemon shares: options, identity, signals, the ready file."""

from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from ..config import add_setting_flags, flags_from, load_settings
from ..errors import UserError
from ..identity import Identity, Keystore, read_passphrase_file
from ..net.librarylogs import count_library_logs
from ..ops import logs
from ..wire.text import printable

if TYPE_CHECKING:
    from gtracd.config import Settings

COMMON = ["network", "listen", "announce", "bootstrap", "relay_serve", "relay_allow", "relay_reservations",
          "relay_circuits", "relay_circuit_mib", "relay_circuit_s", "relay_via", "discover", "key", "keystore", "data_dir", "metrics", "log_format", "log_file",
          "log_max_mib", "log_backups", "keyring_quorum"]


class RoleParser(argparse.ArgumentParser):
    def error(self, message):
        raise UserError(f"{message} (see: {self.prog} --help)")


def parser(role: str, description: str, settings: list[str]) -> argparse.ArgumentParser:
    p = RoleParser(prog=f"gtracd --role {role}", description=description)
    p.add_argument("--config", help="TOML settings file")
    p.add_argument("--ephemeral", action="store_true", help="use a fresh in-memory identity (tests, benchmarks)")
    p.add_argument("--passphrase-file", help="passphrase of an encrypted key")
    p.add_argument("--name", default=None, type=daemon_name, help="human-readable name shown in status views")
    p.add_argument("--ready-file", help="write {peer_id, addrs, ...} as JSON here once listening")
    p.add_argument("--log-level", default=os.environ.get("GTRACD_LOG_LEVEL", "WARNING"))
    add_setting_flags(p, COMMON + settings)
    return p


def daemon_name(s: str) -> str:
    """--name: shown to people (heartbeats refuse control characters) and part of file names under the data
    directory, so printable, at most 64 characters, no path separators."""

    if not 0 < len(s) <= 64 or not printable(s) or "/" in s or "\\" in s or s.startswith("."):
        raise argparse.ArgumentTypeError(f"{s!r}: a name is 1-64 printable characters, without / or \\ and "
                                         "not starting with a dot")
    return s


def settings_from(args: argparse.Namespace, names: list[str]):
    return load_settings(args.config, flags_from(args, COMMON + names))


def identity(args: argparse.Namespace, settings: Settings, default_key: str) -> Identity:
    if args.ephemeral:
        return Identity.generate()
    ks = Keystore(settings.keystore_path)
    return ks.load_or_create(settings.key or default_key, read_passphrase_file(args.passphrase_file))


def setup_logging(level: str, s: Settings | None = None) -> None:
    """Our log lines at `level`, human or JSON, to stderr or a rotating file (settings `log_*`). libp2p's own
    records (e.g. one ERROR per failed redial) are counted, not printed, unless `--log-level debug`: without
    a handler Python's last-resort handler would print them."""

    try:
        if s is None:
            logs.configure(level)
        else:
            logs.configure(level, s.log_format, s.log_file, s.log_max_mib, s.log_backups)
    except OSError as e:
        raise UserError(f"cannot open the log file {s.log_file if s else ''}: {e.strerror}") from None
    except ValueError as e:  # an unknown level name
        raise UserError(f"--log-level {level!r}: {e}") from None
    count_library_logs(level.lower() == "debug")


def write_ready(path: str | None, info: dict) -> None:
    if not path:
        return
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text(json.dumps(info))
    os.replace(tmp, path)


async def closed_after(body):
    """Run `body(closing)`, then call each closer it registered in `closing` — after the node it runs (and every
    handler that writes to a log) has stopped, so no late gossip handler writes to a closed log."""
    closing: list = []
    try:
        return await body(closing)
    finally:
        for close in closing:
            close()


async def until_signalled(cancel_scope: trio.CancelScope) -> None:
    """SIGTERM / SIGINT -> cancel the daemon's scope (clean shutdown: host closed first)."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as sigs:
        async for _ in sigs:
            cancel_scope.cancel()
            return
