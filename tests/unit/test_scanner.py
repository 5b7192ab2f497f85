import os

import pytest

from qbhook.catalog import findwalk, fsid
from qbhook.catalog import scan as scanner
from qbhook.catalog.scan import scan_pool
from qbhook.catalog.store import Catalog
from qbhook.errors import MassDeleteRefused, QbhookError
from tests.helpers import make_config, write
from tests.swap import swap, swap_after_listing


def _listed(path) -> str:
    """The folder an ``os.scandir`` call lists: by its path, or by a descriptor (the walk's way)."""
    return os.readlink(f"/proc/self/fd/{path}") if isinstance(path, int) else os.fsdecode(path)


@pytest.fixture
def env(tmp_path):
    stash, pool = tmp_path / "stash", tmp_path / "pool"
    for p in (stash, pool):
        (p / "data/media/torrents/seeding").mkdir(parents=True)
    cfg = make_config(tmp_path / "cat.sqlite", stash, pool, scan={"mass_delete_min_paths": 3})
    cat = Catalog.open(cfg.catalog)
    yield cfg, cat, stash
    cat.close()


def test_first_scan_then_unchanged_rescan_writes_nothing(env):
    cfg, cat, stash = env
    for i in range(20):
        write(stash / f"data/media/torrents/seeding/t/{i}.bin", b"%d" % i)
    r1 = scan_pool(cat, cfg.primary, cfg.scan)
    assert (r1.files_seen, r1.added, r1.changed, r1.removed) == (20, 20, 0, 0)
    r2 = scan_pool(cat, cfg.primary, cfg.scan)
    assert (r2.files_seen, r2.added, r2.changed, r2.removed) == (20, 0, 0, 0)


def test_hardlinks_are_one_inode_with_many_paths(env):
    cfg, cat, stash = env
    a = write(stash / "data/media/torrents/seeding/a/f.mkv", b"movie")
    os.makedirs(stash / "media/movies")
    os.link(a, stash / "media/movies/f.mkv")
    scan_pool(cat, cfg.primary, cfg.scan)
    c = cat.counts()
    assert c["inodes"] == 1 and c["paths"] == 2
    row = cat.inode_by_path(stash / "media/movies/f.mkv")
    assert row.nlink == 2 and len(cat.paths_of(row.id)) == 2


def test_symlinks_and_special_files_are_not_followed(env, tmp_path):
    cfg, cat, stash = env
    outside = write(tmp_path / "outside/secret.bin", b"s")
    os.symlink(outside, stash / "link-to-file")
    os.symlink(tmp_path / "outside", stash / "link-to-dir")
    os.mkfifo(stash / "fifo")
    r = scan_pool(cat, cfg.primary, cfg.scan)
    assert r.files_seen == 0 and cat.counts()["paths"] == 0


def test_weird_names_round_trip(env):
    cfg, cat, stash = env
    names = [b"new\nline.bin", b"bad\xff\xfeutf8.bin", b"-leading dash", "ünï cødé.mkv".encode()]
    base = os.fsencode(stash / "data/media/torrents/seeding")
    for n in names:
        write(base + b"/" + n, n)
    scan_pool(cat, cfg.primary, cfg.scan)
    stored = {p for (p,) in cat.conn.execute("SELECT path FROM paths")}
    assert stored == {base + b"/" + n for n in names}
    assert scan_pool(cat, cfg.primary, cfg.scan).changed == 0


def test_vanished_paths_removed_and_mass_delete_guard(env):
    cfg, cat, stash = env
    files = [write(stash / f"s/{i}", b"x") for i in range(10)]
    scan_pool(cat, cfg.primary, cfg.scan)
    os.unlink(files[0])
    assert scan_pool(cat, cfg.primary, cfg.scan).removed == 1
    for f in files[1:]:
        os.unlink(f)
    with pytest.raises(MassDeleteRefused, match="mounted"):
        scan_pool(cat, cfg.primary, cfg.scan)
    assert cat.counts()["paths"] == 9  # nothing dropped
    assert scan_pool(cat, cfg.primary, cfg.scan, allow_mass_delete=True).removed == 9
    assert cat.counts()["inodes"] == 0


def test_unreadable_folder_is_not_deleted(env, monkeypatch):
    cfg, cat, stash = env
    write(stash / "locked/a", b"a")
    write(stash / "open/b", b"b")
    scan_pool(cat, cfg.primary, cfg.scan)
    real = os.scandir

    def fake(path):
        if _listed(path).endswith("locked"):
            raise PermissionError(13, "denied")
        return real(path)

    monkeypatch.setattr("qbhook.catalog.scan.os.scandir", fake)
    monkeypatch.setattr("qbhook.catalog.scan.FIND_WALK", False)  # root reads any folder: the Python walk is told
    r = scan_pool(cat, cfg.primary, cfg.scan)
    assert r.removed == 0 and r.unreadable and cat.counts()["paths"] == 2


def test_missing_pool_root_is_an_error(env, tmp_path):
    cfg, cat, stash = env
    os.rename(stash, tmp_path / "elsewhere")
    with pytest.raises(QbhookError, match="mounted"):
        scan_pool(cat, cfg.primary, cfg.scan)


def test_nlink_change_is_noticed(env):
    cfg, cat, stash = env
    a = write(stash / "a", b"x")
    scan_pool(cat, cfg.primary, cfg.scan)
    os.link(a, stash / "b")
    r = scan_pool(cat, cfg.primary, cfg.scan)
    assert r.added == 1 and r.changed == 1
    assert cat.inode_by_path(a).nlink == 2


