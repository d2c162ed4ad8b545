#!/usr/bin/env python3
"""What a phone (Termux, Android arm64) must compile to run a gtracd seeker or anchor, checked against the
package registry; and the phone install profile (docs/termux-requirements.txt) kept current.

    python .ci/phone_check.py            # check: fails if a package of the profile would have to compile on
                                         # a phone and is not known to build there, or if the base install
                                         # gained a dependency the profile does not account for
    python .ci/phone_check.py --write    # regenerate docs/termux-requirements.txt (then review the diff)

The phone set is the base install (`pip install .`, resolved here with pip's own resolver), minus what the
profile leaves out: packages libp2p imports eagerly but gtracd never calls (gtracd.net.standins supplies
stand-ins when they are missing), packages libp2p declares but never imports, and what Termux ships as
`pkg` packages. For every package of the profile (at the version it pins), PyPI's file list says whether a
wheel installs on Termux's Python (pure, or an `android_<=24_arm64_v8a` wheel for its CPython); those without
must compile on the phone. New releases of a dependency do not fail the check (the profile pins versions);
a new dependency does.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import re
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from packaging import tags
from packaging.utils import canonicalize_name, parse_wheel_filename

ROOT = Path(__file__).resolve().parent.parent
REQS = ROOT / "docs" / "termux-requirements.txt"
PHONE_PYTHON = (3, 13)  # the newest CPython libp2p 0.8.1 declares support for (Termux has moved on to 3.14)
ANDROID_API = 24  # Termux's minimum
sys.path.insert(0, str(ROOT))
from gtracd.net.standins import NEVER_CALLED  # noqa: E402  (import names, mapped to distributions below)

# distributions left out because libp2p's features that need them get stand-ins (with their exclusive deps)
STOOD_IN = {"coincurve", "fastecdsa", "pycryptodome", "aioquic", "pylsqpack", "pyopenssl", "service-identity",
            "miniupnpc", "blake3", "cbor2", "mmh3"}
IMPORT_TO_DIST = {"Crypto": "pycryptodome"}  # the stand-ins' import names whose distribution differs
NEVER_IMPORTED = {"grpcio", "lru-dict", "rpcudp", "u-msgpack-python", "mypy-protobuf", "types-protobuf",
                  "types-requests"}
FROM_TERMUX = {  # `pkg install` gives these prebuilt; pip must not rebuild them
    "cryptography": "python-cryptography", "psutil": "python-psutil", "msgpack": "python-msgpack"}
# what compiles on the phone today, and how (docs/termux.md); a package not listed here fails the check
KNOWN_TO_COMPILE = {
    "pynacl": "C against Termux's libsodium: SODIUM_INSTALL=system",
    "cffi": "C (clang), needs libffi: pkg install libffi",
    "varint": "sdist only, pure Python: builds a wheel in seconds",
    "python-baseconv": "sdist only, pure Python: builds a wheel in seconds",
    "zeroconf": "sdist; SKIP_CYTHON=1 builds its pure-Python wheel in ~5 s (no .so; measured here)",
}


def resolve_base() -> list[tuple[str, str]]:
    """(distribution, version) of everything `pip install .` would install, from pip's resolver."""
    with tempfile.TemporaryDirectory() as d:
        report = Path(d) / "report.json"
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--dry-run", "--ignore-installed",
                        "--report", str(report), str(ROOT)], check=True, stderr=subprocess.DEVNULL)
        items = json.loads(report.read_text())["install"]
    return sorted((canonicalize_name(i["metadata"]["name"]), i["metadata"]["version"]) for i in items)


def phone_set(base: list[tuple[str, str]]) -> list[tuple[str, str]]:
    left_out = STOOD_IN | NEVER_IMPORTED | set(FROM_TERMUX) | {"gtracd", "libp2p"}
    missing = {canonicalize_name(IMPORT_TO_DIST.get(m, m)) for m in NEVER_CALLED} - STOOD_IN
    if missing:
        raise SystemExit(f"gtracd.net.standins stands in for {sorted(missing)}, which this check does not leave "
                         "out: update STOOD_IN")
    return [(n, v) for n, v in base if n not in left_out]


