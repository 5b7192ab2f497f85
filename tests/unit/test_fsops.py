"""fsops against real files on real filesystems (two tmpfs mounts give the pool boundary, EXDEV)."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import time

import blake3
import pytest

from qbhook.catalog.store import Catalog
from qbhook.errors import UnsafeOperation, VerificationFailed
from qbhook.move import fsops
from tests.helpers import write

# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def tmpfs(tmp_path):
    """mount(name, size) -> a fresh tmpfs at tmp_path/name; all unmounted afterwards."""
    mounts = []

    def mount(name: str, size: str = "64M"):
        d = tmp_path / name
        d.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)], capture_output=True, text=True
        )
        if r.returncode != 0:
            pytest.skip(f"cannot mount tmpfs (needs root): {r.stderr.strip()}")
        mounts.append(d)
        return d

    yield mount
    for d in reversed(mounts):
        subprocess.run(["umount", str(d)], capture_output=True)
        if os.path.ismount(d):
            subprocess.run(["umount", "-l", str(d)], capture_output=True)


@pytest.fixture
def fs2(tmpfs, tmp_path):
    """Two pools on two filesystems, each with a seeding root, and a catalog."""
    stash, pool = tmpfs("stash"), tmpfs("pool")
    seed_s, seed_p = stash / "seed", pool / "seed"
    seed_s.mkdir()
    seed_p.mkdir()
    cat = Catalog.open(tmp_path / "cat.sqlite")
    yield stash, pool, seed_s, seed_p, cat
    cat.close()


def b3(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def old(path, age_s: float = 3600):
    t = time.time_ns() - int(age_s * 1e9)
    os.utime(path, ns=(t, t))
    return path


def held_link(res: dict, since: float, kw: dict) -> fsops.HeldLink:
    """The HeldLink the journal gives back for a delete held with ``safe_unlink(**kw)`` that returned ``res``."""
    return fsops.HeldLink(
        res["held_at"],
        since,
        kw["ino"],
        keep_path=str(kw["keep_path"]),
        size=kw.get("size"),
        blake3_hex=kw.get("keep_blake3") or kw.get("blake3_hex"),
        holding=tuple(res["holding"]) if res.get("holding") else None,
    )


def staging_leftovers(folder) -> list:
    d = os.path.join(folder, fsops.STAGING_DIR)
    return os.listdir(d) if os.path.isdir(d) else []


def dead_pid() -> int:
    pid = 4_000_000
    while fsops.pid_alive(pid):
        pid -= 1
    return pid


# --------------------------------------------------------------------------- copy_verified


def test_copy_across_filesystems_verifies_and_preserves_metadata(fs2):
    stash, pool, seed_s, seed_p, cat = fs2
    data = os.urandom(3 * fsops.COPY_BUF + 4321)
    src = old(write(seed_s / "T/movie.mkv", data))
    os.chmod(src, 0o640)
    dst = seed_p / "T/sub/movie.mkv"
    with pytest.raises(OSError) as e:
        os.link(src, seed_p / "probe")
    assert e.value.errno == errno.EXDEV  # really two filesystems

    res = fsops.copy_verified(src, dst, b3(data), len(data), roots=(seed_s, seed_p))
    assert res == {"status": "copied", "bytes_written": len(data), "blake3": b3(data)}
    assert dst.read_bytes() == data
    s, d = os.stat(src), os.stat(dst)
    assert stat.S_IMODE(d.st_mode) == 0o640 and d.st_mtime_ns == s.st_mtime_ns
    assert (d.st_uid, d.st_gid) == (s.st_uid, s.st_gid)
    assert d.st_nlink == 1  # the staged name is gone
    assert not os.path.exists(dst.parent / fsops.STAGING_DIR)
    assert src.read_bytes() == data and os.stat(src).st_mtime_ns == s.st_mtime_ns


def test_copy_is_idempotent_and_never_overwrites(fs2):
    stash, pool, seed_s, seed_p, cat = fs2
    src = write(seed_s / "a.bin", b"payload")
    dst = seed_p / "a.bin"
    assert fsops.copy_verified(src, dst, b3(b"payload"), 7, roots=(seed_s, seed_p))["status"] == "copied"
    ino = os.lstat(dst).st_ino
    again = fsops.copy_verified(src, dst, b3(b"payload"), 7, roots=(seed_s, seed_p))
    assert again["status"] == "present" and again["bytes_written"] == 0
    assert os.lstat(dst).st_ino == ino

    other = write(seed_p / "b.bin", b"PAYLOAD")  # same size, other content
    with pytest.raises(UnsafeOperation, match="different content"):
        fsops.copy_verified(src, other, b3(b"payload"), 7, roots=(seed_s, seed_p))
    assert other.read_bytes() == b"PAYLOAD"


def test_copy_hash_mismatch_leaves_no_destination(fs2):
    stash, pool, seed_s, seed_p, cat = fs2
    src = write(seed_s / "a.bin", b"actual content")
    dst = seed_p / "T/a.bin"
    with pytest.raises(VerificationFailed, match="does not match the plan"):
        fsops.copy_verified(src, dst, b3(b"planned content"), len(b"actual content"), roots=(seed_s, seed_p))
    assert not os.path.lexists(dst)
    assert staging_leftovers(dst.parent) == []
    assert src.read_bytes() == b"actual content"


def test_copy_size_changed_since_planning_refused_before_writing(fs2):
    stash, pool, seed_s, seed_p, cat = fs2
    src = write(seed_s / "a.bin", b"grown content")
    with pytest.raises(VerificationFailed, match="changed since planning"):
        fsops.copy_verified(src, seed_p / "a.bin", b3(b"grown"), 5, roots=(seed_s, seed_p))
    assert not os.path.lexists(seed_p / "a.bin")


def test_copy_real_enospc_leaves_nothing_behind(tmpfs, tmp_path):
    big, tiny = tmpfs("big"), tmpfs("tiny", size="256k")
    data = os.urandom(1024 * 1024)
    src = write(big / "f.bin", data)
    # Refused up front by the free-space check...
    with pytest.raises(OSError) as e:
        fsops.copy_verified(src, tiny / "d/f.bin", b3(data), len(data), roots=(big, tiny))
    assert e.value.errno == errno.ENOSPC and "not enough space" in str(e.value)
    assert not os.path.lexists(tiny / "d/f.bin") and staging_leftovers(tiny / "d") == []


def test_copy_enospc_mid_write_removes_staging(tmpfs, monkeypatch):
    big, tiny = tmpfs("big"), tmpfs("tiny", size="256k")
    data = os.urandom(1024 * 1024)
    src = write(big / "f.bin", data)
    # ...and, when the estimate was wrong (compression, a racing writer), by the kernel mid-copy.
    monkeypatch.setattr(fsops, "_check_free_space", lambda folder, need, reserve: None)
    with pytest.raises(OSError) as e:
        fsops.copy_verified(src, tiny / "d/f.bin", b3(data), len(data), roots=(big, tiny))
    assert e.value.errno == errno.ENOSPC
    assert not os.path.lexists(tiny / "d/f.bin") and staging_leftovers(tiny / "d") == []
    assert os.statvfs(tiny).f_bfree == os.statvfs(tiny).f_blocks  # nothing left allocated
    assert src.read_bytes() == data


def test_copy_simulated_write_error_after_first_chunk(fs2, monkeypatch):
    stash, pool, seed_s, seed_p, cat = fs2
    data = os.urandom(2 * fsops.COPY_BUF + 10)
    src = write(seed_s / "f.bin", data)
    real_write, calls = os.write, []

    def failing_write(fd, buf):
        calls.append(len(buf))
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, buf)

    monkeypatch.setattr(fsops.os, "write", failing_write)
    with pytest.raises(OSError, match="No space"):
        fsops.copy_verified(src, seed_p / "f.bin", b3(data), len(data), roots=(seed_s, seed_p))
    monkeypatch.undo()
    assert not os.path.lexists(seed_p / "f.bin") and staging_leftovers(seed_p) == []
    assert src.read_bytes() == data


def test_copy_cleans_stale_staging_of_dead_process(fs2):
    stash, pool, seed_s, seed_p, cat = fs2
    src = write(seed_s / "a.bin", b"abc")
    sdir = seed_p / "T" / fsops.STAGING_DIR
    sdir.mkdir(parents=True)
    stale = sdir / f"{dead_pid()}.a.bin"
    stale.write_bytes(b"half")
    other = sdir / f"{dead_pid()}.other.bin"  # another destination's leftover: not ours to judge here
    other.write_bytes(b"x")
    fsops.copy_verified(src, seed_p / "T/a.bin", b3(b"abc"), 3, roots=(seed_s, seed_p))
    assert not stale.exists() and other.exists()


def test_copy_killed_between_link_and_unstage_leaves_no_second_link_after_resume(fs2):
    # Killed right after linking the staged file to its destination: the staged name stays as a
    # second link of the copy (nlink 2 reads as a library link). The resume finds the
    # destination present; it must still clean the dead run's staging.
    stash, pool, seed_s, seed_p, cat = fs2
    src = write(seed_s / "a.bin", b"abc")
    dst = seed_p / "T/a.bin"
    pid = os.fork()
    if pid == 0:  # the run that gets killed
        try:
            real_unlink = os.unlink

            def killed(path, *a, dir_fd=None, **kw):
                if dir_fd is not None and os.path.lexists(dst):
                    os._exit(0)
                return real_unlink(path, *a, dir_fd=dir_fd, **kw)

            os.unlink = killed
            fsops.copy_verified(src, dst, b3(b"abc"), 3, roots=(seed_s, seed_p))
        finally:
            os._exit(1)
    assert os.waitpid(pid, 0)[1] == 0
    assert os.stat(dst).st_nlink == 2 and staging_leftovers(dst.parent) == [f"{pid}.a.bin"]

    res = fsops.copy_verified(src, dst, b3(b"abc"), 3, roots=(seed_s, seed_p))
    assert res["status"] == "present"
    assert os.stat(dst).st_nlink == 1 and staging_leftovers(dst.parent) == []
    assert res.after.st_ctime_ns == os.lstat(dst).st_ctime_ns  # the stat vouched for is the one after the clean
    assert dst.read_bytes() == b"abc"


def test_copy_resumed_removes_a_staged_link_of_the_destination_whose_pid_is_alive_again(fs2):
    # The killed run's pid reused by a live process: the staged name is still a spare link of
    # the copy (its inode is the destination's), so it goes all the same; nlink 2 would read
    # as a library link. A staged file of another inode under a live pid is left alone.
    stash, pool, seed_s, seed_p, cat = fs2
    src = write(seed_s / "a.bin", b"abc")
    dst = write(seed_p / "T/a.bin", b"abc")
    staging = dst.parent / fsops.STAGING_DIR
    staging.mkdir(mode=0o700)
    live = os.getppid()  # alive, and not this process
    os.link(dst, staging / f"{live}.a.bin")
    other = write(staging / "1.a.bin", b"abc")  # pid 1 is alive: another inode, not ours to judge
    res = fsops.copy_verified(src, dst, b3(b"abc"), 3, roots=(seed_s, seed_p))
    assert res["status"] == "present" and os.stat(dst).st_nlink == 1
    assert staging_leftovers(dst.parent) == ["1.a.bin"] and other.read_bytes() == b"abc"


# --------------------------------------------------------------------------- staging names of long UTF-8 names

# 250 bytes, a CJK title ending in CJK (3 bytes a character): cut to fit after a 5- or 6-digit pid
# and a dot, older versions' staging name ended in part of a character.
LONG_CJK = ("Film.2021." + "映画" * 40).encode()
PIDS = (7, 4242, 12345, 654321, 4194303)


def utf8only(monkeypatch):
    """A ``utf8only=on`` dataset: a name that is not UTF-8 is refused (EILSEQ), whatever the call."""

    def refusing(real):
        def call(*args, **kw):
            for a in args[:2]:
                if isinstance(a, bytes):
                    try:
                        os.path.basename(a).decode("utf-8")
                    except UnicodeDecodeError:
                        raise OSError(errno.EILSEQ, os.strerror(errno.EILSEQ), a) from None
            return real(*args, **kw)

        return call

    for fn in ("open", "link", "mkdir", "rename"):
        monkeypatch.setattr(os, fn, refusing(getattr(os, fn)))


def short_dead_pid() -> int:
    """A dead pid of 5 digits: the one length whose cut splits ``LONG_CJK`` mid-character."""
    pid = 99_999
    while fsops.pid_alive(pid):
        pid -= 1
    return pid


def old_staging_name(name: bytes, pid: int) -> bytes:
    """The staging name older versions gave: ``<pid>.<name>`` cut at a byte to fit NAME_MAX."""
    prefix = b"%d." % pid
    return prefix + name[: fsops.NAME_MAX - len(prefix)]


@pytest.mark.parametrize("pid", PIDS)
def test_a_long_cjk_names_staging_name_is_utf8_and_fits(monkeypatch, pid):
    assert len(LONG_CJK) == 250
    monkeypatch.setattr(os, "getpid", lambda: pid)
    got = fsops._staging_name(LONG_CJK)
    got.decode("utf-8")  # a utf8only=on dataset takes it
    assert len(got) <= fsops.NAME_MAX and got.startswith(b"%d" % pid)
    assert got != fsops._staging_name(LONG_CJK[:-3] + "字".encode())  # two long names, two staged files


def test_a_short_names_staging_name_keeps_the_shape_older_versions_gave_it(monkeypatch):
    monkeypatch.setattr(os, "getpid", lambda: 4242)
    assert fsops._staging_name(b"film.mkv") == b"4242.film.mkv"


def test_copy_of_a_long_cjk_name_works_where_names_must_be_utf8(fs2, monkeypatch):
    """A 5-digit pid cut ``LONG_CJK`` mid-character: a utf8only=on dataset refused the staged
    file (EILSEQ), so the copy failed on every run."""
    stash, pool, seed_s, seed_p, cat = fs2
    data = b"long-titled payload"
    src = write(seed_s / "T" / os.fsdecode(LONG_CJK), data)
    dst = seed_p / "T" / os.fsdecode(LONG_CJK)
    monkeypatch.setattr(os, "getpid", lambda: 12345)
    utf8only(monkeypatch)
    res = fsops.copy_verified(src, dst, b3(data), len(data), roots=(seed_s, seed_p))
    assert res["status"] == "copied" and dst.read_bytes() == data
    assert os.stat(dst).st_nlink == 1 and staging_leftovers(dst.parent) == []


def test_an_older_versions_stale_staging_of_a_long_name_is_still_cleaned(fs2):
    """Its cut name (valid where the filesystem takes any bytes) is still that copy's leftover."""
    stash, pool, seed_s, seed_p, cat = fs2
    src = write(seed_s / "a.bin", b"abc")
    sdir = seed_p / "T" / fsops.STAGING_DIR
    sdir.mkdir(parents=True, mode=0o700)
    pid = short_dead_pid()
    stale = sdir / os.fsdecode(old_staging_name(LONG_CJK, pid))
    with pytest.raises(UnicodeDecodeError):
        os.fsencode(stale.name).decode("utf-8")  # the shape that split a character
    stale.write_bytes(b"half")
    other = sdir / os.fsdecode(old_staging_name(LONG_CJK[:-3] + b"x" * 5, pid))  # another destination's
    other.write_bytes(b"x")
    fsops.copy_verified(src, seed_p / "T" / os.fsdecode(LONG_CJK), b3(b"abc"), 3, roots=(seed_s, seed_p))
    assert not stale.exists() and other.exists()