def _rows(cat):
    return sorted(
        cat.conn.execute(
            "SELECT p.path, p.pool, i.ino, i.size, i.mtime_ns, i.ctime_ns, i.nlink FROM paths p "
            "JOIN inodes i ON i.id = p.inode"
        )
    )


def _find_only(monkeypatch):
    """Make a rescan fail loudly if it does not take the find path (no silent fallback)."""

    def no_python_walk(*a, **k):
        raise AssertionError("the Python walk ran")

    monkeypatch.setattr(scanner, "_python_walk", no_python_walk)


def test_find_rescan_agrees_with_the_python_walk(tmp_path, monkeypatch):
    # The same tree and the same changes, rescanned by find in one catalog and by the Python
    # walk in another: the results and every catalog row must be equal.
    stash, pool = tmp_path / "stash", tmp_path / "pool"
    seed = stash / "data/media/torrents/seeding"
    files = [write(seed / f"t{i % 7}/sub/{i}.bin", b"%d" % i) for i in range(60)]
    odd = os.fsencode(seed) + b"/odd \n name\xff [*?].bin"
    write(odd, b"odd")
    write(seed / "t1/.qbhook-staging/part", b"ignored")  # ScanConfig.ignore_names
    write(seed / "t1/we[ir]d*", b"ignored too")  # a literal name, not a pattern ...
    write(seed / "t1/weidx", b"kept")  # ... so this one is catalogued
    ignore = {"ignore_names": [".zfs", ".qbhook-holding", ".qbhook-staging", "we[ir]d*"]}
    cats = {}
    for name in ("find", "python"):
        cfg = make_config(tmp_path / f"{name}.sqlite", stash, pool, scan=ignore)
        cats[name] = (cfg, Catalog.open(cfg.catalog))
        scan_pool(cats[name][1], cfg.primary, cfg.scan)
    os.unlink(files[0])  # vanished
    write(seed / "t9/new.bin", b"new")  # added
    os.makedirs(tmp_path / "outside")
    os.link(files[1], tmp_path / "outside/extra-link")  # nlink + ctime only
    with open(files[2], "r+b") as f:  # same size, new content
        f.write(b"Z")
    os.chmod(files[3], 0o600)  # ctime only
    os.rename(files[4], seed / "t0/renamed.bin")  # a path moves
    os.unlink(odd)
    write(odd, b"odd2")  # same name, new inode
    results = {}
    for name, (cfg, cat) in cats.items():
        with monkeypatch.context() as m:
            if name == "find":
                _find_only(m)
            else:
                m.setattr(scanner, "FIND_WALK", False)
            r = scan_pool(cat, cfg.primary, cfg.scan)
        results[name] = (r.files_seen, r.added, r.changed, r.removed, r.unreadable)
    assert results["find"] == results["python"] == (62, 2, 4, 2, [])
    rows = _rows(cats["find"][1])
    assert rows == _rows(cats["python"][1])
    names = {os.path.basename(p) for p, *_ in rows}
    assert b"weidx" in names and b"we[ir]d*" not in names and b"part" not in names
    for _cfg, cat in cats.values():
        cat.close()


def test_link_count_change_elsewhere_is_seen_by_the_find_rescan(env, tmp_path, monkeypatch):
    # A hardlink made outside the pool changes the file's st_nlink and st_ctime but not its
    # folder's mtime: a rescan that skipped unchanged folders would miss it.
    cfg, cat, stash = env
    a = write(stash / "data/media/torrents/seeding/t/a.mkv", b"movie")
    scan_pool(cat, cfg.primary, cfg.scan)
    folder_mtime = os.stat(stash / "data/media/torrents/seeding/t").st_mtime_ns
    os.link(a, tmp_path / "library-import.mkv")
    assert os.stat(stash / "data/media/torrents/seeding/t").st_mtime_ns == folder_mtime
    _find_only(monkeypatch)
    r = scan_pool(cat, cfg.primary, cfg.scan)
    assert (r.added, r.changed, r.removed) == (0, 1, 0)
    assert cat.inode_by_path(a).nlink == 2


def test_find_reporting_an_error_means_the_python_walk_decides(env, monkeypatch):
    # find exits non-zero on any folder it cannot read; its partial listing must not drop rows.
    cfg, cat, stash = env
    write(stash / "locked/a", b"a")
    write(stash / "open/b", b"b")
    scan_pool(cat, cfg.primary, cfg.scan)
    real_cmd, real_scandir = findwalk.find_cmd, os.scandir
    calls = []

    def failing_cmd(root, ignore):
        calls.append(root)
        cmd = real_cmd(root, ignore)
        return cmd[:2] + [b"/nonexistent-qbhook-test"] + cmd[2:]  # find: "No such file", exit 1

    def fake(path):
        if _listed(path).endswith("locked"):
            raise PermissionError(13, "denied")
        return real_scandir(path)

    monkeypatch.setattr(findwalk, "find_cmd", failing_cmd)
    monkeypatch.setattr("qbhook.catalog.scan.os.scandir", fake)
    r = scan_pool(cat, cfg.primary, cfg.scan)
    assert calls and r.removed == 0 and r.unreadable and cat.counts()["paths"] == 2


