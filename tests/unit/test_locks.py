import errno
import os
import stat
import subprocess
import sys
import time

import pytest

from qbhook.errors import ExitCode, LockBusy, LockFileError, LockFolderUnsafe, UnsafeOperation
from qbhook.move.locks import Lock, executor_lock, group_lock, lock_dir
from tests.helpers import make_config


@pytest.fixture
def cfg(tmp_path):
    stash, pool = tmp_path / "stash", tmp_path / "pool"
    return make_config(tmp_path / "cat.sqlite", stash, pool)


def test_lock_dir_defaults_beside_the_catalog_and_honours_config(cfg, tmp_path):
    assert lock_dir(cfg) == tmp_path / "cat.sqlite.locks"
    from dataclasses import replace

    assert lock_dir(replace(cfg, lock_dir=tmp_path / "locks")) == tmp_path / "locks"


def test_second_holder_gets_lock_busy_naming_the_pid(cfg):
    with executor_lock(cfg) as held:
        assert held.held
        with pytest.raises(LockBusy, match=f"held by pid {os.getpid()}") as e:
            executor_lock(cfg).acquire()
        assert e.value.exit_code == 75
    with executor_lock(cfg):  # released: free again
        pass


def test_lock_busy_across_processes_names_the_holder(cfg):
    code = (
        "import sys, time\nfrom qbhook.move.locks import executor_lock\nfrom tests.helpers import make_config\n"
        "from pathlib import Path\n"
        f"cfg = make_config(Path({str(cfg.catalog)!r}), Path('/s'), Path('/p'))\n"
        "with executor_lock(cfg):\n    print('ready', flush=True)\n    sys.stdin.readline()\n"
    )
    p = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    try:
        assert p.stdout.readline().strip() == "ready"
        with pytest.raises(LockBusy, match=f"pid {p.pid}"):
            executor_lock(cfg).acquire()
    finally:
        p.stdin.close()
        p.wait(timeout=10)
    # the holder exited: the kernel dropped its lock, no stale lock file blocks us
    with executor_lock(cfg):
        pass


