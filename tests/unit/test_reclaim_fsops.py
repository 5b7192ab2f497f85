"""fsops.hold_unreferenced (orphan quarantine) and fsops.remove_leftover_view: every re-check
right before acting, and hostile trees (a symlinked folder inside a seeding root)."""

import os

import blake3
import pytest

from qbhook.errors import UnsafeOperation
from qbhook.move import fsops


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "seed"
    (r / "old").mkdir(parents=True)
    return r


def _facts(p):
    st = os.lstat(p)
    return {"ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def test_hold_moves_the_file_into_holding_of_its_root(root):
    f = root / "old/x.bin"
    f.write_bytes(b"x" * 100)
    res = fsops.hold_unreferenced(f, **_facts(f), max_nlink=1, roots=(root,), run=7)
    assert res["status"] == "held" and not f.exists()
    assert (root / ".qbhook-holding/7/old/x.bin").read_bytes() == b"x" * 100
    # idempotent: a second attempt finds it held
    again = fsops.hold_unreferenced(
        f, **_facts(root / ".qbhook-holding/7/old/x.bin"), max_nlink=1, roots=(root,), run=7
    )
    assert again["status"] == "held"


@pytest.mark.parametrize(
    "change, words",
    [
        ("link", "links now"),
        ("write", "written since"),
        ("swap", "no longer the file|written since"),  # the new file may get the freed inode number
    ],
)
def test_hold_refuses_when_the_file_changed_since_listing(root, tmp_path, change, words):
    f = root / "old/x.bin"
    f.write_bytes(b"x" * 100)
    facts = _facts(f)
    if change == "link":
        os.link(f, tmp_path / "library.bin")  # a library linked it meanwhile
    elif change == "write":
        os.utime(f, ns=(facts["mtime_ns"] + 10**9, facts["mtime_ns"] + 10**9))
    else:
        f.unlink()
        f.write_bytes(b"y" * 100)
    with pytest.raises(UnsafeOperation, match=words):
        fsops.hold_unreferenced(f, **facts, max_nlink=1, roots=(root,), run=1)
    assert f.exists() and not (root / ".qbhook-holding").exists()


def test_hold_never_goes_through_a_symlinked_folder(root, tmp_path):
    lib = tmp_path / "library"
    lib.mkdir()
    (lib / "movie.mkv").write_bytes(b"m" * 10)
    os.symlink(lib, root / "evil")
    p = root / "evil/movie.mkv"
    with pytest.raises(UnsafeOperation, match="symlink"):
        fsops.hold_unreferenced(p, **_facts(lib / "movie.mkv"), max_nlink=1, roots=(root,), run=1)
    assert (lib / "movie.mkv").exists()


def test_hold_refuses_outside_the_roots_and_in_own_folders(root, tmp_path):
    other = tmp_path / "other.bin"
    other.write_bytes(b"o")
    with pytest.raises(UnsafeOperation):
        fsops.hold_unreferenced(other, **_facts(other), max_nlink=1, roots=(root,), run=1)
    own = root / ".qbhook-holding/3/a"
    own.parent.mkdir(parents=True)
    own.write_bytes(b"a")
    with pytest.raises(UnsafeOperation, match="own folders"):
        fsops.hold_unreferenced(own, **_facts(own), max_nlink=1, roots=(root,), run=1)


def _b3(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def test_leftover_linked_view_goes_and_its_source_stays(root, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"s" * 50)
    view = root / "old/view.bin"
    os.link(src, view)
    f = _facts(view)
    res = fsops.remove_leftover_view(
        view, ino=f["ino"], size=50, keep=src, blake3_hex=_b3(b"s" * 50), roots=(root,), keep_roots=(tmp_path,)
    )
    assert res["status"] == "removed" and not view.exists() and src.read_bytes() == b"s" * 50


def test_leftover_copy_goes_only_while_nobody_links_it_and_its_source_verifies(root, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"s" * 50)
    view = root / "old/copy.bin"
    view.write_bytes(b"s" * 50)
    f = _facts(view)
    kw = {
        "ino": f["ino"],
        "size": 50,
        "keep": src,
        "blake3_hex": _b3(b"s" * 50),
        "roots": (root,),
        "keep_roots": (tmp_path,),
    }
    os.link(view, tmp_path / "library.bin")
    with pytest.raises(UnsafeOperation, match="linked elsewhere"):
        fsops.remove_leftover_view(view, **kw)
    os.unlink(tmp_path / "library.bin")
    src.write_bytes(b"t" * 50)  # the source is no longer the same content
    with pytest.raises(UnsafeOperation):
        fsops.remove_leftover_view(view, **kw)
    assert view.exists()
    src.write_bytes(b"s" * 50)
    assert fsops.remove_leftover_view(view, **kw)["status"] == "removed" and not view.exists()


def test_leftover_replaced_by_another_file_is_refused(root, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"s" * 50)
    view = root / "old/view.bin"
    os.link(src, view)
    ino = os.lstat(view).st_ino
    view.unlink()
    view.write_bytes(b"s" * 50)
    with pytest.raises(UnsafeOperation, match="no longer the view"):
        fsops.remove_leftover_view(
            view, ino=ino, size=50, keep=src, blake3_hex=_b3(b"s" * 50), roots=(root,), keep_roots=(tmp_path,)
        )
    assert view.exists()


def test_leftover_view_inside_a_staging_folder_is_refused(root, tmp_path):
    # Review finding: remove_leftover_view refused .qbhook-holding only, not .qbhook-staging.
    src = tmp_path / "src.bin"
    src.write_bytes(b"s" * 50)
    view = root / ".qbhook-staging/view.bin"
    view.parent.mkdir(mode=0o700)
    os.link(src, view)
    f = _facts(view)
    with pytest.raises(UnsafeOperation, match="not a view"):
        fsops.remove_leftover_view(
            view, ino=f["ino"], size=50, keep=src, blake3_hex=_b3(b"s" * 50), roots=(root,), keep_roots=(tmp_path,)
        )
    assert view.exists()


def _copy_view(root, tmp_path, data=b"s" * 50):
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    view = root / "old/copy.bin"
    view.write_bytes(data)
    st = os.lstat(view)
    kw = {"ino": st.st_ino, "size": len(data), "keep": src, "blake3_hex": _b3(data), "roots": (root,)}
    return view, st, {**kw, "keep_roots": (tmp_path,)}


def test_leftover_copy_rewritten_in_place_at_the_same_size_is_kept(root, tmp_path):
    # Review finding: only the inode, the size and the *kept* copy were checked, so a view
    # something else rewrote in place (rsync --inplace, another client; mtime put back) was
    # unlinked, and with it the only copy of the new bytes.
    view, st, kw = _copy_view(root, tmp_path)
    with open(view, "r+b") as f:
        f.write(b"n" * 50)
    os.utime(view, ns=(st.st_atime_ns, st.st_mtime_ns))
    for ctime_ns in (None, st.st_ctime_ns):  # whatever ctime the journal holds, the new one differs
        with pytest.raises(UnsafeOperation, match="content changed since qbhook made it"):
            fsops.remove_leftover_view(view, **kw, ctime_ns=ctime_ns)
        assert view.read_bytes() == b"n" * 50


def test_leftover_copy_with_the_ctime_its_act_proved_costs_no_read(root, tmp_path, monkeypatch):
    view, st, kw = _copy_view(root, tmp_path)
    read = []
    real = fsops.hashing.hash_fd
    monkeypatch.setattr(fsops.hashing, "hash_fd", lambda fd: read.append(os.fstat(fd).st_ino) or real(fd))
    assert fsops.remove_leftover_view(view, **kw, ctime_ns=st.st_ctime_ns)["status"] == "removed"
    assert st.st_ino not in read and not view.exists()
    # another ctime (a link onto the copy came and went): the view is read, and goes if it verifies
    view, st, kw = _copy_view(root, tmp_path)
    assert fsops.remove_leftover_view(view, **kw, ctime_ns=st.st_ctime_ns - 1)["status"] == "removed"
    assert st.st_ino in read


def test_leftover_copy_written_while_the_checks_ran_is_kept(root, tmp_path, monkeypatch):
    view, st, kw = _copy_view(root, tmp_path)
    real = fsops._check_file

    def check_then_write(*a, **k):
        problem = real(*a, **k)
        with open(view, "r+b") as f:  # same size, same inode, same link count: only ctime moves
            f.write(b"w" * 50)
        return problem

    monkeypatch.setattr(fsops, "_check_file", check_then_write)
    with pytest.raises(UnsafeOperation, match="changed during the checks"):
        fsops.remove_leftover_view(view, **kw, ctime_ns=st.st_ctime_ns)
    assert view.read_bytes() == b"w" * 50