def test_a_long_lived_catalog_reuses_its_last_rescan_only_while_nothing_was_written(env, monkeypatch):
    # The sweeper keeps one Catalog: an unchanged rescan then skips the catalog read. Any write
    # to paths/inodes/filesystems since (by this connection or another) makes it read again.
    cfg, cat, stash = env
    a = write(stash / "data/media/torrents/seeding/t/a.mkv", b"a")
    write(stash / "data/media/torrents/seeding/t/b.mkv", b"b")
    scan_pool(cat, cfg.primary, cfg.scan)
    _find_only(monkeypatch)
    reads = []
    real = Catalog.iter_find_lines

    def counting(self, *a, **k):
        reads.append(1)
        yield from real(self, *a, **k)

    monkeypatch.setattr(Catalog, "iter_find_lines", counting)
    assert scan_pool(cat, cfg.primary, cfg.scan).changed == 0 and len(reads) == 1
    r = scan_pool(cat, cfg.primary, cfg.scan)
    assert (r.files_seen, r.added, r.changed, r.removed) == (2, 0, 0, 0) and len(reads) == 1  # reused

    cat.forget_path(a)  # this connection writes: a is on disk again
    r = scan_pool(cat, cfg.primary, cfg.scan)
    assert (r.added, r.changed, r.removed) == (1, 0, 0) and len(reads) == 2

    # That rescan's own writes made the catalog match find's output again, and nobody else
    # wrote meanwhile: its memo (saved after its writes) spares the next rescan the read.
    assert scan_pool(cat, cfg.primary, cfg.scan).added == 0 and len(reads) == 2
    assert scan_pool(cat, cfg.primary, cfg.scan).added == 0 and len(reads) == 2

    other = Catalog.open(cfg.catalog)  # another connection (another process, say)
    other.forget_path(a)
    other.close()
    r = scan_pool(cat, cfg.primary, cfg.scan)
    assert (r.added, r.changed, r.removed) == (1, 0, 0) and len(reads) == 3

    with cat.conn:  # a stat field rewritten behind the scanner
        cat.conn.execute("UPDATE inodes SET nlink = 7")
    r = scan_pool(cat, cfg.primary, cfg.scan)
    assert r.changed == 2 and cat.inode_by_path(a).nlink == 1


def test_find_prunes_the_default_ignored_folders_by_exact_name(env, monkeypatch):
    # find prunes the default ignored folders (a visible .zfs would be every snapshot again);
    # the names match exactly, not as prefixes.
    cfg, cat, stash = env
    seed = stash / "data/media/torrents/seeding"
    write(seed / "t/a.mkv", b"a")
    scan_pool(cat, cfg.primary, cfg.scan)
    write(seed / "t/.qbhook-staging/123.a.mkv", b"partial")
    write(seed / ".zfs/snapshot/s1/t/a.mkv", b"a")
    write(seed / "t/.qbhook-stagingX", b"not ignored")
    write(seed / "t/.hidden", b"not ignored")
    _find_only(monkeypatch)
    r = scan_pool(cat, cfg.primary, cfg.scan)
    assert (r.files_seen, r.added) == (3, 2)
    names = {os.path.basename(p) for (p,) in cat.conn.execute("SELECT path FROM paths")}
    assert names == {b"a.mkv", b".qbhook-stagingX", b".hidden"}


def test_find_tests_ignored_names_on_folders_only():
    # Three -name tests on every file were a third of a bare find's time: the command tests
    # the names behind `-type d`, with an empty -printf between them so that find's optimiser
    # (which moves name tests first) keeps that order. Files with those names go to Python.
    cmd = findwalk.find_cmd(b"/r", {b".zfs", b".qbhook-staging"})
    first_name = cmd.index(b"-name")
    assert cmd[first_name - 5 : first_name] == [b"-type", b"d", b"-printf", b"", b"("]
    assert cmd[-4:] == [b"-type", b"f", b"-printf", findwalk.FIND_LINE_FORMAT]


def test_ignored_file_lines_are_dropped_exactly():
    ends = (b"/.zfs", b"/we[ir]d*")
    lines = [
        b"1 2 3 4.0 5.0 1 /r/t/.zfs",  # an ignored file name: dropped
        b"1 2 3 4.0 5.0 1 /r/t/.zfsX",  # a longer name: kept
        b"1 2 3 4.0 5.0 1 /r/t/x.zfs",  # a name ending like one, without the "/": kept
        b"1 2 3 4.0 5.0 1 /r/we[ir]d*",  # a literal name, not a pattern: dropped
        b"1 2 3 4.0 5.0 1 /r/weidx",
    ]
    buf = b"\0".join(lines) + b"\0" + b"1 2 3 4.0 5.0 1 /r/carry/.zfs"  # an incomplete last line
    kept = scanner._ignored_lines(buf, lines, ends)
    assert kept == [lines[1], lines[2], lines[4]]
    clean = lines[1:3]
    assert scanner._ignored_lines(b"\0".join(clean) + b"\0/.zfs", clean, ends) is clean  # no per-line pass


class _Twins:
    """One tree catalogued twice, by a first scan each (the Python walk); then every rescan is
    find's in one catalog and the Python walk's in the other, and both must agree."""

    def __init__(self, tmp_path, monkeypatch):
        self.stash, self.pool = tmp_path / "stash", tmp_path / "pool"
        self.seed = self.stash / "data/media/torrents/seeding"
        self.tmp_path, self.monkeypatch = tmp_path, monkeypatch
        self.cats: dict = {}

    def first_scans(self) -> None:
        for name in ("find", "python"):
            cfg = make_config(self.tmp_path / f"{name}.sqlite", self.stash, self.pool)
            self.cats[name] = (cfg, Catalog.open(cfg.catalog))
            scan_pool(self.cats[name][1], cfg.primary, cfg.scan)  # first scans: the Python walk

    def rescan_both(self) -> tuple:
        out = {}
        for name, (cfg, cat) in self.cats.items():
            with self.monkeypatch.context() as m:
                if name == "find":
                    _find_only(m)
                else:
                    m.setattr(scanner, "FIND_WALK", False)
                r = scan_pool(cat, cfg.primary, cfg.scan)
            out[name] = (r.files_seen, r.added, r.changed, r.removed)
        assert out["find"] == out["python"]
        assert _rows(self.cats["find"][1]) == _rows(self.cats["python"][1])
        return out["find"]

    def names(self) -> set[bytes]:
        return {os.path.basename(p) for p, *_ in _rows(self.cats["find"][1])}