def test_an_older_versions_staged_link_of_a_long_named_done_copy_goes_on_resume(fs2):
    """Killed between the link and the unstage, an older version left its cut staged name as a
    second link of the copy: the resume (destination present) still removes it."""
    stash, pool, seed_s, seed_p, cat = fs2
    src = write(seed_s / "a.bin", b"abc")
    dst = write(seed_p / "T" / os.fsdecode(LONG_CJK), b"abc")
    sdir = dst.parent / fsops.STAGING_DIR
    sdir.mkdir(mode=0o700)
    os.link(dst, sdir / os.fsdecode(old_staging_name(LONG_CJK, short_dead_pid())))
    res = fsops.copy_verified(src, dst, b3(b"abc"), 3, roots=(seed_s, seed_p))
    assert res["status"] == "present" and os.stat(dst).st_nlink == 1
    assert not sdir.exists()


def test_copy_makes_the_staged_names_removal_durable(fs2, monkeypatch):
    # fsync of the destination's folder alone could let a power cut bring the staged name back.
    stash, pool, seed_s, seed_p, cat = fs2
    src = write(seed_s / "a.bin", b"abc")
    synced, real_fsync = [], os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd))[1])
    fsops.copy_verified(src, seed_p / "T/a.bin", b3(b"abc"), 3, roots=(seed_s, seed_p))
    assert str(seed_p / "T" / fsops.STAGING_DIR) in synced


