"""The one lock-file rule (qbhook.lockfile): what move.locks and notify's outbox locks both open.

Each caller's wording of a refusal is tested with the caller (test_locks.py, test_notify.py);
here, the rule itself: what is refused, that nothing is written or left open, and the wait."""

from __future__ import annotations

import errno
import fcntl
import os
import stat

import pytest

from qbhook.lockfile import MAX_POLL_S, POLL_S, NotALockFile, flock_within, open_lock_file


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_missing_lock_file_is_made_with_the_mode_given(tmp_path):
    old = os.umask(0)
    try:
        fd = open_lock_file(tmp_path / "x.lock", 0o600)
    finally:
        os.umask(old)
    try:
        st = os.fstat(fd)
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        assert os.get_inheritable(fd) is False  # O_CLOEXEC: a child run by qbhook does not keep the lock
    finally:
        os.close(fd)


@pytest.mark.parametrize("planted", ["symlink", "dangling symlink", "hardlink", "fifo", "folder"])
def test_anything_but_a_plain_file_of_one_link_is_refused_untouched(tmp_path, planted):
    victim = tmp_path / "shadow"
    victim.write_bytes(b"root:secret\n")
    name = tmp_path / "x.lock"
    if planted == "symlink":
        name.symlink_to(victim)
    elif planted == "dangling symlink":
        name.symlink_to(tmp_path / "nowhere")  # O_CREAT must not make the file it points to
    elif planted == "hardlink":
        os.link(victim, name)
    elif planted == "fifo":
        os.mkfifo(name)  # O_NONBLOCK: opened at once (nobody writes it), then refused
    else:
        name.mkdir()
    before = _open_fds()
    with pytest.raises((NotALockFile, OSError)) as e:
        open_lock_file(name, 0o644)
    if planted in ("hardlink", "fifo"):  # opened, then judged on its fstat
        assert isinstance(e.value, NotALockFile) and e.value.st.st_ino == os.lstat(name).st_ino
    else:  # refused by open itself: the caller words ELOOP and EISDIR
        assert not isinstance(e.value, NotALockFile)
        assert e.value.errno == (errno.EISDIR if planted == "folder" else errno.ELOOP)
    assert _open_fds() == before
    assert victim.read_bytes() == b"root:secret\n" and not (tmp_path / "nowhere").exists()


def test_own_refuses_another_users_lock_file_and_only_when_asked(tmp_path, monkeypatch):
    name = tmp_path / "x.lock"
    name.touch()
    monkeypatch.setattr(os, "geteuid", lambda: os.lstat(name).st_uid + 1)
    before = _open_fds()
    with pytest.raises(NotALockFile):
        open_lock_file(name, 0o600, own=True)
    assert _open_fds() == before
    os.close(open_lock_file(name, 0o644))  # move.locks' lock_dir is admin config: no owner rule


def test_a_held_lock_times_out_at_the_deadline_polling_with_a_doubling_pause(tmp_path):
    holder = open_lock_file(tmp_path / "x.lock", 0o644)
    fcntl.flock(holder, fcntl.LOCK_EX)
    fd = open_lock_file(tmp_path / "x.lock", 0o644)
    now = [100.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    try:
        assert flock_within(fd, 2.0, clock=lambda: now[0], sleep=sleep) is False
        assert now[0] >= 102.0 and now[0] - 102.0 < MAX_POLL_S  # gave up at the deadline, not long after
        assert slept[0] == POLL_S and max(slept) == MAX_POLL_S and slept == sorted(slept)
        slept.clear()
        assert flock_within(fd, 0, clock=lambda: now[0], sleep=sleep) is False and slept == []  # 0: one try
        slept.clear()
        assert flock_within(fd, 0.3, clock=lambda: now[0], sleep=sleep, max_poll=POLL_S) is False
        assert set(slept) == {POLL_S}  # a fixed pause when the caller caps it (notify)
    finally:
        os.close(holder)
        os.close(fd)


def test_a_lock_released_while_waiting_is_taken(tmp_path):
    holder = open_lock_file(tmp_path / "x.lock", 0o644)
    fcntl.flock(holder, fcntl.LOCK_EX)
    fd = open_lock_file(tmp_path / "x.lock", 0o644)
    try:
        assert flock_within(fd, 5.0, sleep=lambda s: os.close(holder)) is True
        other = os.open(tmp_path / "x.lock", os.O_RDWR)
        with pytest.raises(BlockingIOError):  # fd holds it now
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(other)
    finally:
        os.close(fd)


def test_no_wait_limit_blocks_in_the_kernel_and_takes_a_free_lock(tmp_path):
    fd = open_lock_file(tmp_path / "x.lock", 0o644)
    try:
        assert flock_within(fd, None, sleep=lambda s: pytest.fail("None waits in flock, never polls")) is True
    finally:
        os.close(fd)


def test_an_own_lock_file_more_open_than_the_mode_is_narrowed_relative_to_a_folder_fd(tmp_path):
    # R48: flock works on a read-only descriptor: a 0644 lock file (an older qbhook's) could be
    # held by any user who can read it. Opened by name relative to the caller's checked folder.
    name = tmp_path / "x.lock"
    name.touch()
    os.chmod(name, 0o644)
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.close(open_lock_file("x.lock", 0o644, dir_fd=dir_fd))  # without own: left as it is
        assert stat.S_IMODE(os.stat(name).st_mode) == 0o644
        os.close(open_lock_file("x.lock", 0o600, own=True, dir_fd=dir_fd))
        assert stat.S_IMODE(os.stat(name).st_mode) == 0o600
    finally:
        os.close(dir_fd)