@pytest.fixture
def twins(tmp_path, monkeypatch):
    t = _Twins(tmp_path, monkeypatch)
    yield t
    for _cfg, cat in t.cats.values():
        cat.close()


def test_files_with_ignored_names_stay_out_of_every_find_rescan(twins):
    # Regular files named like an ignored folder, at any depth, appearing before and after a
    # memo was saved: every rescan (line by line, then from the memo) agrees with the Python walk.
    seed = twins.seed
    write(seed / "t/a.mkv", b"a")
    write(seed / "t/.zfs", b"a file named .zfs")
    write(seed / ".qbhook-holding", b"a file at the top")
    write(seed / "t/deep/er/.qbhook-staging", b"deeper")
    write(seed / "t/.qbhook-staging/part", b"in an ignored folder")
    twins.first_scans()
    assert twins.rescan_both() == (1, 0, 0, 0)  # line by line; saves a memo
    assert twins.rescan_both() == (1, 0, 0, 0)  # the memo
    write(seed / "u/.zfs", b"new, ignored")  # find's output changes, the catalog must not
    write(seed / "u/b.mkv", b"b")
    assert twins.rescan_both() == (2, 1, 0, 0)
    assert twins.rescan_both() == (2, 0, 0, 0)
    assert twins.names() == {b"a.mkv", b"b.mkv"}


def test_relink_links_are_never_catalogued_by_either_walk(twins):
    # qbhook's temporary relink links (paths.RELINK_PREFIX), in use or left by a crash, were
    # catalogued as seeding files. Files so named are skipped by the first scan, the find rescan
    # (line by line and from the memo) and the Python rescan; a folder so named is walked.
    seed = twins.seed
    write(seed / "t/a.mkv", b"a")
    os.link(seed / "t/a.mkv", seed / "t/.qbhook-relink.1f.a.mkv")
    write(seed / ".qbhook-relink.old", b"left by an older version")
    write(seed / "t/.qbhook-relink.dir/in.mkv", b"a user's folder")
    write(seed / "t/x.qbhook-relink.y", b"not the prefix")
    twins.first_scans()
    assert twins.rescan_both() == (3, 0, 0, 0)  # line by line; saves a memo
    assert twins.rescan_both() == (3, 0, 0, 0)  # the memo
    os.link(seed / "t/x.qbhook-relink.y", seed / "t/.qbhook-relink.2a.x.qbhook-relink.y")  # a relink starts
    os.unlink(seed / "t/.qbhook-relink.1f.a.mkv")  # the crashed one's leftover cleaned
    assert twins.rescan_both() == (3, 0, 2, 0)  # link counts moved; no path came or went
    assert twins.names() == {b"a.mkv", b"in.mkv", b"x.qbhook-relink.y"}


def test_skipped_by_scan_says_which_files_either_walk_leaves_out(twins):
    # The walks' rule stated once for a path named from elsewhere (an event, R110): for every
    # regular file in the tree it must answer what the Python walk and find both did.
    seed = twins.seed
    for rel in (
        "t/a.mkv",
        "t/.zfs",
        ".zfs/snapshot/daily/t/a.mkv",
        "t/deep/.qbhook-staging/part",
        "t/.qbhook-holding/1/a.mkv",
        "t/.qbhook-relink.1f.a.mkv",
        "t/.qbhook-relink.dir/in.mkv",
        "t/x.qbhook-relink.y",
        "t/.zfsX/kept.mkv",
    ):
        write(seed / rel, b"x")
    twins.first_scans()
    twins.rescan_both()
    cfg, cat = twins.cats["find"]
    root = str(cfg.primary.path)
    catalogued = {os.fsdecode(p) for p, *_ in _rows(cat)}
    files = {os.path.join(d, n) for d, _dirs, names in os.walk(twins.stash) for n in names}
    said = {f for f in files if not scanner.skipped_by_scan(f, root, cfg.scan)}
    assert said == catalogued and len(catalogued) == 4


def test_relink_link_lines_are_dropped_by_their_last_name_only():
    lines = [
        b"1 2 3 4.0 5.0 2 /r/t/.qbhook-relink.1f.a.mkv",  # dropped
        b"1 2 3 4.0 5.0 1 /r/t/.qbhook-relink.dir/in.mkv",  # in a folder so named: kept
        b"1 2 3 4.0 5.0 1 /r/t/x.qbhook-relink.y",  # not at the start of the name: kept
    ]
    buf = b"\0".join(lines) + b"\0"
    assert scanner._ignored_lines(buf, lines, ()) == lines[1:]
    assert scanner._ignored_lines(buf, lines, (b"/.zfs",)) == lines[1:]