def test_copy_never_changes_the_sources_atime(fs2):
    # A library may link the source: reading it for the copy must not write its metadata (relatime
    # would update an atime not newer than its mtime). hashing's flags: O_NOATIME as root.
    if not os.O_NOATIME & fsops.hashing._READ_FLAGS:
        pytest.skip("O_NOATIME needs root")
    stash, pool, seed_s, seed_p, cat = fs2
    src = old(write(seed_s / "a.bin", b"abc" * 1000))
    before = os.stat(src).st_atime_ns
    fsops.copy_verified(src, seed_p / "a.bin", b3(b"abc" * 1000), 3000, roots=(seed_s, seed_p))
    assert os.stat(src).st_atime_ns == before


def test_copy_readback_option(fs2):
    stash, pool, seed_s, seed_p, cat = fs2
    src = write(seed_s / "a.bin", b"abc" * 1000)
    res = fsops.copy_verified(src, seed_p / "a.bin", b3(b"abc" * 1000), 3000, readback=True, roots=(seed_s, seed_p))
    assert res["status"] == "copied"


def test_copy_of_long_name_fits_name_max(fs2):
    stash, pool, seed_s, seed_p, cat = fs2
    name = "n" * 255
    src = write(seed_s / name, b"long")
    assert fsops.copy_verified(src, seed_p / name, b3(b"long"), 4, roots=(seed_s, seed_p))["status"] == "copied"


