import json
import os
import subprocess
import sys

import pytest

from gtracd.cli.main import main


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for k in list(os.environ):
        if k.startswith("GTRACD_"):
            monkeypatch.delenv(k)
    return tmp_path


def test_keys_flow_end_to_end(home, capsys):
    pw = home / "pw"
    pw.write_text("s3cret\n")
    assert main(["keys", "gen", "alice"]) == 0
    assert main(["keys", "gen", "bob", "--passphrase-file", str(pw)]) == 0
    assert (home / ".gtracd" / "keys" / "alice.key").stat().st_mode & 0o777 == 0o600
    capsys.readouterr()
    assert main(["keys", "list"]) == 0
    out = capsys.readouterr().out
    assert "alice" in out and "bob" in out
    assert main(["keys", "show", "alice", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["peer_id"].startswith("12D3KooW")
    assert main(["keys", "export", "alice", "--public", "-o", str(home / "alice.pub")]) == 0
    assert main(["keys", "trust-anchor", str(home / "alice.pub")]) == 0
    capsys.readouterr()
    assert main(["keys", "anchors"]) == 0
    assert info["peer_id"] in capsys.readouterr().out
    assert main(["keys", "rm", "alice"]) == 0
    assert main(["keys", "import", str(home / "alice.pub"), "--name", "alice-pub"]) == 0
    assert main(["keys", "show", "alice-pub", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["peer_id"] == info["peer_id"]


@pytest.mark.parametrize("argv,msg", [
    (["keys", "gen", "a", "--passphrase-file", "/nonexistent"], "cannot read passphrase file"),
    (["keys", "show", "nobody"], "no key named"),
    (["keys", "export", "nobody"], "only public keys"),
    (["keys", "frobnicate"], "invalid choice"),
    (["--role", "pilot"], "unknown role"),
    (["--role"], "needs a value"),
    (["--role", "anchor", "--ephemeral", "--name", "../escape"], "without / or"),  # names become file names
    (["--role", "seeker", "--name", "a\x1b]0;x\x07b", "serve"], "printable"),  # and are shown to people
    # the HTTP API: beyond loopback only with a key; the key file must hold one
    (["--role", "seeker", "--ephemeral", "serve", "--http", "0.0.0.0:18080"], "--api-key-file"),
    (["--role", "seeker", "--ephemeral", "serve", "--http", "localhost"], "HOST:PORT"),
    (["--role", "seeker", "--ephemeral", "serve", "--http", "0.0.0.0:18080", "--api-key-file", "/nonexistent"],
     "cannot read --api-key-file"),
])
def test_user_errors_are_one_line_exit_2(home, capsys, argv, msg):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1 and "Traceback" not in err


def test_wrong_passphrase_is_one_clear_line(home, capsys):
    (home / "pw").write_text("right")
    (home / "bad").write_text("wrong")
    assert main(["keys", "gen", "k", "--passphrase-file", str(home / "pw")]) == 0
    from gtracd.identity import Keystore, read_passphrase_file

    with pytest.raises(Exception, match="wrong passphrase"):
        Keystore(home / ".gtracd" / "keys").load("k", read_passphrase_file(str(home / "bad")))


def test_config_show_sources(home, capsys, monkeypatch):
    cfg = home / "g.toml"
    cfg.write_text('trust_floor = 0.9\n[worker]\nmax_sessions = 3\n')
    monkeypatch.setenv("GTRACD_HEARTBEAT_S", "2")
    assert main(["--config", str(cfg), "config", "show", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["trust_floor"] == {"value": 0.9, "source": f"file {cfg}"}
    assert data["max_sessions"]["value"] == 3
    assert data["heartbeat_s"] == {"value": 2.0, "source": "env GTRACD_HEARTBEAT_S"}
    assert data["alpha"] == {"value": 0.3, "source": "default"}


def test_config_errors(home, capsys):
    cfg = home / "g.toml"
    cfg.write_text("warp_speed = 9\n")
    assert main(["--config", str(cfg), "config", "show"]) == 2
    assert "unknown setting 'warp_speed'" in capsys.readouterr().err
    cfg.write_text("trust_floor = 'high'\n")
    assert main(["--config", str(cfg), "config", "show"]) == 2


@pytest.mark.procs
@pytest.mark.smoke
def test_console_script_version():
    out = subprocess.run([sys.executable, "-m", "gtracd.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("gtracd ") and "reads 1-3" in out.stdout  # the wire range


@pytest.mark.procs
@pytest.mark.smoke
def test_anchor_and_seeker_run_without_torch():
    """Phones run anchors and seekers with no torch: make torch/transformers unimportable and load them."""
    import subprocess
    import sys

    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'transformers', 'safetensors'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
import gtracd.anchor.main, gtracd.seeker.main, gtracd.control.follower, gtracd.cli.status, gtracd.harness.testbed
import gtracd.benchmarks.ledger, gtracd.cli.demo
from gtracd.cli import main
for argv in (['--role', 'anchor', '--help'], ['--role', 'seeker', 'serve', '--help'], ['status', '--help']):
    try:
        main(argv)
    except SystemExit as e:
        assert e.code == 0, (argv, e.code)
assert 'torch' not in sys.modules
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