def test_hashing_finds_output_while_it_runs_gives_the_one_pass_digest():
    # The memo's digest is taken while find still writes: a writer that appends in bursts,
    # read between them, must give exactly the digest of the whole output read once at the end.
    import subprocess
    import sys

    import blake3

    out = os.memfd_create("t")
    try:
        writer = "import os,time\nfor i in range(12):\n os.write(1, bytes([65+i])*300001)\n time.sleep(0.02)"
        proc = subprocess.Popen([sys.executable, "-c", writer], stdout=out)
        hashed = scanner._Hashed()
        assert scanner._wait_hashing(proc, out, hashed) == 0
        whole = b"".join(bytes([65 + i]) * 300001 for i in range(12))
        assert hashed.upto == len(whole)
        size, digest, _sample = scanner._digest_output(out, set(), hashed)
        assert (size, digest) == (len(whole), blake3.blake3(whole).digest())
        assert scanner._digest_output(out, set()) == (size, digest, {})
    finally:
        os.close(out)


@pytest.mark.parametrize("stale", ["dev + 12345", "NULL"])
def test_a_stale_device_number_in_the_catalog_is_no_change(env, monkeypatch, stale):
    # After a reboot or remount the st_dev recorded for a filesystem may be wrong or unknown:
    # find's lines then differ from the catalog's, but no file changed (same filesystem, same stat).
    cfg, cat, stash = env
    a = write(stash / "data/media/torrents/seeding/t/a.mkv", b"a")
    scan_pool(cat, cfg.primary, cfg.scan)
    with cat.conn:
        cat.conn.execute(f"UPDATE filesystems SET dev = {stale}")
    cat.close()
    cat = Catalog.open(cfg.catalog)  # a new process: no st_dev cached
    _find_only(monkeypatch)
    r = scan_pool(cat, cfg.primary, cfg.scan)
    assert (r.files_seen, r.added, r.changed, r.removed) == (1, 0, 0, 0)
    assert cat.inode_by_path(a).nlink == 1
    assert cat.conn.execute("SELECT dev FROM filesystems").fetchone()[0] == os.stat(a).st_dev
    cat.close()


def test_without_a_memory_file_the_python_walk_scans(env, monkeypatch):
    cfg, cat, stash = env
    write(stash / "data/media/torrents/seeding/t/a.mkv", b"a")
    scan_pool(cat, cfg.primary, cfg.scan)

    def no_memfd(*a, **k):
        raise OSError(24, "Too many open files")

    monkeypatch.setattr("qbhook.catalog.scan.os.memfd_create", no_memfd)
    write(stash / "data/media/torrents/seeding/t/b.mkv", b"b")
    r = scan_pool(cat, cfg.primary, cfg.scan)
    assert (r.files_seen, r.added, r.changed, r.removed) == (2, 1, 0, 0)


def test_a_new_process_that_finds_its_filesystem_row_current_writes_nothing(env):
    # Every process asks fs_for_path once per filesystem. When the row already says what the
    # lookup found, rewriting it would take the catalog's write lock (an explain behind a
    # sweep's transaction) and fsync for nothing; when the device number moved it is written.
    cfg, cat, stash = env
    a = write(stash / "data/media/torrents/seeding/t/a.mkv", b"a")
    scan_pool(cat, cfg.primary, cfg.scan)
    fs = cat.fs_for_path(a)
    cat.close()
    cat = Catalog.open(cfg.catalog)  # a new process: no st_dev cached
    before = cat.conn.total_changes
    assert cat.fs_for_path(a) == fs and cat.fsid(fs)
    assert cat.conn.total_changes == before
    with cat.conn:
        cat.conn.execute("UPDATE filesystems SET dev = dev + 12345")
    cat.close()
    cat = Catalog.open(cfg.catalog)
    assert cat.fs_for_path(a) == fs
    assert cat.conn.execute("SELECT dev FROM filesystems WHERE id = ?", (fs,)).fetchone()[0] == os.stat(a).st_dev
    cat.close()


@pytest.mark.parametrize("first", [True, False], ids=["first-scan", "rescan"])
def test_a_folder_swapped_for_a_symlink_after_its_parent_was_listed_is_not_walked_into(
    env, tmp_path, monkeypatch, first
):
    """The Python walk (a first scan; a rescan when find is missing or in doubt) descended by the
    path string (``os.scandir(entry.path)``): a folder swapped for a symlink after its parent was
    listed was followed, and the outside files got catalog rows under pool paths."""
    cfg, cat, stash = env
    seed = stash / "data/media/torrents/seeding"
    write(seed / "T/ours.bin", b"ours")
    write(tmp_path / "outside/secret.bin", b"not ours")
    if not first:
        scan_pool(cat, cfg.primary, cfg.scan)
        monkeypatch.setattr(scanner, "FIND_WALK", False)  # find missing: the Python walk rescans
    done = swap_after_listing(monkeypatch, seed, seed / "T", tmp_path / "outside")
    r = scan_pool(cat, cfg.primary, cfg.scan)
    assert done == [str(seed)]  # swapped between the listing of seed and the descent into T
    assert cat.inode_by_path(seed / "T/secret.bin") is None  # nothing outside catalogued
    assert os.fsencode(seed / "T") in [os.fsencode(u) for u in r.unreadable]  # not entered: its rows kept
    assert (cat.inode_by_path(seed / "T/ours.bin") is not None) == (not first)


@pytest.mark.parametrize("first", [True, False], ids=["first-scan", "find-rescan"])
def test_a_pool_root_swapped_for_a_symlink_is_not_scanned(env, tmp_path, first):
    """The Python walk listed the root by its path, and find was told -H: both followed it."""
    cfg, cat, stash = env
    write(stash / "ours.bin", b"ours")
    if not first:
        scan_pool(cat, cfg.primary, cfg.scan)
    write(tmp_path / "outside/secret.bin", b"not ours")
    swap(stash, tmp_path / "outside")
    with pytest.raises(QbhookError, match=f"{stash} is a symlink to {tmp_path}/outside"):
        scan_pool(cat, cfg.primary, cfg.scan)
    assert cat.inode_by_path(stash / "secret.bin") is None
    assert cat.counts()["paths"] == (0 if first else 1)