def test_wait_with_timeout_polls_then_gives_up(cfg):
    now = [0.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    with executor_lock(cfg), pytest.raises(LockBusy):
        executor_lock(cfg, wait=2.0, sleep=sleep, clock=lambda: now[0]).acquire()
    assert slept and sum(slept) >= 2.0 and max(slept) <= 0.5


def test_wait_succeeds_when_released_meanwhile(cfg):
    holder = executor_lock(cfg).acquire()

    def sleep(s):
        holder.release()

    lock = executor_lock(cfg, wait=5.0, sleep=sleep).acquire()
    assert lock.held
    lock.release()


def test_group_locks_are_per_group_and_independent_of_the_executor_lock(cfg):
    with (
        executor_lock(cfg),
        group_lock(cfg, "g1"),
        group_lock(cfg, "g/2: odd id"),
        pytest.raises(LockBusy, match="group g1"),
    ):
        group_lock(cfg, "g1").acquire()
    files = sorted(os.listdir(lock_dir(cfg)))
    assert "executor.lock" in files and all("/" not in f for f in files) and len(files) == 3


def test_release_is_idempotent_and_reacquire_guarded(tmp_path):
    lock = Lock(tmp_path / "x.lock", "x").acquire()
    with pytest.raises(RuntimeError):
        lock.acquire()
    lock.release()
    lock.release()
    assert (tmp_path / "x.lock").read_text() == ""  # no stale pid left for the next reader


def test_blocking_wait_true(cfg):
    # wait=True blocks in flock; with nobody holding it returns at once
    t0 = time.monotonic()
    with executor_lock(cfg, wait=True):
        pass
    assert time.monotonic() - t0 < 1


@pytest.mark.parametrize("planted", ["symlink", "hardlink", "fifo", "folder"])
def test_a_lock_file_that_is_not_a_plain_file_of_ours_is_refused_and_nothing_is_written(cfg, tmp_path, planted):
    # Review finding 3: the lock file was opened following a symlink and truncated for the pid;
    # with lock_dir somewhere others can write (/run/lock), qbhook as root emptied any file.
    victim = tmp_path / "shadow"
    victim.write_bytes(b"root:secret\n")
    locks = lock_dir(cfg)
    locks.mkdir()
    name = locks / "executor.lock"
    if planted == "symlink":
        name.symlink_to(victim)
    elif planted == "hardlink":
        os.link(victim, name)
    elif planted == "fifo":
        os.mkfifo(name)
    else:
        name.mkdir()
    with pytest.raises(UnsafeOperation, match=f"lock file {name}: it is .*lock_dir must not be writable") as e:
        executor_lock(cfg).acquire()
    assert "\n" not in str(e.value)
    assert victim.read_bytes() == b"root:secret\n"
    assert os.listdir(tmp_path / "cat.sqlite.locks") == ["executor.lock"]


# A lock folder qbhook cannot use was a PermissionError or FileExistsError traceback from resume,
# holding --purge-expired, orphans --quarantine. Tests run as root, which a read-only folder does
# not stop: the refusal the kernel gives a non-root user (EACCES) or any user of an immutable
# folder (EPERM) is injected instead.


def test_a_regular_file_where_the_lock_folder_should_be_is_one_line_naming_it(cfg):
    locks = lock_dir(cfg)
    locks.write_text("not a folder")
    with pytest.raises(LockFileError) as e:
        executor_lock(cfg).acquire()
    assert e.value.message == f"cannot use lock folder {locks}: it is not a folder"
    assert e.value.exit_code == ExitCode.IO_ERROR
    assert locks.read_text() == "not a folder"


@pytest.mark.parametrize("code", [errno.EACCES, errno.EPERM, errno.EROFS])
def test_a_lock_folder_that_cannot_be_made_is_one_line_naming_it(cfg, monkeypatch, code):
    def refuse(path, mode=0o777):
        raise OSError(code, os.strerror(code), path)

    monkeypatch.setattr(os, "mkdir", refuse)
    with pytest.raises(LockFileError) as e:
        executor_lock(cfg).acquire()
    assert e.value.message == f"cannot make lock folder {lock_dir(cfg)}: {os.strerror(code)}"
    assert e.value.exit_code == ExitCode.IO_ERROR


@pytest.mark.parametrize("code", [errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC])
def test_a_lock_file_that_cannot_be_opened_is_one_line_naming_it(cfg, monkeypatch, code):
    lock_dir(cfg).mkdir()
    real_open = os.open

    def refuse(path, flags, *a, **kw):
        if str(path).endswith(".lock"):
            raise OSError(code, os.strerror(code), path)
        return real_open(path, flags, *a, **kw)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(LockFileError) as e:
        group_lock(cfg, "g1").acquire()
    assert e.value.message.startswith(f"cannot open lock file {lock_dir(cfg)}/group-g1-")
    assert e.value.message.endswith(f".lock: {os.strerror(code)}")
    assert "\n" not in e.value.message and e.value.exit_code == ExitCode.IO_ERROR


def test_a_lock_file_that_cannot_be_written_is_one_line_and_leaves_no_descriptor(cfg, monkeypatch):
    def full(fd, data, offset):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "pwrite", full)
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(LockFileError, match=f"cannot write lock file {lock_dir(cfg)}/executor.lock: No space"):
        executor_lock(cfg).acquire()
    assert len(os.listdir("/proc/self/fd")) == before
    monkeypatch.undo()
    with executor_lock(cfg):  # the failed attempt let go of its flock
        pass


# R48: the lock folder and its files were made with the umask (0775 and 0664 under umask 002, a
# media-group setup) and the folder was never looked at: a group member renamed executor.lock
# away and put their own file at its name, and the next executor locked that file while the
# first still ran; and flock works on a read-only descriptor, so anyone who could read a 0644
# lock file could hold it and stop every executor.


@pytest.fixture
def umask_002():
    old = os.umask(0o002)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_the_lock_folder_is_made_0700_and_lock_files_0600_whatever_the_umask(cfg, umask_002):
    with executor_lock(cfg), group_lock(cfg, "g1"):
        pass
    locks = lock_dir(cfg)
    assert _mode(locks) == 0o700
    assert sorted({_mode(locks / n) for n in os.listdir(locks)}) == [0o600]


def test_a_folder_and_files_an_older_qbhook_left_loose_are_narrowed_when_ours(cfg, umask_002):
    locks = lock_dir(cfg)
    locks.mkdir(mode=0o775)
    (locks / "executor.lock").write_text("")
    os.chmod(locks / "executor.lock", 0o644)
    with executor_lock(cfg):
        assert _mode(locks) == 0o700 and _mode(locks / "executor.lock") == 0o600


def test_a_file_planted_at_the_lock_name_while_the_lock_is_held_is_refused(cfg, umask_002):
    # The swap, replayed: A holds executor.lock; someone renames it away and puts a file of
    # their own at the name; B must not lock that file and run beside A.
    locks = lock_dir(cfg)
    locks.mkdir(mode=0o775)  # as an older qbhook made it under umask 002
    a = executor_lock(cfg).acquire()
    try:
        os.rename(locks / "executor.lock", locks / "old")
        (locks / "executor.lock").write_text("")
        os.chown(locks / "executor.lock", 65534, 65534)
        with pytest.raises(UnsafeOperation, match="executor.lock: it is owned by uid 65534, not this user") as e:
            executor_lock(cfg).acquire()
        assert "\n" not in e.value.message and a.held
    finally:
        a.release()


