#!/usr/bin/env python3
"""A *safe* floor for issue 12's target: converge_floor.py plus every check the non-negotiables
require of a convergence, and nothing else. Not qbhook (no plan, no report, no crash replay, no
locks, no policy): it asks whether a set-based convergence pass that keeps qbhook's safety rules
could meet ``<= 1.5x jdupes -L`` in Python on this machine (``bench_converge.py --safe-floor``,
timed in the same rounds as qbhook, jdupes and the plain floor).

What it adds to converge_floor.py, each a rule of the design:
  - **torrents**: the client's listing (the same 10,000 one-file torrents qbhook's stub lists,
    built from the sizes file as the stub is); a seeding file is replaced only if every one of
    its links is a file of a complete, stable torrent whose listed size is the file's size;
  - **no link outside the seeding tree**: a victim's link count equals its seeding links known
    to the catalog, all inside the seeding root (else it stays: a library may use it);
  - **verified folders**: every file is hashed and every folder acted in is reached from the
    configured pool root one component at a time (``openat``, ``O_NOFOLLOW | O_DIRECTORY``),
    never by a path string; each opened file is checked (``fstat``) to be the inode the walk
    catalogued;
  - **identity at the act**: both ends re-checked through those folders right before the act
    on (inode, size, mtime, ctime), the facts the hash is valid for; the temporary link
    checked to be the kept inode; the name checked again after the rename;
  - **a normalized catalog**: filesystems, inodes (hash on the inode) and paths, as qbhook keys
    identity (filesystem, inode) plus content hash;
  - **durability**: each batch's intents committed (``synchronous=FULL``) before any act, one
    ``syncfs`` per batch before its outcomes are committed.

``--two``: the same work on both cores, the most a parallel design could gain (Python threads
gain nothing here: measured, the GIL serializes the per-file work). The candidates are hashed by
two forked children while this process writes the catalog rows, and each batch's relinks are
split by victim inode between a forked child and this process, after the batch's intents are
committed and before its ``syncfs``.

``--batch N``: relinks per batch (default 1,000, qbhook's): each batch costs one durable commit
of its intents, one of its outcomes, one ``syncfs`` and (``--two``) one fork.

  python bench/converge_safe_floor.py [--two] [--batch N] POOL CATALOG SIZES_JSON   # one JSON line
"""

from __future__ import annotations

import ctypes
import json
import os
import pickle
import resource
import sqlite3
import sys
import time
from collections import defaultdict

import blake3
from dupes_floor import walk  # the same walk (this folder is on sys.path when run as a script)

SEED_REL = "data/media/torrents/seeding"
BATCH = 1000  # qbhook's converge batch; --batch N to measure another
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR = os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
STABLE = {"uploading", "stalledUP", "pausedUP", "stoppedUP", "queuedUP", "forcedUP"}
_libc = ctypes.CDLL(None, use_errno=True)


class Folders:
    """Folder descriptors reached from the pool root one component at a time, never by path.

    The most recently used ``keep`` folders stay open (items come in path order, and an act
    needs two: the victim's and the kept file's); the root is never closed."""

    def __init__(self, root: str, keep: int = 32):
        self.root = root.rstrip("/")
        self.keep = keep
        self.fds: dict[str, int] = {"": os.open(self.root, _DIR)}

    def of(self, path: str) -> tuple[int, str]:
        """(descriptor of path's folder, path's last name); refuses a path outside the root."""
        if not path.startswith(self.root + "/"):
            raise PermissionError(f"{path} is outside {self.root}")
        folder, _, name = path[len(self.root) + 1 :].rpartition("/")
        return self._dir(folder), name

    def _dir(self, folder: str) -> int:
        fd = self.fds.pop(folder, None)
        if fd is None:
            parent, _, last = folder.rpartition("/")
            fd = os.open(last, _DIR, dir_fd=self._dir(parent))  # a symlink here: refused (ELOOP)
            if len(self.fds) > self.keep:
                oldest = next(f for f in self.fds if f)
                os.close(self.fds.pop(oldest))
        self.fds[folder] = fd  # most recent last
        return fd

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