def test_a_pool_root_swapped_for_another_folder_before_find_walked_it_is_not_recorded(env, tmp_path, monkeypatch):
    """find walks the path it was given: its lines count only if the path still leads, by the
    verified walk, to the folder checked before it ran."""
    cfg, cat, stash = env
    write(stash / "ours.bin", b"ours")
    scan_pool(cat, cfg.primary, cfg.scan)
    write(tmp_path / "outside/secret.bin", b"not ours")
    real = scanner._find_walk

    def swap_then_find_walk(*a, **kw):
        # after the check, before find starts: find walks the outside folder now at the path
        os.rename(stash, tmp_path / "stash.aside")
        os.rename(tmp_path / "outside", stash)  # a real folder: no symlink for any walk to refuse
        return real(*a, **kw)

    monkeypatch.setattr(scanner, "_find_walk", swap_then_find_walk)
    # the identity check after find, or the root's pin (whichever looks first): refused either way
    with pytest.raises(QbhookError, match="changed while it was scanned|no longer the folder it was"):
        scan_pool(cat, cfg.primary, cfg.scan)
    assert cat.inode_by_path(stash / "secret.bin") is None and cat.inode_by_path(stash / "ours.bin") is not None


def test_a_subtree_scan_never_hands_find_a_path_a_folder_above_it_can_swap(env, tmp_path, monkeypatch):
    """R52: a subtree scan gave find the subtree's path string; a folder above it (inside the
    pool, renamed at will by its writers) swapped for a symlink while find walked and back before
    the second identity check, and find's lines from outside were recorded under pool paths
    (the real subtree's rows dropped). A subtree is walked in Python, by verified descriptors."""
    cfg, cat, stash = env
    seed = stash / "data/media/torrents/seeding"
    write(seed / "evil/T/ours.bin", b"ours")
    write(tmp_path / "outside/T/secret.bin", b"root's secret")
    scan_pool(cat, cfg.primary, cfg.scan)
    real, started = findwalk.start_find, []

    def racing_start_find(pool_name, root, ignore):
        started.append(root)
        os.rename(seed / "evil", seed / "evil.aside")
        os.symlink(tmp_path / "outside", seed / "evil")
        run = real(pool_name, root, ignore)
        run.proc.wait()  # find walks while 'evil' is a symlink
        os.unlink(seed / "evil")
        os.rename(seed / "evil.aside", seed / "evil")
        return run

    monkeypatch.setattr(findwalk, "start_find", racing_start_find)
    r = scan_pool(cat, cfg.primary, cfg.scan, subtree=str(seed / "evil/T"))
    assert started == [] and (r.status, r.added, r.removed) == ("ok", 0, 0)
    secret = os.stat(tmp_path / "outside/T/secret.bin").st_ino
    assert secret not in {row[0] for row in cat.conn.execute("SELECT ino FROM inodes")}
    assert cat.inode_by_path(seed / "evil/T/ours.bin") is not None


def _nested_unmounted(tmp_path, monkeypatch, walk, sub_mounted, fs_id="zfs:4242", n_sub=50):
    """1,000 files on the pool's filesystem and ``n_sub`` on a nested one (recorded at
    stash/sub), whose files are then gone from sight as after its unmount: an empty folder is left."""
    stash, pool = tmp_path / "stash", tmp_path / "pool"
    os.makedirs(pool)
    for i in range(1000):
        write(stash / f"a/{i}.bin", b"a")
    sub = [write(stash / f"sub/{i}.bin", b"b") for i in range(n_sub)]
    cfg = make_config(tmp_path / "cat.sqlite", stash, pool)  # guard: over 100 paths and 10 %
    cat = Catalog.open(cfg.catalog)
    scan_pool(cat, cfg.primary, cfg.scan)
    with cat.conn:
        b = cat.conn.execute(
            "INSERT INTO filesystems(fsid, kind, fstype, source, mountpoint, dev, first_seen, last_seen) "
            "VALUES (?, 'zfs', 'zfs', 'stash/sub', ?, NULL, 0, 0)",
            (fs_id, os.fsencode(stash / "sub")),
        ).lastrowid
        cat.conn.execute(
            "UPDATE inodes SET fs = ? WHERE id IN (SELECT inode FROM paths WHERE substr(path, 1, ?) = ?)",
            (b, len(os.fsencode(stash / "sub")) + 1, os.fsencode(stash / "sub") + b"/"),
        )
    for f in sub:
        os.unlink(f)
    real = fsid.read_mounts
    extra = [fsid.Mount(os.makedev(0, 4242), "/", str(stash / "sub"), "zfs", "stash/sub")] if sub_mounted else []
    monkeypatch.setattr(fsid, "read_mounts", lambda: [m for m in real() if m.mountpoint != str(stash / "sub")] + extra)
    if walk == "find":
        _find_only(monkeypatch)
    else:
        monkeypatch.setattr(scanner, "FIND_WALK", False)
    return cfg, cat, stash


