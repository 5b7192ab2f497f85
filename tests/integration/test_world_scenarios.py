"""Seeded, model-based scenarios on the real parts: the world changes the way a user's stack
changes it, in random order, and qbhook's promises are checked after every run.

The bed: the stash (primary) and pool (cold) zfs-fuse pools with a library folder on the
stash's root dataset (``data/media/movies``, where hardlink imports land), a nested library
dataset (``data/media/library``, another filesystem: only copies land there), and a seeding
root on each pool as the config says; the real qbittorrent-nox with ATM categories
(``movies``, ``tv``: save paths in the stash's seeding root) as the user runs it; qbhook
maintains the ``~noHL`` tag itself (``policy.tag_no_external_links``). Payloads are a few
16 KiB pieces, so every check reads every byte.

The steps (``World.STEPS``), each what a real component of the stack does:

* ``add``: a completed download, ATM on in a category (sometimes ATM off, sometimes one file),
  often imported by its *arr at once (by hardlink, sometimes by copy);
* ``arr_link``: an *arr import by hardlink into the library (a copy when the file is on the
  other pool, as the *arr does across filesystems: a promote case);
* ``arr_copy``: an *arr import by COPY on the same dataset (a convergence case), sometimes onto
  the nested library dataset (never a keeper: another filesystem);
* ``arr_upgrade``: an *arr upgrade deleting a library file;
* ``cross_seed``: cross-seed injects the same content under another root name, or one file of
  a pack as a single-file torrent, hardlinked into ``cross-seed/<tracker>`` on the same
  seeding root, category ``cross-seed``, ATM off;
* ``remove``: a torrent removed from qBittorrent, with or without its data;
* ``partial``: a torrent with a skipped file (priority 0, its bytes never downloaded);
* ``orphan``: a file planted in a seeding tree that no torrent references.

Between steps the real CLI runs in a subprocess: ``plan --json``, ``apply --yes``, and now and
then ``orphans --json``. After every apply (``Promises``):

* content: every (size, BLAKE3) on the pools before the apply is still on them; nothing under
  the library folders, the nested library dataset or the sentinel trees (one outside the pools,
  one beside the seeding roots on each pool) changed path set, inode, size, mtime or bytes;
* qBittorrent: every torrent complete (progress 1, a seeding state), its save path under a
  configured seeding root, ATM off for every torrent whose save path the apply changed;
* placement: a group with a link outside the seeding roots (a library) is on the stash; any
  other group is on the pool unless the plan says it is blocked; no seed-only inode shares its
  content with another seeding or library inode of the same dataset (convergence);
* idempotence: ``plan --json`` right after exits 0 with nothing actionable, and a second
  ``apply --yes`` starts no run and changes nothing on the pools.

CI runs ``SEEDS`` (a few seeds of ``STEPS`` steps). More, by hand (under the lock)::

    QBHOOK_SCENARIO_SEEDS=1-50 QBHOOK_SCENARIO_STEPS=20 flock /tmp/qbhook-integ.lock \\
        .venv/bin/pytest -q -m integration tests/integration/test_world_scenarios.py

A failure names the seed and every step taken so far; the same seed and step count replay it
exactly (the generator draws only from ``random.Random(seed)``).
"""

from __future__ import annotations

import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from qbhook.decide.facts import incidental_below
from qbhook.sandbox.scenario import MOVIES
from qbhook.sandbox.torrents import SEEDING_STATES, infohash, make_torrent, wait_seeding, write_payload
from tests.integration.crash_helpers import b3, leftovers, qbhook, qbhook_json, tree_state, walk_files
from tests.integration.test_apply_real import make_bed

pytestmark = pytest.mark.integration

PIECE = 16 * 1024
NESTED_LIB = "data/media/library"
CATEGORIES = ("movies", "tv")
BAD_STATES = {"error", "missingFiles", "unknown"}


def _seeds_from_env(default: list[int]) -> list[int]:
    spec = os.environ.get("QBHOOK_SCENARIO_SEEDS", "").strip()
    if not spec:
        return default
    out: list[int] = []
    for part in spec.split(","):
        a, _, b = part.partition("-")
        out += list(range(int(a), int(b) + 1)) if b else [int(a)]
    return out