# --------------------------------------------------------------------------- link_into / make_empty


def test_link_into_links_and_is_idempotent(fs2):
    stash, pool, seed_s, seed_p, cat = fs2
    src = write(seed_p / "A/f.bin", b"data")
    dst = seed_p / "cross-seed/B/f.bin"
    assert fsops.link_into(src, dst, size=4, blake3_hex=b3(b"data"), roots=(seed_s, seed_p))["status"] == "linked"
    assert os.lstat(dst).st_ino == os.lstat(src).st_ino
    assert fsops.link_into(src, dst, size=4, blake3_hex=b3(b"data"), roots=(seed_s, seed_p))["status"] == "already"


def test_link_into_accepts_same_content_other_inode_and_refuses_different(fs2):
    stash, pool, seed_s, seed_p, cat = fs2
    src = write(seed_p / "A/f.bin", b"data")
    same = write(seed_p / "B/f.bin", b"data")
    assert fsops.link_into(src, same, blake3_hex=b3(b"data"), roots=(seed_s, seed_p))["status"] == "present"
    assert (
        fsops.link_into(src, same, roots=(seed_s, seed_p))["status"] == "present"
    )  # content compared without a given hash
    diff = write(seed_p / "C/f.bin", b"DATA")
    with pytest.raises(UnsafeOperation, match="different content"):
        fsops.link_into(src, diff, blake3_hex=b3(b"data"), roots=(seed_s, seed_p))
    assert diff.read_bytes() == b"DATA"
    longer = write(seed_p / "D/f.bin", b"data!")
    with pytest.raises(UnsafeOperation, match="different content"):
        fsops.link_into(src, longer, roots=(seed_s, seed_p))