@pytest.mark.parametrize("walk", ["find", "python"])
def test_files_of_an_unmounted_nested_filesystem_are_kept(tmp_path, monkeypatch, caplog, walk):
    # 50 paths are under the mass-delete guard's threshold: they used to be dropped with their
    # hashes, and their torrents looked as if their data were missing.
    cfg, cat, stash = _nested_unmounted(tmp_path, monkeypatch, walk, sub_mounted=False)
    with caplog.at_level("WARNING", logger="qbhook.catalog.scan"):
        r = scan_pool(cat, cfg.primary, cfg.scan)
    assert (r.files_seen, r.removed, r.status) == (1000, 0, "ok")
    assert r.unmounted == [str(stash / "sub")] and r.as_dict()["unmounted"] == r.unmounted
    assert cat.counts()["paths"] == 1050
    said = [rec.getMessage() for rec in caplog.records if "not mounted" in rec.getMessage()]
    assert len(said) == 1 and str(stash / "sub") in said[0] and "50" in said[0]
    msg = cat.conn.execute("SELECT message FROM scans WHERE id = ?", (r.scan_id,)).fetchone()[0]
    assert str(stash / "sub") in msg
    cat.close()


@pytest.mark.parametrize("walk", ["find", "python"])
def test_files_gone_from_a_mounted_nested_filesystem_are_dropped(tmp_path, monkeypatch, walk):
    cfg, cat, _stash = _nested_unmounted(tmp_path, monkeypatch, walk, sub_mounted=True)
    r = scan_pool(cat, cfg.primary, cfg.scan)
    assert (r.removed, r.unmounted) == (50, [])
    assert cat.counts()["paths"] == 1000
    cat.close()


@pytest.mark.parametrize("sub_mounted", [False, True])
def test_an_arr_delete_event_keeps_a_row_the_scan_keeps(tmp_path, monkeypatch, sub_mounted):
    # An *arr sends missingFromDisk for every file of a nested dataset that dropped: the event
    # path used to forget each of those rows (and its hash) though the scan keeps them. A file
    # gone from a mounted filesystem is still forgotten at once.
    from qbhook.events import worker
    from qbhook.events.parse import parse_arr

    cfg, cat, stash = _nested_unmounted(tmp_path, monkeypatch, "python", sub_mounted=sub_mounted)
    victim = str(stash / "sub/7.bin")
    hashed = cat.inode_by_path(victim)
    ev = parse_arr(
        {
            "eventType": "MovieFileDelete",
            "deleteReason": "missingFromDisk",
            "movie": {"folderPath": str(stash / "sub")},
            "movieFile": {"path": victim},
        }
    )
    worker.torrents_touching(cfg, cat, [], list(ev.paths))
    if sub_mounted:
        assert cat.inode_by_path(victim) is None
    else:
        assert cat.inode_by_path(victim) == hashed
        assert scan_pool(cat, cfg.primary, cfg.scan).unmounted == [str(stash / "sub")]
        assert cat.counts()["paths"] == 1050
    cat.close()


def test_files_of_a_users_fuse_mount_not_mounted_are_dropped(tmp_path, monkeypatch):
    # A less-trusted user's mount: not mounting it would otherwise keep its rows for ever.
    fs_id = "mount:user:fuse.sshfs:me@host:/stash/sub"
    cfg, cat, _stash = _nested_unmounted(tmp_path, monkeypatch, "python", sub_mounted=False, fs_id=fs_id)
    r = scan_pool(cat, cfg.primary, cfg.scan)
    assert (r.removed, r.unmounted) == (50, [])
    assert cat.counts()["paths"] == 1000
    cat.close()


@pytest.mark.parametrize("walk", ["find", "python"])
def test_forget_unmounted_drops_only_that_filesystems_kept_paths(tmp_path, monkeypatch, caplog, walk):
    cfg, cat, stash = _nested_unmounted(tmp_path, monkeypatch, walk, sub_mounted=False)
    with caplog.at_level("WARNING", logger="qbhook.catalog.scan"):
        kept = scanner.scan_pools(cat, [cfg.primary], cfg.scan, forget_unmounted=[str(tmp_path / "elsewhere")])
    assert kept[0].removed == 0 and cat.counts()["paths"] == 1050
    assert any(f"--forget-unmounted {stash / 'sub'}" in rec.getMessage() for rec in caplog.records)
    [r] = scanner.scan_pools(cat, [cfg.primary], cfg.scan, forget_unmounted=[str(stash / "sub") + "/"])
    assert (r.removed, r.unmounted) == (50, [])
    assert cat.counts()["paths"] == 1000
    cat.close()


@pytest.mark.parametrize("walk", ["find", "python"])
def test_forget_unmounted_is_not_counted_by_the_mass_delete_guard(tmp_path, monkeypatch, walk):
    # 400 paths of 1,400 (29 %, over the guard's 100 and 10 %): naming the dataset used to trip
    # the guard, and the only way past it was --allow-mass-delete for every pool.
    cfg, cat, stash = _nested_unmounted(tmp_path, monkeypatch, walk, sub_mounted=False, n_sub=400)
    [r] = scanner.scan_pools(cat, [cfg.primary], cfg.scan, forget_unmounted=[str(stash / "sub")])
    assert (r.status, r.removed, r.forgotten, r.unmounted) == ("ok", 400, 400, [])
    assert r.as_dict()["forgotten"] == 400 and cat.counts()["paths"] == 1000
    msg = cat.conn.execute("SELECT message FROM scans WHERE id = ?", (r.scan_id,)).fetchone()[0]
    assert msg == f"forgotten: {stash / 'sub'} (400)"
    cat.close()


@pytest.mark.parametrize("walk", ["find", "python"])
def test_forget_unmounted_leaves_the_other_drops_to_the_guard(tmp_path, monkeypatch, walk):
    cfg, cat, stash = _nested_unmounted(tmp_path, monkeypatch, walk, sub_mounted=False, n_sub=400)
    for i in range(150):  # 150 of the 1,000 others: 15 %, a refusal of its own
        os.unlink(stash / f"a/{i}.bin")
    with pytest.raises(MassDeleteRefused, match="would drop 150 of 1,000 known paths .*besides the 400 of --forget"):
        scanner.scan_pools(cat, [cfg.primary], cfg.scan, forget_unmounted=[str(stash / "sub")])
    assert cat.counts()["paths"] == 1400
    cat.close()