def phone_tags() -> set[tags.Tag]:
    plats = list(tags.android_platforms(api_level=ANDROID_API, abi="arm64_v8a"))
    return set(tags.cpython_tags(PHONE_PYTHON, platforms=plats)) | set(tags.compatible_tags(PHONE_PYTHON,
                                                                                              platforms=plats))


def wheels_for(name: str, version: str) -> list[str]:
    req = urllib.request.Request(f"https://pypi.org/simple/{name}/",
                                 headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        files = json.load(r)["files"]
    out = []
    for f in files:
        fn = f["filename"]
        if fn.endswith(".whl"):
            _, ver, _, _ = parse_wheel_filename(fn)
            if str(ver) == version:
                out.append(fn)
    return out


def installs_on_phone(wheels: list[str], ok: set[tags.Tag]) -> bool:
    return any(parse_wheel_filename(w)[3] & ok for w in wheels)


def requirements_text(phone: list[tuple[str, str]]) -> str:
    head = ["# The phone install profile: a gtracd seeker or anchor under Termux (docs/termux.md).",
            "# Generated by .ci/phone_check.py --write from the base install; do not edit by hand.",
            "# Install with: pip install --no-deps -r docs/termux-requirements.txt",
            "# Left out: " + ", ".join(sorted(STOOD_IN)) + " (stand-ins, gtracd/net/standins.py);",
            "#   " + ", ".join(sorted(NEVER_IMPORTED)) + " (never imported);",
            "#   " + ", ".join(sorted(FROM_TERMUX)) + " (pkg install " + " ".join(sorted(FROM_TERMUX.values())) + ")."]
    return "\n".join(head + ["libp2p==0.8.1"] + [f"{n}=={v}" for n, v in phone]) + "\n"


def pinned() -> list[tuple[str, str]]:
    """The profile's pins (without libp2p, installed first)."""
    out = []
    for line in REQS.read_text().splitlines() if REQS.exists() else []:
        m = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)", line.strip())
        if m and canonicalize_name(m[1]) != "libp2p":
            out.append((canonicalize_name(m[1]), m[2]))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="regenerate docs/termux-requirements.txt")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    resolved = phone_set(resolve_base())
    if args.write:
        REQS.write_text(requirements_text(resolved))
    phone = pinned()
    unaccounted = sorted({n for n, _ in resolved} - {n for n, _ in phone})
    ok = phone_tags()
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        wheels = dict(zip(phone, ex.map(lambda nv: wheels_for(*nv), phone), strict=True))
    compile_ = sorted(n for (n, v), ws in wheels.items() if not installs_on_phone(ws, ok))
    new = [n for n in compile_ if n not in KNOWN_TO_COMPILE]
    gone = sorted(set(KNOWN_TO_COMPILE) - set(compile_))
    result = {"python": ".".join(map(str, PHONE_PYTHON)), "android_api": ANDROID_API, "packages": len(phone),
              "compile_on_phone": {n: KNOWN_TO_COMPILE.get(n, "NEW: not known to build on Termux")
                                   for n in compile_},
              "from_termux_pkg": FROM_TERMUX, "stood_in": sorted(STOOD_IN), "never_imported": sorted(NEVER_IMPORTED),
              "new": new, "no_longer_compiled": gone, "unaccounted_dependencies": unaccounted}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"phone profile: {len(phone)} packages for CPython {result['python']} on android_{ANDROID_API}_arm64_v8a")
        for n in compile_:
            print(f"  compiles on the phone: {n}: {result['compile_on_phone'][n]}")
        print(f"  from Termux pkg: {', '.join(sorted(FROM_TERMUX.values()))}")
        print(f"  left out (stand-ins): {', '.join(sorted(STOOD_IN))}")
        if gone:
            print(f"  no longer compiled (drop from KNOWN_TO_COMPILE): {', '.join(gone)}")
    if new:
        print(f"FAIL: new package(s) would have to compile on a phone: {', '.join(new)} "
              "(find an Android wheel, a stand-in, or document the build in docs/termux.md and KNOWN_TO_COMPILE)")
    if unaccounted:
        print(f"FAIL: the base install gained dependencies the phone profile does not account for: "
              f"{', '.join(unaccounted)} (python .ci/phone_check.py --write, then review)")
    return 1 if new or unaccounted else 0


if __name__ == "__main__":
    sys.exit(main())