def test_link_into_across_filesystems_is_refused(fs2):
    stash, pool, seed_s, seed_p, cat = fs2
    src = write(seed_s / "f.bin", b"data")
    with pytest.raises(UnsafeOperation, match="different filesystems"):
        fsops.link_into(src, seed_p / "f.bin", roots=(seed_s, seed_p))
    assert not os.path.lexists(seed_p / "f.bin")


def test_link_into_missing_or_resized_source(fs2):
    stash, pool, seed_s, seed_p, cat = fs2
    with pytest.raises(VerificationFailed, match="missing"):
        fsops.link_into(seed_p / "nope", seed_p / "x", roots=(seed_s, seed_p))
    src = write(seed_p / "f.bin", b"data")
    with pytest.raises(VerificationFailed, match="bytes"):
        fsops.link_into(src, seed_p / "x", size=5, roots=(seed_s, seed_p))


def test_make_empty(fs2):
    stash, pool, seed_s, seed_p, cat = fs2
    dst = seed_p / "T/empty.txt"
    assert fsops.make_empty(dst, roots=(seed_s, seed_p))["status"] == "created" and dst.stat().st_size == 0
    assert fsops.make_empty(dst, roots=(seed_s, seed_p))["status"] == "present"
    data = write(seed_p / "T/data.txt", b"not empty")
    with pytest.raises(UnsafeOperation):
        fsops.make_empty(data, roots=(seed_s, seed_p))
    assert data.read_bytes() == b"not empty"


# --------------------------------------------------------------------------- verify_file


def test_verify_file_hashes_without_catalog(fs2):
    stash, pool, seed_s, seed_p, cat = fs2
    f = write(seed_p / "f", b"content")
    assert fsops.verify_file(f, 7, b3(b"content"), roots=(seed_s, seed_p))
    with pytest.raises(VerificationFailed, match="different content"):
        fsops.verify_file(f, 7, b3(b"CONTENT"), roots=(seed_s, seed_p))
    with pytest.raises(VerificationFailed, match="bytes"):
        fsops.verify_file(f, 8, b3(b"content"), roots=(seed_s, seed_p))
    with pytest.raises(VerificationFailed, match="missing"):
        fsops.verify_file(seed_p / "nope", 1, b3(b"x"), roots=(seed_s, seed_p))
    assert fsops.verify_file(write(seed_p / "e", b""), 0, None, roots=(seed_s, seed_p))
    assert not fsops.file_matches(f, 7, b3(b"other"), roots=(seed_s, seed_p))


def test_verify_file_uses_valid_cached_hash_only(fs2):
    stash, pool, seed_s, seed_p, cat = fs2
    f = old(write(seed_p / "f", b"content"))
    iid = cat.record_path(f, "pool")
    # A (deliberately wrong) cached hash proves the cache is consulted instead of reading.
    cat.store_hash(iid, blake3.blake3(b"cached").digest(), os.lstat(f))
    assert fsops.file_matches(f, 7, b3(b"cached"), cat, roots=(seed_s, seed_p))
    assert not fsops.file_matches(f, 7, b3(b"content"), cat, roots=(seed_s, seed_p))
    # Once the file changes (ctime moves), the cache is ignored and the real content decides.
    os.chmod(f, 0o600)
    assert fsops.file_matches(f, 7, b3(b"content"), cat, roots=(seed_s, seed_p))
    # ... and the fresh hash is cached for the next decision.
    assert cat.inode(iid).hash == blake3.blake3(b"content").digest()


# --------------------------------------------------------------------------- safe_unlink


def _doomed(fs2, data=b"payload"):
    stash, pool, seed_s, seed_p, cat = fs2
    a = write(seed_s / "A/f.bin", data)
    b = seed_s / "cross-seed/B/f.bin"
    b.parent.mkdir(parents=True)
    os.link(a, b)
    keep = write(seed_p / "A/f.bin", data)
    st = os.lstat(a)
    fsid = cat.fsid(cat.fs_for_path(a))
    kw = dict(
        fsid=fsid,
        ino=st.st_ino,
        size=len(data),
        blake3_hex=b3(data),
        keep_path=str(keep),
        keep_blake3=b3(data),
        seeding_links=[str(a), str(b)],
        seeding_roots=[seed_s, seed_p],
        catalog=cat,
    )
    return a, b, keep, kw


