"""The `gtracd` command: one entry point for every role and tool.

    gtracd --role worker|anchor|seeker [role options]
    gtracd keys|config|route|bench|model|status|top|demo ...

User mistakes print one line `gtracd: error: ...` and exit 2; no tracebacks.
"""

from __future__ import annotations

import argparse
import gc
import json
import signal
import sys
import threading
import warnings
from pathlib import Path

from ..config import FIELDS, load_settings
from ..daemon import lifeline
from ..errors import GtracError, UserError
from ..identity import Keystore, peer_id_from_public, read_passphrase_file
from ..lab import cli as lab_cli
from ..version import __version__
from ..wire.versions import CURRENT, SPEAKS, WIRE
from . import commands, invites, roles
from . import keyring as keyring_cli

ROLES = ("worker", "anchor", "seeker")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one clear line, exit 2
        raise UserError(f"{message} (see: {self.prog} --help)")


def _keystore(args: argparse.Namespace) -> Keystore:
    if getattr(args, "keystore", None):
        return Keystore(args.keystore)
    return Keystore(load_settings(getattr(args, "config", None)).keystore_path)


# ------------------------------------------------------------------ keys


def cmd_keys(args: argparse.Namespace) -> int:
    ks = _keystore(args)
    op = args.keys_cmd
    if op == "gen":
        ident = ks.generate(args.name, read_passphrase_file(args.passphrase_file))
        print(f"{args.name}\t{ident.peer_id}\t{ks.private_path(args.name)}")
    elif op == "list":
        names = ks.names()
        if not names:
            print(f"no keys in {ks.root} (create one: gtracd keys gen NAME)", file=sys.stderr)

        for n in names:
            kind = "private" if (ks.root / f"{n}.key").exists() else "public"
            print(f"{n}\t{peer_id_from_public(ks.public(n))}\t{kind}")
    elif op == "show":
        pub = ks.public(args.name)
        info = {"name": args.name, "peer_id": peer_id_from_public(pub), "public_key": pub.hex(),
                "private": (ks.root / f"{args.name}.key").exists()}
        if args.json:
            print(json.dumps(info))
        else:
            for k, v in info.items():
                print(f"{k:12} {v}")
    elif op == "export":
        if not args.public:
            raise UserError("only public keys are exported (add --public); back up the .key file itself for the private key")
        data = ks.export_public(args.name)
        if args.output:
            Path(args.output).write_bytes(data)
        else:
            sys.stdout.write(data.decode())
    elif op == "import":
        name = ks.import_file(Path(args.file), args.name)
        print(f"imported {name}")
    elif op == "rm":
        ks.remove(args.name)
        print(f"removed {args.name}")
    elif op == "trust-anchor":
        src = args.key
        text = Path(src).read_text() if Path(src).is_file() else src
        pid = ks.trust_anchor(text)
        print(f"trusted anchor {pid}")
    elif op == "anchors":
        anchors = ks.anchors()
        if not anchors:
            print(f"no trusted anchors in {ks.anchors_dir} (add: gtracd keys trust-anchor FILE|PUBKEY)", file=sys.stderr)
        for pid, pub in anchors.items():
            print(f"{pid}\t{pub.hex()}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    s = load_settings(args.config)
    rows = [(n, getattr(s, n), s.sources[n]) for n in FIELDS]
    if args.json:
        print(json.dumps({n: {"value": v, "source": src} for n, v, src in rows}))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title="gtracd effective settings", show_lines=False)
    t.add_column("setting")
    t.add_column("value")
    t.add_column("source")
    for n, v, src in rows:
        t.add_row(n, repr(v), src)
    Console(width=max(100, 0)).print(t)
    return 0