@pytest.mark.parametrize("walk", ["find", "python"])
def test_a_scan_leaves_rows_another_process_wrote_after_its_walk(env, tmp_path, monkeypatch, walk):
    """`serve`'s executor records paths while `qbhook scan` walks (no lock between them): the
    scan's stat is then older than the row, and neither writes it back nor drops the path."""
    cfg, cat, stash = env
    relinked = write(stash / "t/relinked.bin", b"old")
    hidden = write(stash / "t/hidden.bin", b"hidden")
    kept = write(stash / "t/kept.bin", b"kept")
    for i in range(5):
        write(stash / f"t/{i}.bin", b"%d" % i)
    scan_pool(cat, cfg.primary, cfg.scan)
    os.utime(relinked, ns=(1, 1))  # the walk will want to write it (its old inode, new mtime)
    os.rename(hidden, tmp_path / "held.bin")  # a move's hide: the walk will find it gone
    pool = cfg.primary.name
    real = scanner._find_walk if walk == "find" else scanner._python_walk

    def walk_then_other_writer(*a, **k):
        out = real(*a, **k)
        os.rename(tmp_path / "held.bin", hidden)  # put back, and recorded by the executor
        os.link(kept, stash / "t/new.bin")
        os.rename(stash / "t/new.bin", relinked)  # relinked onto another inode, and recorded
        other = Catalog.open(cfg.catalog)
        try:
            other.record_path(hidden, pool)
            other.record_path(relinked, pool)
        finally:
            other.close()
        return out

    if walk == "find":
        _find_only(monkeypatch)
        monkeypatch.setattr(scanner, "_find_walk", walk_then_other_writer)
    else:
        monkeypatch.setattr(scanner, "FIND_WALK", False)
        monkeypatch.setattr(scanner, "_python_walk", walk_then_other_writer)
    r = scan_pool(cat, cfg.primary, cfg.scan)
    assert cat.inode_by_path(relinked).ino == os.lstat(kept).st_ino  # not written back to its old inode
    assert cat.inode_by_path(hidden).ino == os.lstat(hidden).st_ino  # not dropped
    assert r.removed == 0
    monkeypatch.undo()
    again = scan_pool(cat, cfg.primary, cfg.scan)
    assert (again.added, again.changed, again.removed) == (0, 0, 0)  # the other writer's rows are current


def test_a_flush_keeps_the_recheck_for_paths_the_walk_found_missing(env, tmp_path, monkeypatch):
    """A Python rescan writes its changes in batches; a batch re-checks only its own rows. A path
    the walk found missing, put back and recorded by another process before a batch, keeps its row."""
    cfg, cat, stash = env
    hidden = write(stash / "t/hidden.bin", b"hidden")
    write(stash / "t/sub/old.bin", b"old")
    scan_pool(cat, cfg.primary, cfg.scan)
    os.rename(hidden, tmp_path / "held.bin")  # a move's hide: t/ is listed before t/sub/ is entered
    for i in range(4):
        write(stash / f"t/sub/{i}.bin", b"%d" % i)
    real = scanner._flush
    calls = []

    def other_writer_then_flush(*a, **k):
        if not calls:
            os.rename(tmp_path / "held.bin", hidden)  # put back, and recorded by the executor
            other = Catalog.open(cfg.catalog)
            try:
                other.record_path(hidden, cfg.primary.name)
            finally:
                other.close()
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(scanner, "FIND_WALK", False)
    monkeypatch.setattr(scanner, "_FLUSH_EVERY", 2)
    monkeypatch.setattr(scanner, "_flush", other_writer_then_flush)
    r = scan_pool(cat, cfg.primary, cfg.scan)
    assert calls and r.removed == 0
    assert cat.inode_by_path(hidden).ino == os.lstat(hidden).st_ino  # not dropped


def test_a_first_scan_rereads_no_row_when_no_other_writer_came(env, monkeypatch):
    """The walk registers the filesystem it meets, which moves the write generation: that bump
    is its own (fs_for_path's on_write), so the rows it loaded are not read again before its
    writes (they were, all of them, at every first scan: 20,000 at bench_converge's 10,000 pairs)."""
    cfg, cat, stash = env
    for i in range(6):
        write(stash / f"t/{i}.bin", b"%d" % i)
    reads = []
    real = Catalog.stat_rows
    monkeypatch.setattr(Catalog, "stat_rows", lambda self, paths: reads.append(list(paths)) or real(self, paths))
    monkeypatch.setattr(scanner, "FIND_WALK", False)
    monkeypatch.setattr(scanner, "_FLUSH_EVERY", 2)
    r = scan_pool(cat, cfg.primary, cfg.scan)
    assert (r.added, reads) == (6, [])
    assert cat.counts()["paths"] == 6


def test_a_registration_after_another_writer_leaves_the_baseline_behind():
    """Only a bump that began at the baseline is the walk's own: after another writer's, the
    rows are read again (current) whatever the walk's own registration did."""
    loaded = scanner._Loaded(5)
    loaded.registered(5, 7)
    assert loaded.generation == 7
    loaded.registered(8, 9)  # someone wrote between: 7 -> 8
    assert loaded.generation == 7
    gone = scanner._Loaded(None)
    gone.registered(None, 3)
    assert gone.generation is None