def test_safe_unlink_removes_known_links_then_frees(fs2):
    a, b, keep, kw = _doomed(fs2)
    r1 = fsops.safe_unlink(a, **kw)
    assert r1["status"] == "unlinked" and r1["bytes_freed"] == 0 and not a.exists()
    r2 = fsops.safe_unlink(b, **{**kw, "keep_path": str(keep)})
    assert r2["status"] == "unlinked" and r2["bytes_freed"] == 7 and not b.exists()
    assert keep.read_bytes() == b"payload"
    assert fsops.safe_unlink(a, **kw)["status"] == "absent"  # idempotent


def test_safe_unlink_refuses_a_link_written_while_its_content_was_checked(fs2, monkeypatch):
    """Same inode, size and link count, mtime put back: only ctime tells the last look that the
    bytes it is about to unlink are not the ones the content check saw."""
    a, _b, _keep, kw = _doomed(fs2)
    real = fsops._content_unchanged

    def check_then_write(u, parent, name, st, doomed):
        real(u, parent, name, st, doomed)
        with open(a, "r+b") as f:
            f.write(b"PAYLOAD")
        os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))

    monkeypatch.setattr(fsops, "_content_unchanged", check_then_write)
    with pytest.raises(UnsafeOperation, match="changed during the checks"):
        fsops.safe_unlink(a, **kw)
    assert a.read_bytes() == b"PAYLOAD"


def test_safe_unlink_refuses_when_an_external_link_appeared(fs2):
    stash, *_ = fs2
    a, b, keep, kw = _doomed(fs2)
    lib = stash / "media/movies/f.bin"
    lib.parent.mkdir(parents=True)
    os.link(a, lib)  # a library picked it up after planning
    with pytest.raises(UnsafeOperation, match="3 links but only 2"):
        fsops.safe_unlink(a, **kw)
    with pytest.raises(UnsafeOperation, match="links"):
        fsops.safe_unlink(b, **kw)
    # listing the library link as a "seeding link" does not make it one
    with pytest.raises(UnsafeOperation, match="3 links but only 2"):
        fsops.safe_unlink(a, **{**kw, "seeding_links": [str(a), str(b), str(lib)]})
    assert a.exists() and b.exists() and lib.exists()


def test_a_new_link_inside_the_seeding_folders_is_not_blamed_on_a_library(fs2):
    a, b, keep, kw = _doomed(fs2)
    xs = a.parent / "xs-links" / a.name
    xs.parent.mkdir()
    os.link(a, xs)  # cross-seed, linking into the seeding folders after planning
    with pytest.raises(UnsafeOperation, match=r"a new seeding link, e\.g\. a cross-seed, or a library"):
        fsops.safe_unlink(a, **kw)
    assert a.exists() and xs.exists()


def test_safe_unlink_does_not_count_one_link_twice_through_an_alias(fs2, tmp_path):
    stash, pool, seed_s, seed_p, cat = fs2
    a, b, keep, kw = _doomed(fs2)
    alias = tmp_path / "alias"  # the /data/media vs /stash/data/media trap
    alias.mkdir()
    subprocess.run(["mount", "--bind", str(seed_s), str(alias)], check=True)
    try:
        lib = stash / "media/f.bin"
        lib.parent.mkdir(parents=True)
        os.link(a, lib)  # nlink 3: a, b, lib
        links = [str(a), str(alias / "A/f.bin"), str(b)]  # a listed twice under two spellings
        with pytest.raises(UnsafeOperation, match="3 links but only 2"):
            fsops.safe_unlink(a, **{**kw, "seeding_links": links})
        assert a.exists()
    finally:
        subprocess.run(["umount", str(alias)], check=True)


def test_safe_unlink_refuses_missing_or_different_keep(fs2):
    stash, pool, seed_s, seed_p, cat = fs2
    a, b, keep, kw = _doomed(fs2)
    with pytest.raises(UnsafeOperation, match="missing"):
        fsops.safe_unlink(a, **{**kw, "keep_path": str(seed_p / "nope")})
    other = write(seed_p / "X/f.bin", b"PAYLOAD")
    with pytest.raises(VerificationFailed, match="does not verify"):
        fsops.safe_unlink(a, **{**kw, "keep_path": str(other)})
    short = write(seed_p / "Y/f.bin", b"pay")
    with pytest.raises(UnsafeOperation, match="bytes"):
        fsops.safe_unlink(a, **{**kw, "keep_path": str(short)})
    with pytest.raises(UnsafeOperation, match="same inode"):
        fsops.safe_unlink(a, **{**kw, "keep_path": str(b)})
    assert a.exists() and b.exists()