# ------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="gtracd", description="Trust-aware peer-to-peer LLM inference (G-TRAC).",
                epilog="Roles: gtracd --role worker|anchor|seeker --help")
    p.add_argument("--version", action="version",
                   version=f"gtracd {__version__} (wire: writes {WIRE}-{CURRENT}, reads {SPEAKS[0]}-{SPEAKS[1]})")
    p.add_argument("--config", help="TOML settings file (also GTRACD_CONFIG)")
    p.add_argument("--keystore", help="keystore directory (also GTRACD_KEYSTORE; default ~/.gtracd/keys)")
    p.add_argument("--role", choices=ROLES, help="run a daemon; role options follow")
    sub = p.add_subparsers(dest="cmd", parser_class=_Parser)

    k = sub.add_parser("keys", help="manage identities and the trusted-anchor keyring")
    ksub = k.add_subparsers(dest="keys_cmd", required=True, parser_class=_Parser)
    g = ksub.add_parser("gen", help="create a new Ed25519 identity")
    g.add_argument("name")
    g.add_argument("--passphrase-file", help="encrypt the key with the passphrase in this file")
    ksub.add_parser("list", help="list keys")
    s = ksub.add_parser("show", help="peer id and public key of a key")
    s.add_argument("name")
    s.add_argument("--json", action="store_true")
    e = ksub.add_parser("export", help="print a key's public part (a file others can import)")
    e.add_argument("name")
    e.add_argument("--public", action="store_true", help="export the public key (required)")
    e.add_argument("-o", "--output", help="write to this file instead of stdout")
    i = ksub.add_parser("import", help="import a key file (private or public)")
    i.add_argument("file")
    i.add_argument("--name", help="store under this name")
    r = ksub.add_parser("rm", help="delete a key")
    r.add_argument("name")
    t = ksub.add_parser("trust-anchor", help="add an anchor's public key (file or 64 hex) to the keyring")
    t.add_argument("key", metavar="FILE|PUBKEY")
    ksub.add_parser("anchors", help="list trusted anchors")
    keyring_cli.register(ksub)

    c = sub.add_parser("config", help="settings")
    csub = c.add_subparsers(dest="config_cmd", required=True, parser_class=_Parser)
    cs = csub.add_parser("show", help="each effective setting and where it came from")
    cs.add_argument("--json", action="store_true")


    commands.register(sub)
    invites.register(sub)
    lab_cli.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    lifeline.watch_parent()  # started by another gtracd process: end with it
    try:
        if "--role" in argv or any(a.startswith("--role=") for a in argv):
            return _run_role(argv)
        if threading.current_thread() is threading.main_thread():
            lifeline.stop_on_sigterm()  # a tool stopped by SIGTERM stops what it started, as on Ctrl-C
        p = build_parser()
        args = p.parse_args(argv)
        if args.cmd is None:
            p.print_help()
            return 2
        return int(args.func(args) or 0) if hasattr(args, "func") else {"keys": cmd_keys, "config": cmd_config}[args.cmd](args)
    except UserError as e:
        print(f"gtracd: error: {e}", file=sys.stderr)
        return 2
    except GtracError as e:
        print(f"gtracd: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return _interrupted()
    except BrokenPipeError:
        return 0
    except BaseExceptionGroup as eg:  # a user error raised inside a daemon's nursery: say it as one line
        if eg.subgroup(KeyboardInterrupt) is not None:  # Ctrl-C or SIGTERM inside a nursery
            return _interrupted()
        leaf = _first_leaf(eg.subgroup(lambda e: isinstance(e, GtracError)))
        if leaf is None:
            raise
        print(f"gtracd: error: {leaf}", file=sys.stderr)
        return 2 if isinstance(leaf, UserError) else 1


def _interrupted() -> int:
    # the interrupt can land between a task's coroutine being made and trio scheduling it; the coroutine is
    # then never awaited, which is what an interrupt means, not a fault: no warning for it at exit
    warnings.filterwarnings("ignore", message="coroutine .* was never awaited", category=RuntimeWarning)
    gc.collect()
    how = lifeline.stopped_by()
    print(f"gtracd: stopped by {how}" if how != "SIGINT" else "gtracd: interrupted", file=sys.stderr)
    return 128 + getattr(signal, how)


def _first_leaf(eg):
    while isinstance(eg, BaseExceptionGroup):
        eg = eg.exceptions[0]
    return eg


def _run_role(argv: list[str]) -> int:
    rest, role = [], None
    it = iter(range(len(argv)))
    for idx in it:
        a = argv[idx]
        if a == "--role":
            if idx + 1 >= len(argv):
                raise UserError("--role needs a value: worker, anchor or seeker")
            role = argv[idx + 1]
            next(it, None)
        elif a.startswith("--role="):
            role = a.split("=", 1)[1]
        else:
            rest.append(a)
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}: choose worker, anchor or seeker")

    return roles.run(role, rest)


if __name__ == "__main__":
    sys.exit(main())