@pytest.mark.parametrize("loose", ["group-writable", "world-writable", "sticky 1777"])
def test_a_configured_lock_dir_others_can_write_is_refused_untouched(cfg, tmp_path, loose):
    from dataclasses import replace

    folder = tmp_path / "locks"
    folder.mkdir()
    mode = {"group-writable": 0o775, "world-writable": 0o777, "sticky 1777": 0o1777}[loose]
    os.chmod(folder, mode)
    with pytest.raises(LockFolderUnsafe) as e:
        executor_lock(replace(cfg, lock_dir=folder)).acquire()
    assert e.value.message == f"refusing lock folder {folder}: its mode {mode:04o} lets other users write it"
    assert e.value.exit_code == ExitCode.CONFIG
    assert os.listdir(folder) == [] and stat.S_IMODE(os.stat(folder).st_mode) == mode  # an admin's folder: not chmod-ed


@pytest.mark.parametrize("configured", [False, True])
def test_a_lock_folder_another_user_owns_is_refused_never_narrowed(cfg, tmp_path, configured):
    from dataclasses import replace

    folder = tmp_path / "locks" if configured else lock_dir(cfg)
    folder.mkdir(mode=0o700)
    os.chmod(folder, 0o775)
    os.chown(folder, 65534, 65534)
    with pytest.raises(LockFolderUnsafe, match=f"^refusing lock folder {folder}: it is owned by uid 65534, not"):
        executor_lock(replace(cfg, lock_dir=folder if configured else None)).acquire()
    assert os.listdir(folder) == [] and _mode(folder) == 0o775


@pytest.mark.parametrize("configured", [False, True])
@pytest.mark.parametrize("target", ["folder", "missing", "file"])
def test_a_symlink_at_the_lock_folder_name_is_refused_not_followed(cfg, tmp_path, configured, target):
    # R62: README says a symlinked lock folder is refused with exit 78, as a loose or foreign one;
    # it was LockFileError (74), and a dangling one read "not a folder".
    from dataclasses import replace

    elsewhere = tmp_path / "elsewhere"
    if target == "folder":
        elsewhere.mkdir(mode=0o700)
    elif target == "file":
        elsewhere.write_text("")
    cfg = replace(cfg, lock_dir=tmp_path / "locks") if configured else cfg
    lock_dir(cfg).symlink_to(elsewhere)
    with pytest.raises(LockFolderUnsafe) as e:
        executor_lock(cfg).acquire()
    assert e.value.message == f"refusing lock folder {lock_dir(cfg)}: it is a symbolic link"
    assert e.value.exit_code == ExitCode.CONFIG and "real folder" in e.value.hint
    assert os.listdir(elsewhere) == [] if target == "folder" else not elsewhere.is_dir()


@pytest.mark.parametrize("mode", [0o775, 0o757, 0o1777])
def test_a_catalog_folder_others_can_write_is_refused_when_it_holds_the_lock_folder(tmp_path, mode):
    """Another user who can write the catalog's folder renames <catalog>.locks away while an
    executor holds its lock; the next executor makes a new folder and runs beside the first. The
    folder is refused by the lock folder's rule (78), untouched; with lock_dir set elsewhere it
    holds no lock folder and is not asked about."""
    from dataclasses import replace

    from qbhook.errors import CatalogFolderUnsafe

    folder = tmp_path / "var"
    folder.mkdir()
    os.chmod(folder, mode)
    cfg = make_config(folder / "cat.sqlite", tmp_path / "stash", tmp_path / "pool")
    with pytest.raises(CatalogFolderUnsafe) as e:
        executor_lock(cfg).acquire()
    assert e.value.message == f"refusing catalog folder {folder}: its mode {mode:04o} lets other users write it"
    assert isinstance(e.value, LockFolderUnsafe) and e.value.exit_code == ExitCode.CONFIG
    assert os.listdir(folder) == [] and _mode(folder) == mode
    locks = tmp_path / "locks"
    locks.mkdir(mode=0o700)
    with executor_lock(replace(cfg, lock_dir=locks)), group_lock(replace(cfg, lock_dir=locks), "g1"):
        pass


def test_a_catalog_folder_another_user_owns_is_refused_and_a_private_one_is_fine(tmp_path):
    from qbhook.errors import CatalogFolderUnsafe

    folder = tmp_path / "var"
    folder.mkdir(mode=0o755)
    cfg = make_config(folder / "cat.sqlite", tmp_path / "stash", tmp_path / "pool")
    with group_lock(cfg, "g1"):
        pass
    if os.geteuid() == 0:  # giving a folder to another user takes root
        os.chown(folder, 65534, 65534)
        with pytest.raises(CatalogFolderUnsafe, match=f"^refusing catalog folder {folder}: it is owned by uid 65534"):
            group_lock(cfg, "g1").acquire()