SEEDS = _seeds_from_env([1, 2, 3])
STEPS = int(os.environ.get("QBHOOK_SCENARIO_STEPS", "6"))


# --------------------------------------------------------------------------- reading the world


def _under(path: str, root: Path) -> bool:
    p, r = os.path.normpath(path), os.path.normpath(str(root))
    return p == r or p.startswith(r + "/")


@dataclass(frozen=True)
class FileFact:
    dev: int
    ino: int
    size: int
    mtime_ns: int
    nlink: int
    digest: str


def _facts(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, FileFact]:
    out = {}
    if not root.exists():
        return out
    for p, st in walk_files(root):
        if any(_under(p, s) for s in skip) or os.path.basename(p).startswith(".qbhook"):
            continue
        out[p] = FileFact(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_nlink, b3(p))
    return out


@dataclass
class Torrent:
    hash: str
    name: str
    save_path: str
    state: str
    progress: float
    auto_tmm: bool
    files: list[tuple[str, int]]  # (host path, priority)


# --------------------------------------------------------------------------- the world and its steps


@dataclass
class World:
    bed: object
    rng: random.Random
    outside: Path
    log: list[str] = field(default_factory=list)
    n: int = 0
    library_files: list[Path] = field(default_factory=list)
    orphans: list[Path] = field(default_factory=list)

    STEPS = (
        ("add", 5),
        ("arr_link", 3),
        ("arr_copy", 2),
        ("arr_upgrade", 1),
        ("cross_seed", 3),
        ("remove", 1),
        ("partial", 1),
        ("orphan", 1),
        ("redownload", 2),
        ("recategorize", 1),
    )

    @property
    def sc(self):
        return self.bed.sc

    @property
    def client(self):
        return self.bed.client

    @property
    def seeding_roots(self) -> tuple[Path, Path]:
        return (self.sc.stash_seed, self.sc.pool_seed)

    def torrents(self) -> dict[str, Torrent]:
        out = {}
        for t in self.client.torrents_info():
            sp = os.path.normpath(t["save_path"])
            files = [
                (os.path.join(sp, f["name"]), f["priority"]) for f in self.client.torrents_files(torrent_hash=t["hash"])
            ]
            out[t["hash"]] = Torrent(t["hash"], t["name"], sp, t["state"], t["progress"], t["auto_tmm"], files)
        return out

    def _fresh(self, stem: str) -> str:
        self.n += 1
        return f"{stem}{self.n}"

    def _sizes(self, k: int) -> list[int]:
        return [PIECE * self.rng.randint(1, 6) for _ in range(k)]

    def _add(self, path: Path, save: Path, *, category=None, atm=False, paused=False) -> str:
        data = make_torrent(path, self.sc.torrent_dir / f"{self._fresh('t')}.torrent", piece_size=PIECE)
        h = infohash(data)
        kw = {"category": category, "is_paused": paused, "use_auto_torrent_management": atm}
        if not atm:
            kw["save_path"] = str(save)
        res = self.client.torrents_add(torrent_files=data, **kw)
        assert res == "Ok.", f"torrents_add refused {h}: {res!r}"
        if not paused:
            wait_seeding(self.client, h, timeout=60)
        return h

    def _pick_torrent(self, *, whole: bool = False) -> Torrent | None:
        """A torrent whose files (the wanted ones, or all when ``whole``) are all on disk."""
        ts = [
            t
            for t in self.torrents().values()
            if t.files
            and all(os.path.isfile(p) for p, prio in t.files if prio or whole)
            and (not whole or all(prio for _p, prio in t.files))
        ]
        return self.rng.choice(sorted(ts, key=lambda t: t.hash)) if ts else None

    # ---- the steps
    def step_add(self) -> str:
        cat = self.rng.choice(CATEGORIES)
        save = self.sc.stash_seed / cat
        name = self._fresh("Title.") + (".S01" if cat == "tv" else ".1080p")
        atm = self.rng.random() < 0.75
        if self.rng.random() < 0.25:  # a single-file torrent
            rel = f"{name}.mkv"
            write_payload(save, {rel: self._sizes(1)[0]}, seed=self.n)
            path = save / rel
        else:
            files = {f"{name}/{name}.e{i}.mkv": s for i, s in enumerate(self._sizes(self.rng.randint(1, 3)))}
            if self.rng.random() < 0.5:
                files[f"{name}/{name}.nfo"] = self.rng.randint(100, 3000)  # not piece-aligned
            write_payload(save, files, seed=self.n)
            path = save / name
        h = self._add(path, save, category=cat, atm=atm)
        line = f"add {h[:8]} {path.name} category={cat} atm={atm}"
        if self.rng.random() < 0.4:  # the *arr that grabbed it imports at completion, before any qbhook run
            line += "; " + self._import(copy=self.rng.random() < 0.2, torrent=h)
        return line

    def _import(self, copy: bool, nested: bool = False, torrent: str | None = None) -> str:
        t = self.torrents()[torrent] if torrent else self._pick_torrent()
        if t is None:
            return "no torrent to import"
        src = Path(self.rng.choice(sorted(p for p, prio in t.files if prio)))
        title = self._fresh("Import ")
        base = self.sc.stash / (NESTED_LIB if nested else MOVIES)
        dst = base / title / f"{title}{src.suffix}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        same_fs = os.lstat(src).st_dev == os.lstat(base).st_dev
        if copy or not same_fs:  # an *arr copies when a hardlink cannot reach
            shutil.copy2(src, dst)
            how = "copy"
        else:
            os.link(src, dst)
            how = "hardlink"
        self.library_files.append(dst)
        return f"arr import {how} of {t.hash[:8]} {src} -> {dst}"

    def step_arr_link(self) -> str:
        return self._import(copy=False)

    def step_arr_copy(self) -> str:
        return self._import(copy=True, nested=self.rng.random() < 0.25)

    def step_arr_upgrade(self) -> str:
        alive = [p for p in self.library_files if p.exists()]
        if not alive:
            return "no library file to upgrade"
        p = self.rng.choice(alive)
        p.unlink()
        return f"arr upgrade deleted {p}"

    def step_cross_seed(self) -> str:
        t = self._pick_torrent(whole=True)
        if t is None:
            return "no torrent to cross-seed"
        root = next(r for r in self.seeding_roots if _under(t.save_path, r))
        tracker = root / "cross-seed" / self.rng.choice(("TrackerA", "TrackerB"))
        files = sorted(p for p, _prio in t.files)
        if len(files) > 1 and self.rng.random() < 0.3:  # one file of the pack, alone
            src = Path(self.rng.choice(files))
            dst = tracker / f"{self._fresh('XS.')}{src.suffix}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.link(src, dst)
            path = dst
        else:
            top = Path(t.save_path) / t.name
            path = tracker / f"{t.name}.{self._fresh('XS')}"
            for f in files:
                dst = path / os.path.relpath(f, top) if len(files) > 1 or top.is_dir() else path
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.link(f, dst)
        h = self._add(path, tracker, category="cross-seed", atm=False)
        return f"cross-seed {h[:8]} of {t.hash[:8]} at {path}"

    def step_remove(self) -> str:
        ts = sorted(self.torrents())
        if not ts:
            return "no torrent to remove"
        h = self.rng.choice(ts)
        data = self.rng.random() < 0.5
        self.client.torrents_delete(delete_files=data, torrent_hashes=h)
        deadline = time.monotonic() + 20
        while self.client.torrents_info(torrent_hashes=h):
            assert time.monotonic() < deadline, f"torrent {h} not removed"
            time.sleep(0.05)
        time.sleep(0.3 if data else 0)  # qBittorrent deletes the files after the torrent
        return f"remove {h[:8]} delete_files={data}"

    def step_partial(self) -> str:
        cat = self.rng.choice(CATEGORIES)
        save = self.sc.stash_seed / cat
        name = self._fresh("Partial.") + ".S02"
        files = {f"{name}/{name}.e{i}.mkv": s for i, s in enumerate(self._sizes(3))}
        write_payload(save, files, seed=self.n)
        skip = self.rng.randrange(3)
        data = make_torrent(save / name, self.sc.torrent_dir / f"{self._fresh('p')}.torrent", piece_size=PIECE)
        h = infohash(data)
        os.unlink(save / list(files)[skip])  # never downloaded
        res = self.client.torrents_add(
            torrent_files=data, save_path=str(save), is_paused=True, use_auto_torrent_management=False, category=cat
        )
        assert res == "Ok."
        deadline = time.monotonic() + 30
        while not self.client.torrents_info(torrent_hashes=h) or not self.client.torrents_files(torrent_hash=h):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        self.client.torrents_file_priority(torrent_hash=h, file_ids=[skip], priority=0)
        want = sum(s for i, s in enumerate(files.values()) if i != skip)
        while self.client.torrents_info(torrent_hashes=h)[0]["size"] != want:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        self.client.torrents_recheck(torrent_hashes=h)
        while self.client.torrents_info(torrent_hashes=h)[0]["progress"] != 1:
            assert time.monotonic() < deadline, self.client.torrents_info(torrent_hashes=h)[0]
            time.sleep(0.1)
        self.client.torrents_resume(torrent_hashes=h)
        wait_seeding(self.client, h, timeout=30)
        return f"partial {h[:8]} {name} skipped e{skip} category={cat}"

    def step_redownload(self) -> str:
        """The same content downloaded again as its own copy (another torrent of the same
        release, or a re-grab) on the same seeding root: distinct inodes, one dataset."""
        t = self._pick_torrent(whole=True)
        if t is None:
            return "no torrent to download again"
        root = next(r for r in self.seeding_roots if _under(t.save_path, r))
        save = root / self.rng.choice(CATEGORIES)
        top = Path(t.save_path) / t.name
        path = save / f"{t.name}.{self._fresh('RE')}"
        if top.is_dir():
            shutil.copytree(top, path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(top, path)
        h = self._add(path, save, category=None, atm=False)
        return f"download again {h[:8]} of {t.hash[:8]} at {path}"

    def step_recategorize(self) -> str:
        """The user moves a torrent to the other category: under ATM qBittorrent moves its
        files to that category's save path itself."""
        ts = [t for t in self.torrents().values() if t.auto_tmm]
        if not ts:
            return "no ATM torrent to recategorize"
        t = self.rng.choice(sorted(ts, key=lambda t: t.hash))
        cat = next(c for c in CATEGORIES if not _under(t.save_path, self.sc.stash_seed / c))
        self.client.torrents_set_category(category=cat, torrent_hashes=t.hash)
        want = os.path.normpath(str(self.sc.stash_seed / cat))
        deadline = time.monotonic() + 60
        while True:
            info = self.client.torrents_info(torrent_hashes=t.hash)[0]
            if (
                os.path.normpath(info["save_path"]) == want
                and info["progress"] == 1
                and info["state"] in SEEDING_STATES
            ):
                break
            assert time.monotonic() < deadline, f"ATM move of {t.hash} not done: {info['state']} {info['save_path']}"
            time.sleep(0.1)
        return f"recategorize {t.hash[:8]} -> {cat} (ATM moved it to {want})"

    def step_orphan(self) -> str:
        root = self.rng.choice(self.seeding_roots)
        p = root / self.rng.choice(CATEGORIES) / self._fresh("Stray.") / "leftover.bin"
        write_payload(p.parent, {p.name: self.rng.randint(100, 4000)}, seed=self.n)
        self.orphans.append(p)
        return f"orphan {p}"

    def random_step(self) -> str:
        kinds, weights = zip(*self.STEPS, strict=True)
        kind = self.rng.choices(kinds, weights)[0]
        return getattr(self, f"step_{kind}")()


# --------------------------------------------------------------------------- the promises


class Promises:
    """The product's promises, each a method that names what broke."""

    def __init__(self, w: World):
        self.w = w
        sc = w.sc
        self.protected_roots = [
            sc.stash / MOVIES,
            sc.stash / NESTED_LIB,
            w.outside,
            sc.stash / "data/media/other",
            sc.pool / "data/other",
        ]

    def pools_facts(self) -> dict[str, FileFact]:
        out = {}
        for r in self.w.bed.roots.values():
            out |= _facts(r)
        return out

    def protected(self) -> dict[str, tuple]:
        out = {}
        for r in self.protected_roots:
            out |= {p: (f.ino, f.size, f.mtime_ns, f.digest) for p, f in _facts(r).items()}
        return out

    def before(self) -> dict:
        return {
            "pools": self.pools_facts(),
            "protected": self.protected(),
            "torrents": self.w.torrents(),
            "tree": tree_state(self.w.bed.roots),
        }

    # ---- each promise
    def no_content_lost(self, before: dict, after: dict) -> None:
        had = {(f.size, f.digest): p for p, f in before["pools"].items()}
        has = {(f.size, f.digest) for f in after["pools"].values()}
        lost = {k: p for k, p in had.items() if k not in has}
        assert not lost, f"content destroyed (last copy gone): {lost}"

    def protected_unchanged(self, before: dict, after: dict) -> None:
        b, a = before["protected"], after["protected"]
        changed = {p: (b.get(p), a.get(p)) for p in set(b) | set(a) if b.get(p) != a.get(p)}
        assert not changed, f"a library or sentinel file changed (before, after): {changed}"

    def torrents_healthy(self, before: dict, after: dict) -> None:
        roots = self.w.seeding_roots
        for h, t in after["torrents"].items():
            assert t.progress == 1 and t.state not in BAD_STATES, f"torrent {h} {t.name}: {t.state} {t.progress}"
            assert any(_under(t.save_path, r) for r in roots), (
                f"torrent {h} saves outside the seeding roots: {t.save_path}"
            )
            old = before["torrents"].get(h)
            if old and old.save_path != t.save_path:
                assert not t.auto_tmm, f"torrent {h} relocated {old.save_path} -> {t.save_path} with ATM still on"

    def placement(self, after: dict, plan: dict) -> None:
        """Groups by shared inode or path; library-linked on stash, the rest on the pool unless blocked;
        and no seed-only inode left beside another inode of its content on its dataset."""
        w, facts = self.w, after["pools"]
        in_seed: dict[tuple, int] = {}
        for p, f in facts.items():
            if any(_under(p, r) for r in w.seeding_roots):
                in_seed[(f.dev, f.ino)] = in_seed.get((f.dev, f.ino), 0) + 1
        ts = after["torrents"]
        parent = {h: h for h in ts}

        def find(x):
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        owner: dict[object, str] = {}
        for h, t in ts.items():
            for p, prio in t.files:
                keys = [("path", p)]
                if prio and p in facts:
                    keys.append((facts[p].dev, facts[p].ino))
                for k in keys:
                    if k in owner:
                        parent[find(h)] = find(owner[k])
                    else:
                        owner[k] = h
        groups: dict[str, list[str]] = {}
        for h in ts:
            groups.setdefault(find(h), []).append(h)
        blocked = {
            h: g["blockers"] or g["reason"] for g in plan["groups"] if g["action"] == "blocked" for h in g["torrents"]
        }
        stash_seed = w.sc.stash_seed
        lib_dev = os.lstat(w.sc.stash / MOVIES).st_dev  # the nested library dataset is no donor
        lib_contents = {
            (f.size, f.digest) for p, f in facts.items() if _under(p, w.sc.stash / MOVIES) and f.dev == lib_dev
        }
        for members in groups.values():
            files = [facts[p] for h in members for p, prio in ts[h].files if prio and p in facts]
            linked = any(f.nlink > in_seed[(f.dev, f.ino)] for f in files)
            where = {h: ("stash" if _under(ts[h].save_path, stash_seed) else "pool") for h in members}
            if any(h in blocked for h in members):
                continue
            if linked:
                assert set(where.values()) == {"stash"}, f"a library-linked group is not (all) on the stash: {where}"
            else:
                assert set(where.values()) == {"pool"}, f"a seed-only group is not on the pool: {where}"
                # README: "on cold, every file's content already on primary and used by a library there: promote"
                in_lib = [f for f in files if (f.size, f.digest) in lib_contents]
                assert not files or len(in_lib) < len(files), (
                    f"a pool group whose every file a stash library holds was not promoted: {where}"
                )
        # convergence: per dataset, a seed-only inode's content held by no other seeding/library inode
        lib_roots = (w.sc.stash / MOVIES,)
        seeds = {(facts[p].dev, facts[p].ino) for t in ts.values() for p, prio in t.files if prio and p in facts}
        holders: dict[tuple, set] = {}
        for p, f in facts.items():
            key = (f.dev, f.ino)
            if f.size and (key in seeds or any(_under(p, r) for r in lib_roots)):
                holders.setdefault((f.dev, f.size, f.digest), set()).add(key)
        blocked_inodes = {
            (facts[p].dev, facts[p].ino) for h in blocked for p, prio in ts[h].files if prio and p in facts
        }
        # An incidental file (facts.incidental_below: small, under half its payload) converges only onto
        # its own group's inodes: equal bytes in another payload or a library do not count here.
        group_of, below = {}, {}
        for root, members in groups.items():
            below[root] = incidental_below(
                [facts[p].size for p, prio in ts[h].files if prio and p in facts] for h in members
            )
            for h in members:
                for p, prio in ts[h].files:
                    if prio and p in facts:
                        group_of[(facts[p].dev, facts[p].ino)] = root
        for (_dev, size, digest), inodes in holders.items():
            seed_only = {
                k for k in inodes if k in seeds and k not in blocked_inodes and not self._linked(k, facts, in_seed)
            }
            seed_only = {
                k
                for k in seed_only
                if size >= below[group_of[k]] or any(group_of.get(o) == group_of[k] for o in inodes if o != k)
            }
            if seed_only and len(inodes) > 1:
                paths = sorted(p for p, f in facts.items() if (f.dev, f.ino) in inodes)
                raise AssertionError(
                    f"content {digest[:12]} ({size} B) kept as {len(inodes)} inodes on one dataset: {paths}"
                )

    @staticmethod
    def _linked(key, facts, in_seed) -> bool:
        f = next(f for f in facts.values() if (f.dev, f.ino) == key)
        return f.nlink > in_seed.get(key, 0)


# --------------------------------------------------------------------------- the run


def _run_cycle(w: World, pr: Promises, note) -> None:
    """The timer's scan (``scan``, or ``sweep``: scan and plan, no auto_apply), or none at all
    (the catalog's last full scan is younger than ``scan.max_age``: plan uses it as is); then
    plan, apply --yes, the promises, and plan and apply again: nothing left to do.

    Without a scan a new library copy is unknown to the catalog (design: "plan/apply of
    everything reuse a full scan younger than scan.max_age"), so placement and convergence are
    checked only after a scan; safety and idempotence always."""
    cfg = w.bed.cfg
    scan = w.rng.choices(("scan", "sweep", "none"), (5, 2, 2))[0]
    if scan != "none":
        r = qbhook(cfg, scan)
        assert r.returncode in (0, 10), f"qbhook {scan} -> {r.returncode}: {r.stderr}"
    note(f"  {scan}")
    rc, plan = qbhook_json(cfg, "plan", ok=(0, 10))
    note(f"  plan exit {rc}: {plan['summary']}")
    for _round in range(3):
        # Groups the plan holds back for another group of the same run (planner._resolve_cross_group:
        # "waits for group ..."): the next run may act on them; nothing else may be left.
        waiting = {h for g in plan["groups"] if g["action"] == "skip" for h in g["torrents"]}
        before = pr.before()
        _rc, out = qbhook_json(cfg, "apply", "--yes", ok=(0, 5))
        note(f"  apply: done={len(out.get('groups_done') or [])} failed={out.get('groups_failed')}")
        assert not out.get("groups_failed"), f"apply failed groups: {out.get('groups_failed')}"
        assert leftovers(*w.bed.roots.values()) == [], "staging/holding/relink leftovers after apply"
        after = pr.before()
        pr.no_content_lost(before, after)
        pr.protected_unchanged(before, after)
        pr.torrents_healthy(before, after)
        rc2, plan = qbhook_json(cfg, "plan", ok=(0, 10))
        todo = [g for g in plan["groups"] if g["action"] not in ("stay", "blocked")]
        unexpected = [(g["action"], g["names"], g["reason"]) for g in todo if not set(g["torrents"]) <= waiting]
        assert not unexpected, f"plan after a successful apply still proposes: {unexpected}"
        if not todo:
            break
        note(f"  plan exit {rc2}: {plan['summary']} (groups that waited for another group of the last run)")
    else:
        raise AssertionError(f"groups still waiting after 3 applies: {[g['names'] for g in todo]}")
    if scan != "none":
        pr.placement(after, plan)
    tree = tree_state(w.bed.roots)
    _rc, again = qbhook_json(cfg, "apply", "--yes")
    assert again.get("run_id") is None, f"a second apply --yes started run {again.get('run_id')}: {again}"
    assert tree_state(w.bed.roots) == tree, "a second apply --yes changed the pools"
    if blocked := [(g["names"], g["blockers"]) for g in plan["groups"] if g["action"] == "blocked"]:
        note(f"  blocked: {blocked}")


def _check_orphans(w: World, note) -> None:
    r = qbhook(w.bed.cfg, "--json", "orphans")
    if r.returncode == 3:  # a guard refused (e.g. orphans over the share): a listing only
        note(f"  orphans refused: {r.stderr.strip().splitlines()[-1]}")
        return
    assert r.returncode == 0, f"orphans -> {r.returncode}: {r.stderr}"
    import json

    items = [i["path"] for i in json.loads(r.stdout)["items"]]
    missing = [str(p) for p in w.orphans if p.exists() and not any(_under(str(p), i) for i in items)]
    assert not missing, f"planted files no torrent references are not listed by orphans: {missing}"
    note(f"  orphans: {len(items)} item(s)")


@pytest.fixture
def world_bed(pools, qbt, qbt_client, tmp_path):
    bed = make_bed(pools, qbt, qbt_client, tmp_path)
    d = yaml.safe_load(bed.cfg.read_text())
    d["policy"]["tag_no_external_links"] = True
    bed.cfg.write_text(yaml.safe_dump(d))
    for cat in CATEGORIES:
        (bed.sc.stash_seed / cat).mkdir(parents=True, exist_ok=True)
        qbt_client.torrents_create_category(name=cat, save_path=str(bed.sc.stash_seed / cat))
    qbt_client.torrents_create_category(name="cross-seed", save_path=str(bed.sc.stash_seed / "cross-seed"))
    return bed


@pytest.mark.parametrize("seed", SEEDS)
def test_world_scenario(world_bed, tmp_path, seed):
    bed = world_bed
    outside = tmp_path / "outside"
    w = World(bed, random.Random(seed), outside)
    write_payload(outside, {"keep/a.bin": 3 * PIECE, "keep/b.txt": 700}, seed=seed)
    write_payload(bed.sc.stash / "data/media/other", {"keep/c.bin": PIECE}, seed=seed)
    write_payload(bed.sc.pool / "data/other", {"keep/d.bin": PIECE}, seed=seed)
    pr = Promises(w)

    def note(line: str) -> None:
        w.log.append(line)
        print(line)  # shown with -s, and by pytest on a failure

    try:
        for _ in range(2):  # something to act on from the start
            note(w.step_add())
        for i in range(STEPS):
            for _ in range(w.rng.choice((1, 1, 2))):
                note(w.random_step())
            _run_cycle(w, pr, note)
            if i % 3 == 2:
                _check_orphans(w, note)
    except AssertionError as e:
        raise AssertionError(
            f"scenario seed={seed} (replay: QBHOOK_SCENARIO_SEEDS={seed} QBHOOK_SCENARIO_STEPS={STEPS})\n"
            + "\n".join(w.log)
            + f"\n--> {e}"
        ) from None