def test_safe_unlink_refuses_outside_seeding_roots_and_wrong_identity(fs2):
    stash, pool, seed_s, seed_p, cat = fs2
    a, b, keep, kw = _doomed(fs2)
    outside = stash / "media/f.bin"
    outside.parent.mkdir(parents=True)
    os.link(a, outside)
    st = os.lstat(outside)
    with pytest.raises(UnsafeOperation, match="not inside a seeding root"):
        fsops.safe_unlink(outside, **{**kw, "ino": st.st_ino, "seeding_links": [str(a), str(b), str(outside)]})
    # A path that only looks inside the seeding root (a symlinked folder leading out) is refused.
    sneaky = seed_s / "sneaky"
    os.symlink(stash / "media", sneaky)
    with pytest.raises(UnsafeOperation, match="not inside a seeding root"):
        fsops.safe_unlink(sneaky / "f.bin", **{**kw, "ino": st.st_ino})
    with pytest.raises(UnsafeOperation, match="no longer the planned file"):
        fsops.safe_unlink(a, **{**kw, "ino": st.st_ino + 1})
    with pytest.raises(UnsafeOperation, match="no longer the planned file"):
        fsops.safe_unlink(a, **{**kw, "fsid": "zfs:12345"})
    assert a.exists() and outside.exists()


def test_safe_unlink_refuses_changed_content_of_doomed_file(fs2):
    a, b, keep, kw = _doomed(fs2)
    with open(a, "r+b") as f:
        f.write(b"PAY")  # same size, same inode, new content
    with pytest.raises(UnsafeOperation, match="content changed"):
        fsops.safe_unlink(a, **kw)
    assert a.exists()


def test_safe_unlink_holding_folder_and_purge(fs2):
    stash, pool, seed_s, seed_p, cat = fs2
    a, b, keep, kw = _doomed(fs2)
    r1 = fsops.safe_unlink(a, **kw, hold_run=7)
    held_a = seed_s / fsops.HOLDING_DIR / "7/A/f.bin"
    assert r1["status"] == "held" and r1["held_at"] == str(held_a) and held_a.exists() and not a.exists()
    # The held name is still a link: unknown to a plain delete (refused) ...
    with pytest.raises(UnsafeOperation, match="links"):
        fsops.safe_unlink(b, **kw)
    # ... known to a delete of the same run, so the sibling can go too.
    r2 = fsops.safe_unlink(b, **kw, hold_run=7)
    assert r2["status"] == "held" and (seed_s / fsops.HOLDING_DIR / "7/cross-seed/B/f.bin").exists()
    held = [held_link(r, time.time(), kw) for r in (r1, r2)]
    assert fsops.purge_holding([seed_s, seed_p], 3600, held=held) == []
    removed = fsops.purge_holding([seed_s, seed_p], 3600, held=held, now=time.time() + 7200)
    assert removed == [str(seed_s / fsops.HOLDING_DIR / "7")]
    assert not (seed_s / fsops.HOLDING_DIR).exists()


def test_safe_unlink_empty_file_without_hash(fs2):
    stash, pool, seed_s, seed_p, cat = fs2
    e = write(seed_s / "A/empty", b"")
    k = write(seed_p / "A/empty", b"")
    st = os.lstat(e)
    r = fsops.safe_unlink(
        e,
        fsid=cat.fsid(cat.fs_for_path(e)),
        ino=st.st_ino,
        size=0,
        keep_path=str(k),
        seeding_links=[str(e)],
        seeding_roots=[seed_s],
        keep_roots=[seed_p],
        catalog=cat,
    )
    assert r["status"] == "unlinked" and not e.exists()


# --------------------------------------------------------------------------- prune


def test_prune_empty_dirs(fs2):
    stash, pool, seed_s, seed_p, cat = fs2
    (seed_s / "cat/T/a/b").mkdir(parents=True)
    (seed_s / "cat/T/c").mkdir(parents=True)
    keep = write(seed_s / "cat/other/x", b"x")
    removed = fsops.prune_empty_dirs(seed_s / "cat/T", seed_s, roots=(seed_s, seed_p))
    assert not (seed_s / "cat/T").exists() and (seed_s / "cat").exists() and keep.exists()
    assert str(seed_s / "cat/T") in removed
    (seed_s / "cat2/T").mkdir(parents=True)
    fsops.prune_empty_dirs(seed_s / "cat2/T", seed_s, roots=(seed_s, seed_p))
    assert not (seed_s / "cat2").exists() and seed_s.exists()  # parents up to, never including, stop_at
    write(seed_s / "full/T/f", b"f")
    fsops.prune_empty_dirs(seed_s / "full/T", seed_s, roots=(seed_s, seed_p))
    assert (seed_s / "full/T/f").exists()
    fsops.prune_empty_dirs(seed_s, seed_s, roots=(seed_s, seed_p))
    assert seed_s.exists()
    with pytest.raises(UnsafeOperation, match="not inside"):
        fsops.prune_empty_dirs(seed_p / "x", seed_s, roots=(seed_s, seed_p))


