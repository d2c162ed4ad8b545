"""Lock files (net/host.lock_file, private_dir): in a shared temp directory another user may plant links or
make the directory first; a lock never follows a link and never lives in a directory others can write."""

from __future__ import annotations

import os

import pytest

from gtracd.errors import UserError
from gtracd.net.host import lock_file, private_dir


def test_a_lock_is_exclusive_and_records_its_holder(tmp_path):
    f = lock_file(tmp_path / "a.lock", lambda pid: f"held by {pid}")
    assert (tmp_path / "a.lock").read_text() == str(os.getpid())
    with pytest.raises(UserError, match=f"held by {os.getpid()}"):
        lock_file(tmp_path / "a.lock", lambda pid: f"held by {pid}")
    f.close()


def test_a_planted_symlink_is_refused_and_its_target_untouched(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "p.lock").symlink_to(victim)
    with pytest.raises(UserError, match="symbolic link"):
        lock_file(tmp_path / "p.lock", lambda pid: "busy")
    assert victim.read_text() == "precious"


def test_a_directory_others_can_write_or_own_is_refused(tmp_path):
    assert private_dir(tmp_path / "mine") == tmp_path / "mine"
    assert (os.stat(tmp_path / "mine").st_mode & 0o777) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(UserError, match="others cannot write"):
        private_dir(shared)
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(UserError):
        private_dir(tmp_path / "link")  # a link to a directory is not the directory
    if os.getuid() == 0:  # root can hand a directory to another user, as an attacker would have made it
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, 65534, 65534)
        with pytest.raises(UserError, match="owned by this user"):
            private_dir(theirs)
