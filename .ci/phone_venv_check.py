#!/usr/bin/env python3
"""The phone-profile venv is what it claims: no torch, none of the left-out compiled packages installed, and
libp2p imports with stand-ins in their place."""

import sys

from gtracd.net import standins

real = [m for m in ("torch", "transformers", *standins.NEVER_CALLED) if standins.installed(m)]
if real:
    sys.exit(f"the phone profile must not install {real}")

import libp2p  # noqa: E402,F401  (its eager imports need the stand-ins)

import gtracd.net.host  # noqa: E402,F401

if not standins.USED:
    sys.exit("libp2p imported without any stand-in: the profile is not what the check expects")
print(f"phone venv ok: libp2p imports with stand-ins for {', '.join(sorted(standins.USED))}")