def test_a_chain_of_thousands_of_nested_empty_folders_is_pruned_to_a_bounded_depth(fs2, monkeypatch):
    """A writer's 1,200 nested empty folders: no RecursionError, and the descriptors held at once
    stay bounded (each level holds its verified folder open); the deep chain is left as it is."""
    stash, pool, seed_s, seed_p, cat = fs2
    (seed_s / "T/empty/a").mkdir(parents=True)
    deep = seed_s / "T/deep"
    deep.mkdir()
    fd = os.open(deep, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(1200):  # one level at a time, relative to the last: past any path length
            os.mkdir("d", dir_fd=fd)
            nxt = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
    finally:
        os.close(fd)
    before = len(os.listdir("/proc/self/fd"))
    most = [0]
    real = fsops.Dir.sub

    def counting(self, name, **kw):
        out = real(self, name, **kw)
        most[0] = max(most[0], len(os.listdir("/proc/self/fd")) - before)
        return out

    monkeypatch.setattr(fsops.Dir, "sub", counting)
    removed = fsops.prune_empty_dirs(seed_s / "T", seed_s, roots=(seed_s, seed_p))
    assert not (seed_s / "T/empty").exists() and str(seed_s / "T/empty/a") in removed
    assert (seed_s / "T/deep").is_dir()  # left: its deepest folders are below the bound
    assert 0 < most[0] <= fsops.PRUNE_MAX_DEPTH + 4, most[0]  # + the root and the walk down to T
    assert len(os.listdir("/proc/self/fd")) == before


def test_sync_filesystem_flushes_the_nearest_existing_folder_reached_from_the_root(fs2, monkeypatch):
    stash, pool, seed_s, seed_p, cat = fs2
    (seed_p / "tv").mkdir()
    flushed = []
    monkeypatch.setattr(fsops, "_syncfs", lambda fd: flushed.append(os.fstat(fd)))
    fsops.sync_filesystem(seed_p / "tv" / "new" / "e1.mkv", (seed_s, seed_p))  # "new" not made yet
    tv = os.stat(seed_p / "tv")
    assert [(st.st_dev, st.st_ino) for st in flushed] == [(tv.st_dev, tv.st_ino)]


def test_sync_filesystem_never_follows_a_folder_swapped_for_a_symlink(fs2, monkeypatch):
    """A folder of the pool's seeding root is a symlink onto the other filesystem: found by its
    path string (7270715), the flush went to that filesystem and the new links on this one were
    left unflushed before the old ones were deleted. Walked from the root it is refused."""
    stash, pool, seed_s, seed_p, cat = fs2
    (seed_p / "tv").symlink_to(seed_s)
    flushed = []
    monkeypatch.setattr(fsops, "_syncfs", lambda fd: flushed.append(os.fstat(fd).st_dev))
    with pytest.raises(UnsafeOperation):
        fsops.sync_filesystem(seed_p / "tv" / "e1.mkv", (seed_s, seed_p))
    assert flushed == []


def test_sync_filesystem_runs(fs2):
    stash, pool, seed_s, seed_p, cat = fs2
    fsops.sync_filesystem(seed_p / "x", (seed_s, seed_p))


def test_new_folders_and_empty_files_belong_to_the_seeding_tree_owner(fs2):
    stash, pool, seed_s, seed_p, cat = fs2
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    os.chown(seed_p, 1234, 2345)
    os.chmod(seed_p, 0o2775)
    src = write(seed_s / "T/a.bin", b"abc")
    os.chown(src, 1234, 2345)
    os.chown(seed_s / "T", 1234, 2345)  # the copy's T/deep is made like its source's folder, T
    os.chmod(seed_s / "T", 0o2775)
    fsops.copy_verified(src, seed_p / "T/deep/a.bin", b3(b"abc"), 3, roots=(seed_s, seed_p))
    fsops.make_empty(seed_p / "T/other/e.txt", roots=(seed_s, seed_p))
    for d in ("T", "T/deep", "T/other"):
        st = os.stat(seed_p / d)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 2345, 0o2775), d
    e = os.stat(seed_p / "T/other/e.txt")
    assert (e.st_uid, e.st_gid, stat.S_IMODE(e.st_mode)) == (1234, 2345, 0o664)  # its folder is group-writable
    a = os.stat(seed_p / "T/deep/a.bin")
    assert (a.st_uid, a.st_gid) == (1234, 2345)


def test_safe_unlink_refuses_a_path_inside_a_staging_folder(fs2):
    # Review finding: safe_unlink refused paths in .qbhook-holding only; a staged copy in
    # flight (.qbhook-staging) is qbhook's own file too (fsops.in_own_folder, one home).
    _stash, _pool, seed_s, _seed_p, _cat = fs2
    a, b, _keep, kw = _doomed(fs2)
    staged = seed_s / ".qbhook-staging/f.bin"
    staged.parent.mkdir(mode=0o700)
    os.link(a, staged)
    kw = {**kw, "seeding_links": [str(a), str(b), str(staged)]}
    with pytest.raises(UnsafeOperation, match="own folders"):
        fsops.safe_unlink(staged, **kw)
    assert staged.exists()
