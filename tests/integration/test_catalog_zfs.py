"""The catalog on real zfs-fuse pools: stable filesystem ids, datasets, links, unmounted pools,
duplicate content and `qbhook find`, driven through the real CLI in a fresh process each time
(as cron or a shell would run it) with a config file written by the test."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import blake3
import pytest
import yaml

from qbhook.catalog.scan import scan_pool
from qbhook.catalog.store import Catalog
from qbhook.config import load_config
from qbhook.sandbox.zfs import _retry, _run, dataset_guid, remount
from tests.helpers import b3, put

pytestmark = pytest.mark.integration

LIBRARY = "data/media/library"
SEED = "data/media/torrents/seeding"
KiB = 1024


class Bed:
    def __init__(self, pools, tmp_path: Path, scan: dict | None = None):
        self.pools = pools
        self.stash: Path = pools["stash"]
        self.pool: Path = pools["pool"]
        self.library: Path = self.stash / LIBRARY
        self.catalog = tmp_path / "catalog.sqlite"
        for root in (self.stash, self.pool):
            (root / SEED).mkdir(parents=True, exist_ok=True)
        self.config = tmp_path / "config.yaml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "catalog": str(self.catalog),
                    "pools": {
                        "stash": {"path": str(self.stash), "role": "primary"},
                        "pool": {"path": str(self.pool), "role": "cold"},
                    },
                    "seeding_roots": {"stash": str(self.stash / SEED), "pool": str(self.pool / SEED)},
                    "scan": {"settle_seconds": 0, **(scan or {})},
                },
                sort_keys=False,
            )
        )

    @property
    def stash_ds(self) -> str:
        return self.pools.pools["stash"].zpool

    @property
    def library_ds(self) -> str:
        return f"{self.stash_ds}/{LIBRARY}"

    def run(self, *args: str | bytes, expect: int | None = 0) -> subprocess.CompletedProcess:
        """`qbhook --config CFG ARGS...` in a fresh process (bytes args reach argv as raw bytes)."""
        cmd = [sys.executable, "-m", "qbhook", "--config", str(self.config), *args]
        r = subprocess.run(cmd, capture_output=True, timeout=300, check=False)
        if expect is not None:
            assert r.returncode == expect, (
                r.returncode,
                r.stdout.decode(errors="replace"),
                r.stderr.decode(errors="replace"),
            )
        return r

    def json(self, *args: str | bytes, expect: int = 0) -> dict:
        return json.loads(self.run("--json", *args, expect=expect).stdout)

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.catalog}?mode=ro", uri=True)

    def dump(self, dev: bool = True) -> dict:
        """Everything a scan may touch except the scans log itself (and filesystems.last_seen);
        ``dev=False``: without the st_dev mapping either (a remount may change it)."""
        cols = "id, fsid, kind, fstype, source, mountpoint, " + ("dev, " if dev else "") + "first_seen"
        with self.db() as c:
            out = {t: c.execute(f"SELECT * FROM {t} ORDER BY id").fetchall() for t in ("inodes", "paths")}
            out["filesystems"] = c.execute(f"SELECT {cols} FROM filesystems ORDER BY id").fetchall()
        return out


def blob(tag: str, size: int) -> bytes:
    """Deterministic content of ``size`` bytes, different for each tag."""
    seed = blake3.blake3(tag.encode()).digest(length=size) if size else b""
    return seed


@pytest.fixture
def bed(zfs_pools, tmp_path):
    return Bed(zfs_pools, tmp_path)


def _scans(out: dict) -> dict:
    return {s["pool"]: (s["files_seen"], s["added"], s["changed"], s["removed"]) for s in out["scans"]}


# --------------------------------------------------------------------------- identity


def test_fsid_survives_remount_with_new_st_dev(bed):
    s_file = put(bed.stash / SEED / "Show.S01/e01.mkv", blob("e01", 200 * KiB))
    l_file = put(bed.library / "Show/Season 01/e01.mkv", blob("lib", 70 * KiB))
    put(bed.pool / SEED / "Other/o.mkv", blob("o", 50 * KiB))
    first = bed.json("scan", "--hash")
    assert _scans(first) == {"stash": (2, 2, 0, 0), "pool": (1, 1, 0, 0)}
    assert first["hashing"]["hashed"] == 3
    before = bed.dump()
    fs_rows = {r[1]: r for r in before["filesystems"]}  # fsid -> row
    guids = {dataset_guid(bed.stash_ds), dataset_guid(bed.library_ds), dataset_guid(bed.pools.pools["pool"].zpool)}
    assert set(fs_rows) == {f"zfs:{g}" for g in guids}
    old_dev = os.stat(bed.stash).st_dev

    # A plain export/import: zfs-fuse hands the freed device numbers straight back.
    remount(bed.pools, "stash")
    same = bed.json("scan")
    assert _scans(same) == {"stash": (2, 0, 0, 0), "pool": (1, 0, 0, 0)}

    # Simulate what a reboot does to the dev mapping: forget it, and make it point at the
    # wrong filesystems. Identity must come from the dataset GUID, not from st_dev.
    with sqlite3.connect(bed.catalog) as c:
        rows = c.execute("SELECT id, dev FROM filesystems ORDER BY id").fetchall()
        rotated = [r[1] for r in rows[1:] + rows[:1]]
        for (fid, _), dev in zip(rows, rotated):
            c.execute("UPDATE filesystems SET dev=? WHERE id=?", (dev, fid))
    assert _scans(bed.json("scan")) == {"stash": (2, 0, 0, 0), "pool": (1, 0, 0, 0)}
    with sqlite3.connect(bed.catalog) as c:
        c.execute("UPDATE filesystems SET dev=NULL")
    assert _scans(bed.json("scan")) == {"stash": (2, 0, 0, 0), "pool": (1, 0, 0, 0)}

    # A real st_dev change: something else mounts while the pool is away.
    new_dev = remount(bed.pools, "stash", force_new_dev=True)
    assert new_dev != old_dev
    out = bed.json("scan", "--hash")
    assert _scans(out) == {"stash": (2, 0, 0, 0), "pool": (1, 0, 0, 0)}
    assert out["hashing"] == {"hashed": 0, "cached": 3, "bytes_read": 0, "unsettled": 0, "missing": 0}
    after = bed.dump()
    # Same filesystem rows (ids, fsids), now mapped to the current st_dev; inodes and
    # their hashes untouched; every path still on the same inode row.
    assert [(r[0], r[1]) for r in after["filesystems"]] == [(r[0], r[1]) for r in before["filesystems"]]
    assert {r[1]: r[6] for r in after["filesystems"]}[f"zfs:{dataset_guid(bed.stash_ds)}"] == new_dev
    assert after["inodes"] == before["inodes"]
    assert after["paths"] == before["paths"]
    for path, data, ds in (
        (s_file, blob("e01", 200 * KiB), bed.stash_ds),
        (l_file, blob("lib", 70 * KiB), bed.library_ds),
    ):
        found = bed.json("find", path)
        assert found["blake3"] == b3(data)
        assert found["fsid"] == f"zfs:{dataset_guid(ds)}"


def test_long_running_catalog_follows_a_remount(bed):
    """One Catalog object across a remount (the `serve` daemon keeps one for days): its
    st_dev cache must not send files to the filesystem that used to have that number."""
    a = put(bed.stash / "data/a.bin", b"A" * 1000)
    lib = put(bed.library / "lib.bin", b"L" * 1000)
    cfg = load_config(bed.config)
    cat = Catalog.open(cfg.catalog)
    try:
        assert scan_pool(cat, cfg.primary, cfg.scan).added == 2
        fs_of = {p: cat.inode_by_path(p).fsid for p in (a, lib)}
        assert fs_of[a] != fs_of[lib]
        old = {os.stat(bed.stash).st_dev, os.stat(bed.library).st_dev}
        remount(bed.pools, "stash", force_new_dev=True)
        # On an otherwise quiet machine the root dataset now has the library's old number.
        reused = os.stat(bed.stash).st_dev in old
        r = scan_pool(cat, cfg.primary, cfg.scan)
        assert (r.added, r.changed, r.removed) == (0, 0, 0), (r.as_dict(), reused)
        assert {p: cat.inode_by_path(p).fsid for p in (a, lib)} == fs_of
        assert cat.fsid(cat.fs_for_path(a)) == fs_of[a]
        assert cat.fsid(cat.fs_for_path(lib)) == fs_of[lib]
    finally:
        cat.close()


def test_nested_dataset_is_its_own_filesystem(bed):
    top = put(bed.stash / SEED / "Movie/m.mkv", blob("m", 64 * KiB))
    inner = put(bed.library / "Movies/Movie (2020)/m.mkv", blob("m", 64 * KiB))
    bed.run("dupes")  # scan + hash what collides (find reports copies already hashed)
    f_top, f_inner = bed.json("find", top), bed.json("find", inner)
    assert f_top["fsid"] == f"zfs:{dataset_guid(bed.stash_ds)}"
    assert f_inner["fsid"] == f"zfs:{dataset_guid(bed.library_ds)}"
    assert f_top["pool"] == f_inner["pool"] == "stash"
    # ...which is why the same content there is a copy, not a link, and linking fails:
    with pytest.raises(OSError) as e:
        os.link(top, bed.library / "Movies/linked.mkv")
    assert e.value.errno == errno.EXDEV
    assert [c["paths"] for c in f_top["copies"]] == [[os.fsdecode(inner)]]
    d = bed.json("dupes", "--no-scan")
    (s,) = d["sets"]
    assert s["scope"] == "within-pool" and len({c["fsid"] for c in s["copies"]}) == 2


def test_hardlinks_are_one_inode_counted_once(bed):
    data = blob("hl", 300 * KiB)
    a = put(bed.stash / SEED / "Show/e01.mkv", data)
    os.makedirs(bed.stash / "data/media/tv/Show")
    os.link(a, bed.stash / "data/media/tv/Show/e01.mkv")
    os.makedirs(bed.stash / SEED / "Show.cross-seed")
    os.link(a, bed.stash / SEED / "Show.cross-seed/e01.mkv")
    out = bed.json("scan", "--hash")
    assert _scans(out)["stash"] == (3, 3, 0, 0)
    assert out["catalog"]["inodes"] == 1 and out["catalog"]["paths"] == 3
    assert out["catalog"]["bytes"] == len(data)  # counted once, not three times
    assert out["hashing"]["hashed"] == 1
    f = bed.json("find", a)
    assert f["nlink"] == 3 and len(f["links"]) == 3 and f["unknown_links"] == 0 and f["copies"] == []
    assert bed.json("dupes", "--no-scan")["sets"] == []  # links of one inode are not duplicates
    # a link the catalog has not seen yet still counts in nlink, and is reported as unknown
    os.link(a, bed.stash / "elsewhere.mkv")
    f = bed.json("find", a)
    assert (f["nlink"], len(f["links"]), f["unknown_links"]) == (4, 3, 1)
    assert _scans(bed.json("scan"))["stash"] == (4, 1, 0, 0)  # the new link (find already saw nlink 4)
    f = bed.json("find", a)
    assert (f["nlink"], len(f["links"]), f["unknown_links"]) == (4, 4, 0)


def test_fresh_files_are_not_cached_with_default_settle(zfs_pools, tmp_path):
    """zfs-fuse timestamps have whole-second resolution, so a same-size rewrite within the second
    after hashing is invisible to stat. The settle margin (default 60 s) is what keeps such a
    hash out of the cache: only files whose mtime is older than the margin are remembered."""
    bed = Bed(zfs_pools, tmp_path, scan={"settle_seconds": 60})
    f = put(bed.stash / SEED / "dl/part.mkv", blob("v1", 64 * KiB))
    out = bed.json("scan", "--hash")
    assert out["hashing"]["hashed"] == 0 and out["hashing"]["unsettled"] == 1
    with open(f, "r+b") as h:  # same size, same second
        h.write(blob("v2", 64 * KiB))
    found = bed.json("find", f)
    assert found["blake3"] is None  # nothing stale was cached ...
    old = os.stat(f).st_mtime_ns - 3600 * 10**9  # ... and once settled it is
    os.utime(f, ns=(old, old))
    assert bed.json("find", f)["blake3"] == b3(blob("v2", 64 * KiB))


# --------------------------------------------------------------------------- unmounted pool


def _unmount(bed, how: str) -> None:
    # _retry: under load zfs-fuse can report "busy" for a moment after the last scan closed its
    # files (the one flake this test had); a real refusal still fails after the retries.
    if how == "unmount":
        for ds in (bed.library_ds, bed.stash_ds):
            r = _retry(["zfs", "unmount", ds])
            assert r.returncode == 0 or "not currently mounted" in r.stderr, r.stderr
    else:
        r = _retry(["zpool", "export", bed.stash_ds])
        assert r.returncode == 0, r.stderr
    assert not os.path.ismount(bed.stash)
    # What the host shows for an unmounted pool: its (empty) mountpoint folder.
    bed.stash.mkdir(exist_ok=True)
    assert list(bed.stash.iterdir()) == []


def _mount_back(bed, how: str) -> None:
    if how == "unmount":
        for ds in (bed.stash_ds, bed.library_ds):
            _run("zfs", "mount", ds)
    else:
        _run("zpool", "import", "-d", str(bed.pools.img_dir), bed.stash_ds)
    assert os.path.ismount(bed.stash) and os.path.ismount(bed.library)


@pytest.mark.parametrize("how", ["unmount", "export"])
def test_scan_of_unmounted_pool_refuses_and_changes_nothing(bed, how):
    for i in range(150):
        put(bed.stash / SEED / f"T{i // 10}/f{i}.bin", b"%d" % i)
    put(bed.library / "keep.bin", b"k")
    put(bed.pool / SEED / "p.bin", b"p")
    first = bed.json("scan")
    assert _scans(first)["stash"] == (151, 151, 0, 0)
    before, identities = bed.dump(), bed.dump(dev=False)

    _unmount(bed, how)
    try:
        r = bed.run("scan", expect=3)
        err = r.stderr.decode()
        assert "would drop 151 of 151 known paths" in err and "nothing was removed" in err, err
        assert "mounted" in err and "--allow-mass-delete" in err
        assert bed.dump() == before
        # dupes scans first: refused the same way; the other pool still scans fine
        assert bed.run("dupes", expect=3).returncode == 3
        assert _scans(bed.json("scan", "pool")) == {"pool": (1, 0, 0, 0)}
        assert bed.dump() == before
        with bed.db() as c:
            assert c.execute("SELECT status FROM scans WHERE pool='stash' ORDER BY id DESC").fetchone() == ("refused",)
    finally:
        _mount_back(bed, how)
    assert _scans(bed.json("scan")) == {"stash": (151, 0, 0, 0), "pool": (1, 0, 0, 0)}
    # Mounted again, the datasets may have other device numbers (a pool mounted meanwhile took
    # the freed ones: this test's one flake, under other test runs): st_dev is a mapping the scan
    # follows, never an identity. Everything else is exactly as before.
    assert bed.dump(dev=False) == identities


# --------------------------------------------------------------------------- dupes / find


def test_dupes_across_and_within_pools(bed):
    S, P = bed.stash / SEED, bed.pool / SEED
    across = blob("across", 1 << 20)  # stash + pool: one set across pools
    a1 = put(S / "Movie.A/a.mkv", across)
    a2 = put(P / "Movie.A.copy/a.mkv", across)
    within = blob("within", 100 * KiB + 7)  # three inodes in pool "stash"
    w1 = put(S / "Show.B/b.mkv", within)
    w2 = put(bed.stash / "data/media/tv/B/b.mkv", within)
    w3 = put(bed.library / "B/b.mkv", within)  # other dataset, same pool
    linked = blob("linked", 256 * KiB)  # 2 links + 1 separate copy
    l1 = put(S / "Show.C/c.mkv", linked)
    os.makedirs(S / "Show.C.xseed")
    os.link(l1, S / "Show.C.xseed/c.mkv")
    l3 = put(P / "Show.C/c.mkv", linked)
    only_links = blob("only-links", 80 * KiB)  # links only: no duplicate
    o1 = put(S / "Show.D/d.mkv", only_links)
    os.makedirs(S / "Show.D.xseed")
    os.link(o1, S / "Show.D.xseed/d.mkv")
    # Same size, same head and tail, different middle: the sample collides, the hash must not.
    head_tail = blob("ht", 64 * KiB)
    x1 = bytearray(head_tail)
    x1[32 * KiB] ^= 1
    put(S / "E/x0.bin", head_tail)
    put(P / "E/x1.bin", bytes(x1))
    put(S / "F/empty0", b"")  # empty files are below min-size 1
    put(P / "F/empty1", b"")

    d = bed.json("dupes")
    sets = {s["blake3"]: s for s in d["sets"]}
    assert set(sets) == {b3(across), b3(within), b3(linked)}
    sa, sw, sl = sets[b3(across)], sets[b3(within)], sets[b3(linked)]
    assert (sa["scope"], len(sa["copies"]), sa["reclaimable_bytes"]) == ("across-pools", 2, len(across))
    assert (sw["scope"], len(sw["copies"]), sw["reclaimable_bytes"]) == ("within-pool", 3, 2 * len(within))
    assert (sl["scope"], len(sl["copies"]), sl["reclaimable_bytes"]) == ("across-pools", 2, len(linked))
    assert d["reclaimable_bytes"] == len(across) + 2 * len(within) + len(linked)
    assert d["across_pools"] == 2
    assert sorted(p for c in sa["copies"] for p in c["paths"]) == sorted(map(os.fsdecode, (a1, a2)))
    assert sorted(p for c in sw["copies"] for p in c["paths"]) == sorted(map(os.fsdecode, (w1, w2, w3)))
    by_nlink = {c["nlink"]: c for c in sl["copies"]}
    assert sorted(by_nlink[2]["paths"]) == sorted([os.fsdecode(l1), str(S / "Show.C.xseed/c.mkv")])
    assert by_nlink[1]["paths"] == [os.fsdecode(l3)] and by_nlink[1]["pools"] == ["pool"]
    assert [s["blake3"] for s in d["sets"]] == [b3(across), b3(linked), b3(within)]  # most reclaimable first

    # Warm run: nothing is read again.
    with bed.db() as c:
        hashed_at = c.execute("SELECT id, hashed_at FROM inodes WHERE hash IS NOT NULL ORDER BY id").fetchall()
    assert bed.json("dupes") == d
    with bed.db() as c:
        assert c.execute("SELECT id, hashed_at FROM inodes WHERE hash IS NOT NULL ORDER BY id").fetchall() == hashed_at

    # Changing one copy drops it from its set (the stat no longer matches the cached hash).
    # zfs-fuse keeps whole-second timestamps: move mtime on explicitly so a rewrite within the
    # same second as the hashing is still a visible change (see test_fresh_files_are_not_cached).
    st = os.stat(w2)
    with open(w2, "r+b") as f:
        f.write(b"changed")
    os.utime(w2, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    d2 = bed.json("dupes")
    assert len({s["blake3"]: s for s in d2["sets"]}[b3(within)]["copies"]) == 2

    human = bed.run("dupes", "--no-scan").stdout.decode()
    assert "across-pools" in human and "within-pool" in human and "reclaimable" in human


def test_find_lists_every_link_and_the_copy_on_the_other_pool(bed):
    data = blob("find", 3 * (1 << 20) + 5)
    src = put(bed.stash / SEED / "Show.S01/e01.mkv", data)
    os.makedirs(bed.stash / "data/media/tv/Show/Season 01")
    lib_link = bed.stash / "data/media/tv/Show/Season 01/Show - S01E01.mkv"
    os.link(src, lib_link)
    copy = put(bed.pool / SEED / "Show.S01/e01.mkv", data)
    os.makedirs(bed.pool / SEED / "Show.S01.xseed")
    os.link(copy, bed.pool / SEED / "Show.S01.xseed/e01.mkv")
    bed.run("dupes")  # scan + hash what collides (find reports copies already hashed)

    f = bed.json("find", lib_link)
    assert f["path"] == str(lib_link) and f["pool"] == "stash"
    assert f["size"] == len(data) and f["nlink"] == 2 and f["blake3"] == b3(data)
    assert sorted(f["links"]) == sorted([os.fsdecode(src), str(lib_link)])
    assert f["inode"] == os.stat(src).st_ino and f["fsid"] == f"zfs:{dataset_guid(bed.stash_ds)}"
    (c,) = f["copies"]
    assert c["fsid"] == f"zfs:{dataset_guid(bed.pools.pools['pool'].zpool)}" and c["nlink"] == 2
    assert sorted(c["paths"]) == sorted([os.fsdecode(copy), str(bed.pool / SEED / "Show.S01.xseed/e01.mkv")])

    # From the other side, and in human form
    g = bed.json("find", copy)
    assert [sorted(x["paths"]) for x in g["copies"]] == [sorted(f["links"])]
    human = bed.run("find", src).stdout.decode()
    assert "2 links" in human and str(lib_link) in human and os.fsdecode(copy) in human

    # A file qbhook has not scanned yet is recorded on the spot
    new = put(bed.pool / SEED / "late.mkv", data)
    h = bed.json("find", new)
    assert h["blake3"] == b3(data) and len(h["copies"]) == 2


def test_weird_names_round_trip_on_zfs(bed):
    data = blob("weird", 40 * KiB)
    names = [b"new\nline.mkv", b"bad\xff\xfeutf8.mkv", "ünïcødé – 日本.mkv".encode(), b" lead space.mkv"]
    sroot = os.fsencode(bed.stash / SEED) + b"/W"
    proot = os.fsencode(bed.pool / SEED) + b"/W"
    for n in names:
        put(sroot + b"/" + n, data + n)  # one content per name ...
        put(proot + b"/" + n, data + n)  # ... present on both pools
    out = bed.json("scan")
    assert _scans(out) == {"stash": (4, 4, 0, 0), "pool": (4, 4, 0, 0)}
    with bed.db() as c:
        stored = {r[0] for r in c.execute("SELECT path FROM paths")}
    assert stored == {r + b"/" + n for r in (sroot, proot) for n in names}
    assert _scans(bed.json("scan")) == {"stash": (4, 0, 0, 0), "pool": (4, 0, 0, 0)}

    d = bed.json("dupes")
    assert len(d["sets"]) == 4 and d["across_pools"] == 4
    for s in d["sets"]:
        got = sorted(os.fsencode(p) for c in s["copies"] for p in c["paths"])  # JSON -> str -> raw bytes
        (n,) = [n for n in names if got[0].endswith(b"/" + n)]
        assert got == sorted([sroot + b"/" + n, proot + b"/" + n])
        assert s["blake3"] == b3(data + n)

    # find takes the raw bytes name on argv and reports it back losslessly
    for n in names:
        f = bed.json("find", sroot + b"/" + n)
        assert os.fsencode(f["path"]) == sroot + b"/" + n
        assert [os.fsencode(p) for c in f["copies"] for p in c["paths"]] == [proot + b"/" + n]
    human = bed.run("dupes", "--no-scan").stdout
    # a newline in a name is shown as \x0a (paths.shown), so each path stays one line
    assert os.fsencode(bed.stash / SEED) + b"/W/new\\x0aline.mkv\n" in human


def test_find_reports_a_copy_nothing_hashed_yet(bed):
    data = blob("fresh", 2 * (1 << 20))
    src = put(bed.stash / SEED / "Fresh/f.mkv", data)
    copy = put(bed.pool / SEED / "Fresh/f.mkv", data)
    bed.run("scan")
    f = bed.json("find", src)
    assert [c["paths"] for c in f["copies"]] == [[os.fsdecode(copy)]]


def test_big_file_on_zfs_fuse_is_hashed_by_the_mapping_worker(bed, monkeypatch):
    """Files of MMAP_MIN and more are hashed by mmap in a worker process; on a FUSE filesystem
    that must work too (not silently fall back to read()), and give BLAKE3 of the content."""
    from qbhook.catalog import hashing

    data = blob("big", hashing.MMAP_MIN + 12345)
    p = put(bed.stash / SEED / "Big/big.mkv", data)
    monkeypatch.setattr(hashing, "_idle", [])
    monkeypatch.setattr(hashing, "_workers_broken", False)

    def no_read_path(fd, hasher=None):
        raise AssertionError("the worker did not hash the file: read() path taken")

    monkeypatch.setattr(hashing, "hash_fd", no_read_path)
    try:
        res = hashing.hash_file(p)
        assert res.digest == blake3.blake3(data).digest() and res.stable
        assert len(hashing._idle) == 1
    finally:
        for w in hashing._idle:
            w.close()
