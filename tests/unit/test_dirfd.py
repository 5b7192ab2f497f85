"""The read-only fact reader on verified directory descriptors (``qbhook.dirfd``)."""

from __future__ import annotations

import os

import pytest

from qbhook.dirfd import FolderReader, FolderRefused, NotAFolder, entry_key, folder_id, open_below
from tests.helpers import folder_chain, write
from tests.swap import record_looks, swap


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    write(root / "a/b/f.bin", b"inside")
    write(tmp_path / "else/f.bin", b"outside")
    os.symlink(tmp_path / "else", root / "a/link")
    return root, tmp_path / "else"


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_files_are_lstat_ed_through_folders_each_opened_once(tree, monkeypatch):
    root, _else = tree
    ino = os.lstat(root / "a/b/f.bin").st_ino
    looks = record_looks(monkeypatch)
    with FolderReader([root]) as r:
        assert r.lstat(f"{root}/a/b/f.bin").st_ino == ino
        assert r.lstat(f"{root}/a/b/g.bin") is None
        assert r.lstat(f"{root}/a/b/f.bin").st_size == 6
    above = [p for p in looks if not p.startswith(str(root))]
    # the pool root walked to from / (a name below the descriptor of / shows as //name here)
    assert ["/" + p.lstrip("/") for p in above] == ["/", *(str(a) for a in reversed(root.parents[:-1]))]
    looks = looks[len(above) :]
    # the root's parent looked at once, when the root is first pinned (is it a mount point?)
    assert looks[:2] == [str(root), f"{root}/.."]
    looks = looks[2:]
    assert looks[:2] == [f"{root}/a", f"{root}/a/b"]  # each folder opened once, then only the files
    assert looks[2:] == [f"{root}/a/b/f.bin", f"{root}/a/b/g.bin", f"{root}/a/b/f.bin"]


def test_a_folders_identity_is_its_verified_descriptors_fstat_taken_once_and_an_entry_is_it_and_a_name(
    tree, monkeypatch
):
    """``identity``: what a folder is whichever path reaches it (a bind mount), one fstat a folder
    for the reader's life; ``entry``: ``entry_key``, the executor's rule for one link. None for a
    folder that is missing, a symlink (refused: never followed) or under no root."""
    root, _else = tree
    fstats = []
    real = os.fstat
    monkeypatch.setattr(os, "fstat", lambda fd: fstats.append(fd) or real(fd))
    with FolderReader([root]) as r:
        r.lstat(f"{root}/a/b/f.bin")  # its folders opened (the root pinned: an fstat of its own)
        fstats.clear()
        st = os.stat(root / "a/b")
        assert r.identity(f"{root}/a/b") == (st.st_dev, st.st_ino) == r.identity(f"{root}/a/b")
        assert len(fstats) == 1
        assert r.entry(f"{root}/a/b/f.bin") == entry_key(folder_id(st), "f.bin") == (st.st_dev, st.st_ino, b"f.bin")
        assert r.identity(f"{root}/a/missing") is None and r.entry(f"{root}/a/missing/f.bin") is None
        assert r.identity(f"{root}/a/link") is None  # a symlink: refused, not followed
        assert r.identity("/elsewhere") is None


def test_a_symlinked_folder_is_refused_naming_it_and_its_target_and_a_leaf_symlink_is_returned(tree):
    root, outside = tree
    with FolderReader([root]) as r:
        with pytest.raises(FolderRefused, match=f"^{root}/a/link is a symlink to {outside}: refusing") as e:
            r.lstat(f"{root}/a/link/f.bin")
        assert (e.value.folder, e.value.target) == (f"{root}/a/link", str(outside))
        with pytest.raises(FolderRefused):
            r.folder(f"{root}/a/link/deeper")  # the same answer below it
        st = r.lstat(f"{root}/a/link")  # the leaf is the caller's: a symlink, not followed
        assert st is not None and os.path.islink(root / "a/link") and st.st_mode == os.lstat(root / "a/link").st_mode
        assert r.readlink(f"{root}/a/link") == str(outside)


def test_missing_folders_a_file_in_a_folders_place_and_paths_outside_the_roots(tree, tmp_path):
    root, _else = tree
    with FolderReader([root]) as r:
        assert r.lstat(f"{root}/nope/x/f.bin") is None
        assert r.lstat(f"{root}/a/b/f.bin/x") is None  # a file where a folder would be
        with pytest.raises(ValueError):
            r.lstat(str(tmp_path / "else/f.bin"))
        with pytest.raises(ValueError):
            r.lstat(str(root))
        # lstat_any: what is under no root is lstat-ed by its string (no root to verify it against)
        assert r.lstat_any(str(tmp_path / "else/f.bin")).st_size == 7
        assert r.lstat_any(str(tmp_path / "nothing")) is None
        with pytest.raises(FolderRefused):
            r.lstat_any(f"{root}/a/link/f.bin")
        # place_any, the rule's home: a name in a verified folder below a root, the string elsewhere
        d, name = r.place_any(f"{root}/a/b/f.bin")
        assert name == "f.bin" and os.path.samestat(os.fstat(d), os.stat(root / "a/b"))
        assert r.place_any(str(tmp_path / "else/f.bin")) == (None, str(tmp_path / "else/f.bin"))
        assert r.place_any(str(root)) == (None, str(root))
        assert r.place_any(f"{root}/nope/x/f.bin") is None
        with pytest.raises(FolderRefused):
            r.place_any(f"{root}/a/link/f.bin")