def candidates(files) -> list[list[tuple]]:
    """The size groups holding more than one inode (what must be hashed)."""
    by_size = defaultdict(list)
    for f in files:
        by_size[f[3]].append(f)
    return [sorted(g) for g in by_size.values() if len({(f[1], f[2]) for f in g}) > 1]


def hash_verified(groups: list[list[tuple]], folders: Folders) -> dict[str, tuple[bytes, tuple]]:
    """BLAKE3 of every file of ``groups``, each opened through its verified folder and checked to
    be the walked inode: path -> (hash, (ino, size, mtime, ctime))."""
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    out = {}
    for group in groups:
        for f in group:
            d, name = folders.of(f[0])
            fd = os.open(name, _FILE, dir_fd=d)
            try:
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) != f[1:5]:
                    continue  # changed since the walk: not this run's
                h = blake3.blake3()
                while n := os.readv(fd, [buf]):
                    h.update(view[:n])
                out[f[0]] = (h.digest(), (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
            finally:
                os.close(fd)
    return out


def hash_share(root: str, groups) -> dict:
    folders = Folders(root)
    try:
        return hash_verified(groups, folders)
    finally:
        folders.close()


def torrents_of(seed_root: str, sizes: list[int]) -> list[dict]:
    """What the stub client lists: one complete torrent per seeding folder T<i>."""
    movies = seed_root + "/movies"
    return [
        {
            "hash": f"{i:040x}",
            "save_path": movies,
            "state": "stalledUP",
            "progress": 1.0,
            "files": [{"name": f"T{i}/m{i}.bin", "size": size, "priority": 1}],
        }
        for i, size in enumerate(sizes)
    ]


def seeded_paths(torrents: list[dict]) -> dict[str, int]:
    """Every file of a complete, stable torrent (path -> listed size); a path any other torrent
    lists as not complete is left out."""
    ok: dict[str, int] = {}
    bad: set[str] = set()
    for t in torrents:
        good = t["state"] in STABLE and t["progress"] == 1.0
        for f in t["files"]:
            p = t["save_path"] + "/" + f["name"]
            if good and f["priority"] > 0:
                ok.setdefault(p, f["size"])
            else:
                bad.add(p)
    for p in bad:
        ok.pop(p, None)
    return ok


def catalog(db: str, files) -> tuple[sqlite3.Connection, dict[tuple[int, int], int]]:
    """The normalized catalog of the walk, hashes not yet known (``record_hashes``); returns it and
    (dev, ino) -> inode id. The transaction stays open for the hashes."""
    con = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.executescript(
        """
        CREATE TABLE fs(id INTEGER PRIMARY KEY, dev INT UNIQUE, uuid TEXT);
        CREATE TABLE inodes(id INTEGER PRIMARY KEY, fs INT, ino INT, size INT, mtime INT, ctime INT,
                            hash BLOB, UNIQUE(fs, ino));
        CREATE TABLE paths(path BLOB PRIMARY KEY, inode INT, pool TEXT);
        CREATE INDEX paths_inode ON paths(inode);
        CREATE TABLE journal(id INTEGER PRIMARY KEY, path BLOB, victim INT, keep INT, state TEXT);
        """
    )
    con.execute("BEGIN")
    fs = {}
    for dev in {f[1] for f in files}:
        fs[dev] = con.execute("INSERT INTO fs(dev, uuid) VALUES (?, ?)", (dev, f"dev:{dev}")).lastrowid
    ids: dict[tuple[int, int], int] = {}
    rows = []
    for f in files:
        key = (f[1], f[2])
        if key not in ids:
            ids[key] = con.execute(
                "INSERT INTO inodes(fs, ino, size, mtime) VALUES (?,?,?,?)", (fs[f[1]], f[2], f[3], f[4])
            ).lastrowid
        rows.append((os.fsencode(f[0]), ids[key], "stash"))
    con.executemany("INSERT INTO paths VALUES (?,?,?)", rows)
    return con, ids


def record_hashes(con: sqlite3.Connection, files, ids, hashes) -> None:
    """Each hashed inode's hash and the ctime it is valid for; commits the catalog."""
    con.executemany(
        "UPDATE inodes SET hash = ?, ctime = ? WHERE id = ?",
        ((h[0], h[1][3], ids[(f[1], f[2])]) for f in files if (h := hashes.get(f[0])) is not None),
    )
    con.execute("COMMIT")


def pairs_to_converge(files, hashes, seeded: dict[str, int], seed: str):
    """(victim file, kept file) pairs: a victim is a seeding inode, all of whose links are
    known seeding files of complete torrents (nlink == those links), with the content of an
    inode on the same filesystem that is kept (a library's first)."""
    links = defaultdict(list)
    for f in files:
        links[(f[1], f[2])].append(f)
    kept: dict[tuple[int, bytes], tuple] = {}
    for f in files:
        if not f[0].startswith(seed) and f[0] in hashes:
            kept.setdefault((f[1], hashes[f[0]][0]), f)
    out = []
    for key, fs in links.items():
        first = fs[0]
        if not first[0].startswith(seed) or first[0] not in hashes or first[3] == 0:
            continue
        st = hashes[first[0]][1]
        if not all(f[0].startswith(seed) and seeded.get(f[0]) == f[3] for f in fs):
            continue
        k = kept.get((key[0], hashes[first[0]][0]))
        if k is None or (k[1], k[2]) == key:
            continue
        out += [(f, k, st, len(fs)) for f in fs]
    return out


def relink(folders: Folders, s, k, s_facts, s_links: int, k_facts) -> bool:
    """Replace seeding file ``s`` by a link of kept file ``k``, both re-checked through verified
    folders; ``s_links``: the victim's links not yet replaced (its link count must be exactly that).

    The bench's victims have one link each. A victim with several would need its ctime carried
    over each of this run's own relinks (as qbhook's catalog does); this floor refuses the
    second link instead (its ctime moved), which is safe and not measured here."""
    sfd, sname = folders.of(s[0])
    kfd, kname = folders.of(k[0])
    st = os.stat(sname, dir_fd=sfd, follow_symlinks=False)
    kt = os.stat(kname, dir_fd=kfd, follow_symlinks=False)
    if (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns) != s_facts or st.st_nlink != s_links:
        return False  # changed since hashed, or a link outside the known seeding links
    if (kt.st_dev, kt.st_ino, kt.st_size, kt.st_mtime_ns, kt.st_ctime_ns) != (st.st_dev, *k_facts):
        return False
    tmp = ".floor-tmp-" + sname
    os.link(kname, tmp, src_dir_fd=kfd, dst_dir_fd=sfd, follow_symlinks=False)
    if os.stat(tmp, dir_fd=sfd, follow_symlinks=False).st_ino != kt.st_ino:
        os.unlink(tmp, dir_fd=sfd)
        return False
    os.rename(tmp, sname, src_dir_fd=sfd, dst_dir_fd=sfd)
    return os.stat(sname, dir_fd=sfd, follow_symlinks=False).st_ino == kt.st_ino


def forked(work) -> tuple[int, int]:
    """Run ``work()`` in a forked child: (its pid, the read end its pickled result comes back on)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns, leaves without cleanup (the parent owns the catalog)
        os.close(r)
        with os.fdopen(w, "wb") as out:
            out.write(pickle.dumps(work()))
        os._exit(0)
    os.close(w)
    return pid, r


def collect(kid: tuple[int, int]):
    pid, r = kid
    with os.fdopen(r, "rb") as back:
        got = pickle.loads(back.read())
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise RuntimeError(f"child {pid} failed ({status})")
    return got


def act(folders: Folders, items, replaced, hashes) -> tuple[list, int, dict]:
    """Relink ``items`` ((journal id, (victim, kept, facts, links))): the done ones, the bytes
    freed, and the updated count of replaced links per victim inode."""
    done, freed, counts = [], 0, {}
    for i, (s, k, s_facts, s_links) in items:
        key = (s[1], s[2])
        n = counts.get(key, replaced[key])
        if relink(folders, s, k, s_facts, s_links - n, hashes[k[0]][1]):
            counts[key] = n + 1
            freed += s[3] if s_links - n == 1 else 0  # the victim's last link: its bytes are free
            done.append((i, s, k))
    replaced.update(counts)
    return done, freed, counts


def main(root: str, db: str, sizes_json: str, two: bool = False, batch: int = BATCH) -> dict:
    t0 = time.perf_counter()
    phases = {}

    def mark(name: str) -> None:
        phases[name] = time.perf_counter() - t0 - sum(phases.values())

    root = os.path.abspath(root)
    seed = os.path.join(root, SEED_REL) + "/"
    files = walk([root])
    mark("walk")
    folders = Folders(root)
    groups = candidates(files)
    if two:  # hashing in two forked children (a reader each) while this process writes the rows
        shares: list[list] = [[], []]
        load = [0, 0]
        for g in sorted(groups, key=lambda g: -g[0][3] * len(g)):
            k = 0 if load[0] <= load[1] else 1
            shares[k].append(g)
            load[k] += g[0][3] * len(g)
        kids = [forked(lambda share=share: hash_share(root, share)) for share in shares]
        con, ids = catalog(db, files)
        mark("catalog rows, beside the hashing")
        hashes = {}
        for kid in kids:
            hashes.update(collect(kid))
        mark("waiting for the hashes")
    else:
        hashes = hash_verified(groups, folders)
        mark("hash")
        con, ids = catalog(db, files)
    record_hashes(con, files, ids, hashes)
    mark("catalog")
    with open(sizes_json) as fh:
        seeded = seeded_paths(torrents_of(seed.rstrip("/"), json.load(fh)))
    pairs = pairs_to_converge(files, hashes, seeded, seed)
    mark("torrents + pairs")
    freed, next_id, replaced = 0, 1, defaultdict(int)
    for b in range(0, len(pairs), batch):
        items_b = pairs[b : b + batch]
        jids = range(next_id, next_id + len(items_b))
        next_id += len(items_b)
        with con:
            con.execute("BEGIN")
            con.executemany(
                "INSERT INTO journal VALUES (?,?,?,?,'intent')",
                (
                    (i, os.fsencode(s[0]), ids[(s[1], s[2])], ids[(k[1], k[2])])
                    for i, (s, k, _f, _n) in zip(jids, items_b, strict=True)
                ),
            )
        items = list(zip(jids, items_b, strict=True))
        if two:  # half the batch (split by victim inode) in a forked child, the other half here
            halves: list[list] = [[], []]
            for it in items:
                halves[hash((it[1][0][1], it[1][0][2])) & 1].append(it)
            kid = forked(lambda half=halves[1]: act(Folders(root), half, replaced, hashes))
            got = act(folders, halves[0], replaced, hashes)
            theirs = collect(kid)
            for key, n in theirs[2].items():
                replaced[key] = n
            done, freed = got[0] + theirs[0], freed + got[1] + theirs[1]
        else:
            done, gained, _ = act(folders, items, replaced, hashes)
            freed += gained
        if not os.environ.get("NOSYNC") and _libc.syncfs(folders.fds[""]) != 0:
            raise OSError(ctypes.get_errno(), "syncfs")
        with con:
            con.execute("BEGIN")
            con.executemany("UPDATE journal SET state='done' WHERE id=?", ((i,) for i, _s, _k in done))
            con.executemany(
                "UPDATE paths SET inode=? WHERE path=?",
                ((ids[(k[1], k[2])], os.fsencode(s[0])) for _i, s, k in done),
            )
            con.executemany(
                "DELETE FROM inodes WHERE id=? AND NOT EXISTS (SELECT 1 FROM paths WHERE inode=inodes.id)",
                ((ids[(s[1], s[2])],) for _i, s, _k in done),
            )
    mark("relink batches")
    folders.close()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # --two's relinking children
    return {
        "files": len(files),
        "pairs": len(pairs),
        "bytes_freed": freed,
        "seconds": round(time.perf_counter() - t0, 3),
        "cpu_seconds": round(ru.ru_utime + ru.ru_stime + kids.ru_utime + kids.ru_stime, 3),
        "phases": {k: round(v, 3) for k, v in phases.items()},
    }


if __name__ == "__main__":
    argv, two, batch = sys.argv[1:], False, BATCH
    if "--two" in argv:
        argv.remove("--two")
        two = True
    if "--batch" in argv:
        i = argv.index("--batch")
        batch = int(argv[i + 1])
        del argv[i : i + 2]
    if len(argv) != 3 or batch < 1:
        sys.exit(__doc__.rsplit("\n\n", 1)[-1].strip())
    print(json.dumps(main(*argv, two=two, batch=batch)))