def test_a_folder_swapped_after_it_was_opened_is_still_read_as_the_folder_opened(tree):
    """The reader's descriptor is the folder it checked; a symlink swapped into its place later is
    not followed (the outside file is never what the reader sees)."""
    root, outside = tree
    with FolderReader([root]) as r:
        inside = r.lstat(f"{root}/a/b/f.bin")
        swap(root / "a/b", outside)
        assert r.lstat(f"{root}/a/b/f.bin").st_ino == inside.st_ino != os.stat(outside / "f.bin").st_ino


def test_descriptors_are_bounded_and_closed(tree):
    root, _else = tree
    for n in range(10):
        write(root / f"t{n}/f.bin", b"x")
    before = open_fds()
    r = FolderReader([root], max_open=3)
    for _ in range(2):  # the second round reopens what was closed, and finds the same files
        for n in range(10):
            assert r.lstat(f"{root}/t{n}/f.bin") is not None
            assert open_fds() - before <= 3
    r.close()
    assert open_fds() == before
    assert r.lstat(f"{root}/t0/f.bin") is not None  # usable again after close: it reopens
    r.close()


def test_open_below_says_what_is_there_instead_of_a_folder(tree):
    root, outside = tree
    fd = os.open(root / "a", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.close(open_below(fd, "b"))
        with pytest.raises(NotAFolder) as e:
            open_below(fd, "link")
        assert (e.value.kind, e.value.target) == ("symlink", str(outside))
        write(root / "a/file", b"x")
        with pytest.raises(NotAFolder) as e:
            open_below(fd, "file")
        assert e.value.kind == "other"
        with pytest.raises(FileNotFoundError):
            open_below(fd, "missing")
    finally:
        os.close(fd)


def test_a_name_too_long_for_any_filesystem_is_nothing_there(tree):
    """ENAMETOOLONG (a torrent may name a folder or file 300 bytes long) is "nothing there", in
    a folder step and in the last lstat: raised, one torrent would fail every snapshot."""
    root, _else = tree
    long = "L" * 300
    with FolderReader([root]) as r:
        assert r.lstat(f"{root}/a/{long}/f.bin") is None
        assert r.lstat(f"{root}/a/b/{long}") is None
        assert r.folder(f"{root}/a/{long}") is None
        assert r.lstat(f"{root}/a/b/f.bin").st_size == 6  # the reader goes on


def test_a_folder_root_cannot_enter_is_nothing_there_and_other_errors_still_raise(tree, monkeypatch):
    """EACCES (a root-squashing mount) is "nothing there"; an error that says something is wrong
    with the disk (EIO) is still raised, never read as "missing". (As root EACCES cannot be made
    with modes: the open is made to fail.)"""
    import errno

    from qbhook import dirfd

    root, _else = tree
    real = dirfd.open_below

    def failing(code):
        def open_below(pfd, name):
            if name == "b":
                raise OSError(code, os.strerror(code))
            return real(pfd, name)

        return open_below

    monkeypatch.setattr(dirfd, "open_below", failing(errno.EACCES))
    with FolderReader([root]) as r:
        assert r.lstat(f"{root}/a/b/f.bin") is None
    monkeypatch.setattr(dirfd, "open_below", failing(errno.EIO))
    with FolderReader([root]) as r, pytest.raises(OSError) as e:
        r.lstat(f"{root}/a/b/f.bin")
    assert e.value.errno == errno.EIO


def test_a_dotdot_on_the_way_to_a_root_is_refused_naming_the_whole_path(tmp_path):
    from qbhook.dirfd import open_root, open_walked

    (tmp_path / "p/a").mkdir(parents=True)
    with pytest.raises(ValueError, match=f"^{tmp_path}/p/a/../a: a '..' component is never followed"):
        open_root(f"{tmp_path}/p/a/../a", f"{tmp_path}/p")
    with pytest.raises(ValueError, match=f"^{tmp_path}/../x: a '..'"):
        open_walked(f"{tmp_path}/../x")


@pytest.mark.parametrize("max_open", [2, 4096])
def test_a_folder_chain_deeper_than_the_recursion_limit_is_walked_one_level_at_a_time(tmp_path, max_open):
    """R52: ``_folder`` recursed once per level: a chain 1,200 deep (paths ~2,500 bytes, which a
    writer of the tree may make) raised RecursionError, and every caller hashing a file there
    failed. Each folder is still opened below its verified parent, and a symlink is refused."""
    root = tmp_path / "root"
    root.mkdir()
    with folder_chain(root, 1200) as bottom:
        ino = os.lstat(f"{bottom}/f.bin").st_ino
        with FolderReader([root], max_open=max_open) as r:
            assert r.lstat(f"{bottom}/f.bin").st_ino == ino
            assert r.lstat(f"{bottom}/f.bin").st_size == 6  # the folder placed in last: no climb
            assert r.lstat(f"{bottom}/nothing/f.bin") is None
        middle = f"{root}/" + "/".join(["d"] * 600)
        os.rename(middle, f"{middle}.aside")
        os.symlink(f"{middle}.aside", middle)
        with FolderReader([root], max_open=max_open) as r, pytest.raises(FolderRefused) as e:
            r.lstat(f"{bottom}/f.bin")
        assert (e.value.folder, e.value.kind) == (middle, "symlink")
        os.unlink(middle)
        with FolderReader([root], max_open=max_open) as r:
            assert r.lstat(f"{bottom}/f.bin") is None  # the chain broken at 600: nothing below
            assert r.folder(middle) is None and r.folder(f"{middle}/d") is None
