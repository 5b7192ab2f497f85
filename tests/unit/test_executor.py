"""Executor against real files on two real filesystems (tmpfs) and a simulated qBittorrent."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from unittest.mock import ANY

import blake3
import pytest

from qbhook.catalog.scan import scan_pool
from qbhook.catalog.store import Catalog
from qbhook.catalog.torrents import _COLUMNS as _INDEX_COLUMNS
from qbhook.catalog.torrents import TorrentIndex, TorrentRecord
from qbhook.clients.model import TorrentFile, TorrentInfo
from qbhook.clients.port import FixedStateLag
from qbhook.config import QbtConfig
from qbhook.decide.plan import GroupPlan, Plan, Step
from qbhook.decide.planner import make_plan
from qbhook.decide.snapshot import build_snapshot
from qbhook.errors import LockBusy, QbhookError, QbtError, UnknownTorrent, UnsafeOperation
from qbhook.move.executor import Executor, build_executor
from qbhook.move.journal import Journal
from qbhook.move.locks import executor_lock, group_lock
from qbhook.pathmap import PathMap
from tests.helpers import make_config, write
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)

# --------------------------------------------------------------------------- a simulated qBittorrent


@dataclass
class FakeTorrent:
    hash: str
    name: str
    save_path: str
    files: list[tuple[str, int, int]]  # (name relative to save path, size, priority)
    stopped: bool = False
    progress: float = 1.0
    download_path: str = ""
    auto_tmm: bool = False
    tags: set = field(default_factory=set)
    script: list = field(default_factory=list)  # pending (state, save_path) transitions, one per poll
    transient: str | None = None
    forced: bool = False  # force-started: outside the queue (forcedUP while it runs)
    added_on: int | None = None  # None: as qBittorrent's API before it was added (and rTorrent's load_date 0)
    has_metadata: bool = True  # False: a magnet still fetching its metadata


class FakeQbt(FixedStateLag):
    """Same public methods as QbtClient, its ``state_lag_s`` a constant (``FixedStateLag``);
    states play out over later polls, as observed on 4.5.2:

    * setLocation of a running torrent onto existing files: ``moving`` (old path) ->
      ``checkingUP`` (new path) -> stable at ``fail_at.get(path, 1.0)``;
    * of a stopped one: ``moving`` -> ``stoppedDL`` at 0% (no recheck) until ``recheck``,
      which then goes ``checkingUP`` -> ``stoppedUP`` (or stays DL under 100%). With
      ``stale_polls``, the new save path shows the progress cached before the move (100 %) on
      that many polls before the 0 % (the API's refresh interval, helper review);
    * a stop during a check leaves it stoppedDL at partial progress (lesson 3); a plain start
      is queued, so only ``start(forced=True)`` keeps it force-started.
    """

    state_lag_s = 1.5  # qBittorrent's default refresh interval (clients/port.py); its staleness is stale_polls

    def __init__(self, name: str = "qbt", move_polls: int = 2, check_polls: int = 2, stale_polls: int = 0):
        self.name = name
        self.move_polls = move_polls
        self.check_polls = check_polls
        self.stale_polls = stale_polls
        self.t: dict[str, FakeTorrent] = {}
        self.calls: list[tuple] = []
        self.fail_at: dict[str, float] = {}
        self.refuse_set_location_to: set[str] = set()
        self.violations: list[str] = []

    def add(self, t: FakeTorrent) -> None:
        self.t[t.hash] = t

    def _get(self, h: str) -> FakeTorrent:
        try:
            return self.t[h.lower()]
        except KeyError:
            raise UnknownTorrent(f"fake qBittorrent has no torrent {h}") from None

    def _state(self, t: FakeTorrent) -> str:
        if t.transient:
            return t.transient
        if t.stopped:
            return "stoppedUP" if t.progress >= 1 else "stoppedDL"
        if t.forced:
            return "forcedUP" if t.progress >= 1 else "forcedDL"
        return "stalledUP" if t.progress >= 1 else "downloading"

    def _tick(self, t: FakeTorrent) -> None:
        if not t.script:
            return
        state, path = t.script.pop(0)
        if path:
            t.save_path = path
        if state == "done":
            t.transient = None
            t.progress = self.fail_at.get(t.save_path, 1.0)
        elif state == "unchecked":
            t.transient = None
            t.progress = 0.0
        elif state == "stale":
            t.transient = None  # the new save path, the progress of before the move
        else:
            t.transient = state

    def _info(self, t: FakeTorrent) -> TorrentInfo:
        total = sum(s for _n, s, _p in t.files)
        raw = {
            "hash": t.hash,
            "name": t.name,
            "save_path": t.save_path,
            "download_path": t.download_path,
            "content_path": os.path.join(t.save_path, t.name),
            "root_path": "",
            "auto_tmm": t.auto_tmm,
            "category": "",
            "tags": ", ".join(sorted(t.tags)),
            "state": self._state(t),
            "progress": t.progress,
            "amount_left": 0 if t.progress >= 1 else 1,
            "size": total,
            "total_size": total,
            "has_metadata": t.has_metadata,
        }
        if t.added_on is not None:
            raw["added_on"] = t.added_on
        return TorrentInfo.from_api(raw, PathMap(), self.name)

    # -- the QbtClient surface the executor (and the snapshot builder) uses
    def torrents(self, hashes=None, category=None, tag=None):
        return [self._info(t) for t in self.t.values() if hashes is None or t.hash in hashes]

    def find(self, h):
        t = self.t.get(h.lower())
        return None if t is None else self._info(t)

    def torrent(self, h):
        t = self._get(h)
        self._tick(t)
        return self._info(t)

    def files(self, h):
        t = self._get(h)
        return [
            TorrentFile.from_api({"index": i, "name": n, "size": s, "progress": t.progress, "priority": p}, i)
            for i, (n, s, p) in enumerate(t.files)
        ]

    def set_location(self, h, path):
        t = self._get(h)
        self.calls.append(("set_location", t.hash, path))
        if path in self.refuse_set_location_to:
            raise QbtError(f"fake: setLocation to {path} refused (HTTP 409)")
        if not os.path.isdir(path):
            raise UnsafeOperation(f"destination {path} does not exist on the host")
        for n, _s, p in t.files:
            if p and not os.path.exists(os.path.join(path, n)):
                self.violations.append(f"qBittorrent would copy {n} to {path} itself")
        t.auto_tmm = False
        old = t.save_path
        if t.stopped:
            t.script = (
                [("moving", old)] * self.move_polls + [("stale", path)] * self.stale_polls + [("unchecked", path)]
            )
        else:
            t.script = (
                [("moving", old)] * self.move_polls + [("checkingUP", path)] * self.check_polls + [("done", path)]
            )

    def set_download_path(self, h, path):
        t = self._get(h)
        self.calls.append(("set_download_path", t.hash, path))
        if t.auto_tmm:
            raise UnsafeOperation("ATM torrent: setDownloadPath would be ignored")
        t.download_path = path

    def set_auto_management(self, h, enabled, **kw):
        t = self._get(h)
        self.calls.append(("set_auto_management", t.hash, enabled))
        if enabled:
            self.violations.append(f"ATM enabled on {h}")
        t.auto_tmm = enabled

    def stop(self, h):
        t = self._get(h)
        self.calls.append(("stop", t.hash))
        if t.transient in ("checkingUP", "checkingDL"):
            self.violations.append(f"stopped {h} during {t.transient}")
            t.transient, t.script, t.progress = None, [], min(t.progress, 0.5)  # lesson 3: stoppedDL, partial
        t.stopped = True

    def start(self, h, *, forced=False):
        t = self._get(h)
        self.calls.append(("start", t.hash, "forced") if forced else ("start", t.hash))
        if t.progress < 1 or t.transient:
            self.violations.append(f"started {h} at {t.progress:.0%} ({t.transient or 'stable'})")
        t.stopped, t.forced = False, forced

    def recheck(self, h):
        t = self._get(h)
        self.calls.append(("recheck", t.hash))
        # A recheck is how a torrent leaves missingFiles (qbhook repair); during anything else in flight it is a fault.
        if (t.transient and t.transient != "missingFiles") or any(st == "moving" for st, _ in t.script):
            self.violations.append(f"recheck of {h} during {t.transient or 'a pending move'}")
        t.script = [("checkingUP", None)] * self.check_polls + [("done", None)]

    def add_tags(self, h, tags):
        self.calls.append(("add_tags", self._get(h).hash))
        self._get(h).tags |= set(tags)

    def remove_tags(self, h, tags):
        self.calls.append(("remove_tags", self._get(h).hash))
        self._get(h).tags -= set(tags)

    def count(self, method: str, h: str | None = None) -> int:
        return sum(1 for c in self.calls if c[0] == method and (h is None or c[1] == h))


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def sleep(self, s):
        self.now += s


class Crash(BaseException):
    """Stands in for kill -9: nothing in the executor may catch it."""


# --------------------------------------------------------------------------- the world


H1, H2 = "a" * 40, "b" * 40
FILES = [
    ("Movie.2020/movie.mkv", os.urandom(300_000)),
    ("Movie.2020/sub/en.srt", b"1\n00:00 --> 00:01\nhi\n"),
    ("Movie.2020/empty.txt", b""),
]


def b3(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


@dataclass
class World:
    cfg: object
    cat: Catalog
    journal: Journal
    qbt: FakeQbt
    clock: FakeClock
    stash: object
    pool: object
    seed_s: str
    seed_p: str
    lib: str

    def executor(self, **kw) -> Executor:
        kw.setdefault("poll_initial_s", 0.5)
        kw.setdefault("wall", self.clock)  # a pause's start (``Executor._stuck``) on the test's clock too
        return build_executor(
            self.cfg, self.cat, {"qbt": self.qbt}, self.journal, sleep=self.clock.sleep, clock=self.clock, **kw
        )

    def save(self, h: str, pool: str) -> str:
        root = self.seed_s if pool == "stash" else self.seed_p
        return root if h == H1 else os.path.join(root, "cross-seed")


def _make_world(tmpfs, base, tag="") -> World:  # noqa: F811
    """Two torrents (H1 running with a stale download path, H2 stopped) cross-seeding the same
    hardlinked files on the stash pool; the cold pool is empty."""
    stash, pool = tmpfs(f"stash{tag}"), tmpfs(f"pool{tag}")
    cfg = make_config(base / "cat.sqlite", stash, pool, seeding="torrents/seeding")
    seed_s, seed_p = str(cfg.primary.seeding_root), str(cfg.cold.seeding_root)
    os.makedirs(seed_p)
    for rel, data in FILES:
        a = write(os.path.join(seed_s, rel).encode(), data)
        b = os.path.join(seed_s, "cross-seed", rel).encode()
        os.makedirs(os.path.dirname(b), exist_ok=True)
        os.link(a, b)
    cat = Catalog.open(cfg.catalog, marker_roots=[stash, pool])  # as the CLI opens it: same fs identities
    qbt = FakeQbt()
    files = [(rel, len(data), 1) for rel, data in FILES]
    qbt.add(FakeTorrent(H1, "Movie.2020", seed_s, list(files), download_path="/stale/incomplete"))
    qbt.add(FakeTorrent(H2, "Movie.2020", os.path.join(seed_s, "cross-seed"), list(files), stopped=True))
    return World(cfg, cat, Journal(cat.conn), qbt, FakeClock(), stash, pool, seed_s, seed_p, str(stash / "media"))


@pytest.fixture
def world(tmpfs, tmp_path):  # noqa: F811
    w = _make_world(tmpfs, tmp_path)
    yield w
    w.cat.close()


def settled_plan(w: World) -> Plan:
    """The real planner's plan of ``w`` as it stands, its torrents settled (no stale download
    path: the planner blocks one) and every pool scanned: one bed for the tests that plan on
    real files (the converge tests put a library copy in first)."""
    for t in w.qbt.t.values():
        t.download_path = ""
    for p in w.cfg.pools:
        scan_pool(w.cat, p, w.cfg.scan)
    return make_plan(build_snapshot(w.cfg, w.cat, [w.qbt]), w.cfg.policy)


def demote_plan(w: World, hashed: bool = True) -> Plan:
    """The plan the planner makes for two cross-seeded siblings (same shape as planner.build_steps).

    ``hashed=False``: as planned without a pre-hash (``Snapshot.hash_at_copy``): the copies carry
    "hash": "from_copy" and every later step of a non-empty file has no hash of its own."""
    make, views, relocs, deletes = [], [], [], []
    donors = {}

    def h3(data: bytes) -> str | None:
        return b3(data) if hashed or not data else None

    for h in (H1, H2):
        old_save, new_save = w.save(h, "stash"), w.save(h, "pool")
        vf = []
        for rel, data in FILES:
            dst = os.path.join(new_save, rel)
            vf.append({"path": dst, "size": len(data), "blake3": h3(data)})
            if not data:
                make.append(Step.of("mkempty", {"dst": dst}))
            elif data in donors:
                make.append(Step.of("link", {"src": donors[data], "dst": dst, "size": len(data), "blake3": h3(data)}))
            else:
                src = os.path.join(old_save, rel)
                copy = {"src": src, "dst": dst, "size": len(data), "blake3": h3(data)}
                make.append(Step.of("copy", copy if hashed else {**copy, "hash": "from_copy"}))
                donors[data] = dst
        views.append(Step.of("verify_view", {"torrent": h, "instance": "qbt", "save_path": new_save, "files": vf}))
        relocs.append(
            Step.of(
                "relocate",
                {
                    "torrent": h,
                    "instance": "qbt",
                    "from_path": old_save,
                    "to_path": new_save,
                    "size": sum(len(d) for _r, d in FILES),
                },
            )
        )
    make.sort(key=lambda s: 0 if s.kind == "copy" else 1)
    for h in (H1, H2):
        for rel, data in FILES:
            path = os.path.join(w.save(h, "stash"), rel)
            st = os.lstat(path)
            deletes.append(
                Step.of(
                    "delete",
                    {
                        "path": path,
                        "fsid": w.cat.fsid(w.cat.fs_for_path(path)),
                        "ino": st.st_ino,
                        "size": len(data),
                        "blake3": h3(data),
                        "keep": {"path": os.path.join(w.save(h, "pool"), rel)},
                        "seeding_links": sorted(os.path.join(w.save(x, "stash"), rel) for x in (H1, H2)),
                    },
                )
            )
    verify = Step.of(
        "verify_group",
        {"torrents": [{"torrent": h, "instance": "qbt", "save_path": w.save(h, "pool")} for h in (H1, H2)]},
    )
    # Each relocation leaves its torrent stopped; each starts as found once the group verified.
    starts = [Step.of("start", {"torrent": h, "instance": "qbt"}) for h in (H1, H2)]
    tags = [
        Step.of("tag", {"torrent": h, "instance": "qbt", "add": ["demoted"], "remove": ["~noHL"]}) for h in (H1, H2)
    ]
    prunes = [
        Step.of("prune_dirs", {"root": os.path.join(w.save(h, "stash"), "Movie.2020"), "stop_at": w.seed_s})
        for h in (H1, H2)
    ]
    g = GroupPlan(
        group_id="g1",
        torrents=[H1, H2],
        names=["Movie.2020", "Movie.2020"],
        action="demote",
        reason="seed-only",
        source_pool="stash",
        target_pool="pool",
        bytes_to_copy=sum(len(d) for _r, d in FILES),
        bytes_freed=sum(len(d) for _r, d in FILES),
        steps=make + views + relocs + [verify] + starts + tags + deletes + prunes,
    )
    return Plan(groups=[g], created_at=1.0)


def tree(root) -> dict:
    """{relative path: content} plus the hardlink structure, for comparing end states."""
    files, inodes = {}, {}
    for dirpath, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".qbhook")]
        for n in names:
            if n == ".qbhook-fsid":
                continue
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            with open(p, "rb") as f:
                files[rel] = blake3.blake3(f.read()).hexdigest()[:12]
            inodes.setdefault(os.lstat(p).st_ino, set()).add(rel)
    dirs = sorted(os.path.relpath(d, root) for d, _s, _n in os.walk(root) if ".qbhook" not in d)
    return {"files": files, "links": sorted(sorted(v) for v in inodes.values()), "dirs": dirs}


def end_state(w: World) -> dict:
    def rel(p):
        return p.replace(str(w.stash), "<stash>").replace(str(w.pool), "<pool>")

    q = {
        h: (rel(t.save_path), t.stopped, t.progress, t.transient, sorted(t.tags), t.download_path, t.auto_tmm)
        for h, t in w.qbt.t.items()
    }
    return {"stash": tree(w.stash), "pool": tree(w.pool), "qbt": q, "violations": w.qbt.violations}


def assert_demoted(w: World, summary=None, hand_plan: bool = True) -> None:
    for h in (H1, H2):
        t = w.qbt.t[h]
        assert t.save_path == w.save(h, "pool") and t.progress == 1 and t.transient is None
        assert "qbhook-relocated" in t.tags
        if hand_plan:
            assert "demoted" in t.tags and "~noHL" not in t.tags
        for rel, data in FILES:
            with open(os.path.join(w.save(h, "pool"), rel), "rb") as f:
                assert f.read() == data
            assert not os.path.lexists(os.path.join(w.save(h, "stash"), rel))
    assert w.qbt.t[H1].stopped is False and w.qbt.t[H2].stopped is True  # as they were
    assert w.qbt.t[H1].download_path == ""  # no stale download path
    a = os.lstat(os.path.join(w.save(H1, "pool"), FILES[0][0]))
    b = os.lstat(os.path.join(w.save(H2, "pool"), FILES[0][0]))
    assert a.st_ino == b.st_ino and a.st_nlink == 2  # one copy, linked
    assert os.listdir(w.seed_s) == []  # folders pruned
    assert w.qbt.violations == []
    if summary is not None:
        payload = sum(len(d) for _r, d in FILES)
        assert summary.bytes_copied == payload and summary.bytes_freed == payload
        assert summary.torrents_relocated == 2 and summary.groups_done == ["g1"] and summary.exit_code == 0


# --------------------------------------------------------------------------- happy path


def test_demote_two_siblings_copy_once_then_link(world):
    plan = demote_plan(world)
    kinds = [s.kind for s in plan.groups[0].steps]
    assert kinds[:6] == ["copy", "copy", "mkempty", "link", "link", "mkempty"]
    summary = world.executor().apply(plan)
    assert summary.status == "done"
    assert_demoted(world, summary)
    # one setLocation per torrent, each after its view was verified
    assert world.qbt.count("set_location", H1) == 1 and world.qbt.count("set_location", H2) == 1
    # the catalog knows the new paths (with their hashes) and forgot the old ones
    row = world.cat.inode_by_path(os.path.join(world.save(H2, "pool"), FILES[0][0]))
    assert row is not None and row.hash == blake3.blake3(FILES[0][1]).digest()
    assert world.cat.inode_by_path(os.path.join(world.save(H1, "stash"), FILES[0][0])) is None


def test_journal_rows_go_intended_then_done(world):
    plan = demote_plan(world)
    seen = []

    def hook(point, gid, seq, step):
        if point == "after_intend":
            run = world.journal.runs(1)[0]
            row = next(r for r in world.journal.steps(run.id) if r.seq == seq)
            seen.append((seq, step.kind, row.status))

    summary = world.executor(hook=hook).apply(plan)
    n = len(plan.groups[0].steps)
    assert [s for s, _k, _st in seen] == list(range(n))
    assert {st for _s, _k, st in seen} == {"intended"}
    rows = world.journal.steps(summary.run_id)
    assert [r.status for r in rows] == ["done"] * n
    assert [r.kind for r in rows] == [s.kind for s in plan.groups[0].steps]
    assert world.journal.run(summary.run_id).status == "done"
    assert world.journal.group_status("g1") == ("done", None)
    reloc = [r for r in rows if r.kind == "relocate"]
    assert reloc[0].args["_observed"]["was_running"] is True and reloc[1].args["_observed"]["was_running"] is False


def test_dry_run_touches_nothing(world):
    before = end_state(world)
    summary = world.executor().apply(demote_plan(world), dry_run=True)
    assert summary.dry_run and summary.run_id is None
    assert [s["kind"] for s in summary.groups[0].steps] == [s.kind for s in demote_plan(world).groups[0].steps]
    assert summary.bytes_copied == sum(len(d) for _r, d in FILES)
    assert world.journal.runs() == [] and world.qbt.calls == []
    assert end_state(world) == before
    assert not os.path.exists(str(world.cfg.catalog) + ".locks")


def test_rerunning_a_finished_plan_is_a_no_op(world):
    plan = demote_plan(world)
    world.executor().apply(plan)
    first = end_state(world)
    # A second apply of the same (now stale) plan must not damage anything: every step finds its
    # work done (copies present, torrents already there, old links gone).
    summary = world.executor().apply(plan)
    assert summary.status == "done", summary.groups_failed
    assert end_state(world) == first
    assert summary.bytes_copied == 0 and summary.bytes_freed == 0
    assert world.qbt.count("set_location") == 2


@pytest.mark.parametrize("fail", [False, True], ids=["relocated", "rolled-back"])
def test_a_force_started_torrent_runs_forced_again_after_its_move_or_its_rollback(world, fail):
    """H1 seeds force-started (forcedUP). qBittorrent's plain start is queued: with queueing on,
    H1 would come back queuedUP and seed nothing. It is started forced at the new place, and
    after a rollback at the old one."""
    world.qbt.t[H1].forced = True
    if fail:
        world.qbt.fail_at[world.save(H2, "pool")] = 0.9  # H2's recheck fails: both move back

    summary = world.executor().apply(demote_plan(world))

    assert summary.groups[0].status == ("rolled_back" if fail else "done"), summary.groups[0].reason
    t = world.qbt.t[H1]
    assert t.save_path == world.save(H1, "stash" if fail else "pool")
    assert world.qbt.torrent(H1).state == "forcedUP"
    assert ("start", H1, "forced") in world.qbt.calls and ("start", H1) not in world.qbt.calls
    assert world.qbt.violations == []
    (row,) = [r for r in world.journal.steps(summary.run_id) if r.kind == "relocate" and r.args["torrent"] == H1]
    assert row.args["_observed"]["forced"] is True  # journaled with the step: a resume or rollback knows it


class AtmQbt(FakeQbt):
    """A FakeQbt with qBittorrent's guard on turning ATM on (``QbtClient._check_atm_safe``): only
    when the caller's category path, the torrent's save path and its category's own path agree,
    so nothing moves; refused otherwise."""

    def __init__(self, category_path: str):
        super().__init__()
        self.category_path = category_path

    def set_auto_management(self, h, enabled, *, category_save_path=None):
        t = self._get(h)
        self.calls.append(("set_auto_management", t.hash, enabled))
        if enabled and not t.auto_tmm and not category_save_path == t.save_path == self.category_path:
            raise UnsafeOperation(f"refusing to enable ATM for {t.hash}: its category's path is {self.category_path}")
        t.auto_tmm = enabled


@pytest.mark.parametrize("category", ["old-place", "elsewhere"])
def test_a_rolled_back_atm_torrent_gets_atm_back_where_its_category_path_allows(world, category):
    """setLocation turns ATM off; a rollback left it off, so a failed group did not end as it
    started. It is turned on again through the client's guard, and where the guard refuses
    (its category's path is not where the torrent is back) it stays off and the reason says so."""
    old = world.save(H1, "stash")
    q = AtmQbt(old if category == "old-place" else os.path.join(world.seed_s, "elsewhere"))
    q.t, world.qbt = world.qbt.t, q
    q.t[H1].auto_tmm = True
    q.fail_at[world.save(H2, "pool")] = 0.9  # H2's recheck fails: both move back

    summary = world.executor().apply(demote_plan(world))

    (g,) = summary.groups
    assert g.status == "rolled_back" and not g.needs_attention, g.reason
    assert q.t[H1].save_path == old and q.t[H1].stopped is False
    note = f"ATM left off for {H1}: turning it on could move it"
    if category == "old-place":
        assert q.t[H1].auto_tmm is True and note not in g.reason
    else:
        assert q.t[H1].auto_tmm is False and note in g.reason
        assert note in world.journal.group_status("g1")[1]
    assert q.violations == []


class IncompleteFolderQbt(AtmQbt):
    """AtmQbt with "Keep incomplete torrents in" on: under ATM a torrent reports its category's
    download path (``downloadPath()`` in torrentimpl.cpp) and setDownloadPath is refused (the real
    client's guard); turned off, it reports its own: the category's copied in (4.4 to 5.0), or the
    one it kept all along (newer versions). ``FakeTorrent.download_path`` is that own one."""

    def __init__(self, category_path: str, category_download: str, copies_in: bool):
        super().__init__(category_path)
        self.category_download, self.copies_in = category_download, copies_in

    def _info(self, t):
        info = super()._info(t)
        return replace(info, download_path=self.category_download) if t.auto_tmm else info

    def set_auto_management(self, h, enabled, *, category_save_path=None):
        t = self._get(h)
        if t.auto_tmm and not enabled and self.copies_in:
            t.download_path = self.category_download
        super().set_auto_management(h, enabled, category_save_path=category_save_path)


@pytest.mark.parametrize("fail", [False, True], ids=["relocated", "rolled-back"])
@pytest.mark.parametrize(
    "category_download, own, copies_in",
    [("/downloads/incomplete/movies", "", True), ("", "/downloads/incomplete", False)],
    ids=["copied-in", "kept-its-own"],
)
def test_an_atm_torrent_leaves_its_incomplete_folder_behind_atm_first(world, fail, category_download, own, copies_in):
    """An ATM torrent reports its category's download path, which no one can clear while ATM is on:
    ATM off first, then the download path qBittorrent reports THEN cleared (on newer versions it
    is not the one shown under ATM), then setLocation. Left set, a recheck under 100 % at the
    new place would move the view's files into the incomplete folder. A rollback turns ATM on
    again, which brings the category's download path back."""
    old = world.save(H1, "stash")
    q = IncompleteFolderQbt(old, category_download, copies_in)
    q.t, world.qbt = world.qbt.t, q
    q.t[H1].auto_tmm, q.t[H1].download_path = True, own
    if fail:
        q.fail_at[world.save(H2, "pool")] = 0.9  # H2's recheck fails: both move back

    summary = world.executor().apply(demote_plan(world))

    (g,) = summary.groups
    assert g.status == ("rolled_back" if fail else "done"), g.reason
    mine = [c for c in q.calls if c[1] == H1 and c[0] in ("set_auto_management", "set_download_path", "set_location")]
    assert mine[:3] == [
        ("set_auto_management", H1, False),
        ("set_download_path", H1, ""),
        ("set_location", H1, world.save(H1, "pool")),
    ]
    t = q.torrent(H1)
    if fail:
        assert t.save_path == old and t.auto_tmm is True and t.download_path == category_download
    else:
        assert t.save_path == world.save(H1, "pool") and t.auto_tmm is False and t.download_path == ""
    assert q.violations == []


class AtmOffMovesQbt(FakeQbt):
    """qBittorrent turning ATM off (``TorrentImpl::setAutoTMMEnabled`` -> ``adjustStorageLocation``):
    a torrent of ``elsewhere`` has its data away from its category's path (a category move that
    failed), so turning ATM off moves it there in Overwrite mode: a violation. ``atm_off_refusal``
    says so first, as the adapter does (``QbtClient.atm_off_refusal``)."""

    def __init__(self, elsewhere: set[str]):
        super().__init__()
        self.elsewhere = elsewhere

    def atm_off_refusal(self, h):
        t = self._get(h)
        if t.auto_tmm and t.hash in self.elsewhere:
            return f"turning ATM off for {t.hash} would move it: its data is at /old, qBittorrent would move it to /cat"
        return None

    def set_auto_management(self, h, enabled, **kw):
        t = self._get(h)
        if t.auto_tmm and not enabled and t.hash in self.elsewhere:
            self.violations.append(f"ATM off moved {h} (Overwrite mode)")
        super().set_auto_management(h, enabled, **kw)


def test_a_group_whose_atm_off_would_move_a_torrent_is_refused_before_it_acts(world):
    """R24: turning ATM off moves a torrent whose data is not at its category's path. The group
    asks the client first, for every torrent, and fails having done nothing (the first torrent
    was relocated before the second's ATM came off, then moved back)."""
    q = AtmOffMovesQbt({H2})
    q.t, world.qbt = world.qbt.t, q
    q.t[H1].auto_tmm = q.t[H2].auto_tmm = True

    summary = world.executor().apply(demote_plan(world))

    (g,) = summary.groups
    assert g.status == "rolled_back", g.reason  # as any group refused before it starts (test_run_space)
    assert g.reason.startswith("not started: turning ATM off for " + H2) and "/old" in g.reason
    assert q.calls == [] and q.violations == []
    assert q.t[H1].save_path == world.save(H1, "stash") and q.t[H1].auto_tmm is True


# --------------------------------------------------------------------------- failures roll back


def test_relocation_under_100_percent_rolls_everything_back(world):
    plan = demote_plan(world)
    before_stash = tree(world.stash)
    world.qbt.fail_at[world.save(H2, "pool")] = 0.9  # second torrent's recheck ends at 90%
    summary = world.executor().apply(plan)
    assert summary.exit_code == 5 and "g1" in summary.groups_failed
    assert "90.0%" in summary.groups_failed["g1"]
    assert summary.groups[0].status == "rolled_back"
    # both torrents back where they were, complete, in their old running state
    for h in (H1, H2):
        t = world.qbt.t[h]
        assert t.save_path == world.save(h, "stash") and t.progress == 1.0 and t.transient is None
    assert world.qbt.t[H1].stopped is False and world.qbt.t[H2].stopped is True
    assert tree(world.stash) == before_stash  # nothing deleted
    assert world.qbt.violations == []
    rows = world.journal.steps(summary.run_id)
    by_kind = [(r.kind, r.status) for r in rows]
    assert ("relocate", "undone") in by_kind and ("relocate", "failed") in by_kind
    assert not any(k in ("verify_group", "delete") for k, _s in by_kind)
    assert world.journal.group_status("g1")[0] == "rolled_back"
    assert world.journal.run(summary.run_id).status == "failed"
    # the first torrent was moved and tagged, then moved back: it must not keep the tag
    assert world.qbt.count("add_tags", H1) >= 1
    assert "qbhook-relocated" not in world.qbt.t[H1].tags


def test_incomplete_torrent_is_stopped_before_the_move_and_started_only_back_at_100(world):
    # Every relocation stops its torrent first (the old knob to keep it running is gone: a
    # running torrent's links cannot be hidden from qBittorrent's restart move).
    world.qbt.fail_at[world.save(H1, "pool")] = 0.5
    summary = world.executor().apply(demote_plan(world))
    assert summary.groups[0].status == "rolled_back"
    t = world.qbt.t[H1]
    assert t.save_path == world.save(H1, "stash") and t.progress == 1.0 and t.stopped is False
    i_stop = world.qbt.calls.index(("stop", H1))
    i_back = world.qbt.calls.index(("set_location", H1, world.save(H1, "stash")))
    assert i_stop < i_back  # stopped before anything else
    assert world.qbt.violations == []


def test_a_stale_100_percent_after_the_move_is_not_taken_for_a_recheck(world):
    """qBittorrent shows a stopped torrent moved onto existing files at its new save path with the
    progress it cached before the move, for up to a refresh interval, then at 0 %. Two polls in that
    window were taken for a finished check: the torrent was started with no recheck at all."""
    world.qbt.stale_polls = 3
    summary = world.executor().apply(demote_plan(world))
    assert summary.groups[0].status == "done", summary.groups[0].reason
    for h in (H1, H2):  # H1 was running, H2 stopped (and stays so)
        calls = [c[0] for c in world.qbt.calls if c[1] == h]
        after = [c for c in calls[calls.index("set_location") :] if c not in ("add_tags", "remove_tags")]
        assert after == ["set_location", "recheck"] + (["start"] if h == H1 else []), calls
    assert world.qbt.violations == [] and world.qbt.t[H2].stopped


def test_a_stale_100_percent_after_the_move_back_is_not_taken_for_a_recheck(world):
    """A rollback moves the stopped torrent back onto its old links: qBittorrent shows it at the
    old save path with the progress it cached before that move too. Taken for a check, H1 was
    started (and its ATM turned on) with no recheck at the old place."""
    world.qbt.stale_polls = 3
    world.qbt.fail_at[world.save(H2, "pool")] = 0.9  # H2's recheck fails: both move back
    summary = world.executor().apply(demote_plan(world))
    assert summary.groups[0].status == "rolled_back", summary.groups[0].reason
    calls = [c[0] for c in world.qbt.calls if c[1] == H1]
    second = calls.index("set_location", calls.index("set_location") + 1)
    after = [c for c in calls[second:] if c not in ("add_tags", "remove_tags")]
    # Its download path (cleared before the move) set again once it is back, before its start.
    assert after == ["set_location", "recheck", "set_download_path", "start"], calls
    assert world.qbt.violations == [] and world.qbt.t[H1].save_path == world.save(H1, "stash")


class RestartAfterMoveQbt(FakeQbt):
    """A FakeQbt restarted between polls right after a stopped torrent's move: checkingResumeData
    at the new save path, then stoppedUP at the resume data's (stale) 100 %, then 0 % unchecked."""

    def set_location(self, h, path):
        super().set_location(h, path)
        t = self._get(h)
        if t.stopped:
            i = next(i for i, (state, _p) in enumerate(t.script) if state != "moving")
            t.script.insert(i, ("checkingResumeData", path))


def test_checking_resume_data_after_a_restart_is_not_taken_for_a_recheck(world):
    """checkingResumeData reads no data: the stopped 100 % after it is the resume data's, as stale
    as before the restart. Counted as a check seen, H1 was started with no recheck at the pool."""
    q = RestartAfterMoveQbt(stale_polls=3)
    q.t, world.qbt = world.qbt.t, q
    summary = world.executor().apply(demote_plan(world))
    assert summary.groups[0].status == "done", summary.groups[0].reason
    calls = [c[0] for c in q.calls if c[1] == H1]
    after = [c for c in calls[calls.index("set_location") :] if c not in ("add_tags", "remove_tags")]
    assert after == ["set_location", "recheck", "start"], calls
    assert q.violations == []


def test_the_second_delete_of_cross_seeds_with_own_paths_reads_nothing_again(world, monkeypatch):
    """H1 and H2 seed the same inodes from their own paths. Deleting H1's old link changes the
    inode's ctime: its hash must be carried onto H2's link from the stat the delete checked, or
    H2's delete reads the whole payload again (N-1 full reads for N cross-seeds)."""
    from qbhook.catalog import hashing
    from qbhook.catalog.hashing import ensure_hashes
    from qbhook.catalog.scan import scan_pool

    t = os.stat(world.seed_s).st_mtime_ns - 3600 * 10**9
    for rel, _data in FILES:
        os.utime(os.path.join(world.seed_s, rel), ns=(t, t))  # settled: its hash is cached
    scan_pool(world.cat, world.cfg.primary, world.cfg.scan)
    ensure_hashes(world.cat, [r[0] for r in world.cat.conn.execute("SELECT id FROM inodes")], settle_seconds=60)
    stash_dev = os.stat(world.seed_s).st_dev
    read: list[int] = []
    real = hashing.hash_fd

    def counting(fd, *a, **kw):
        if os.fstat(fd).st_dev == stash_dev:
            read.append(os.fstat(fd).st_ino)
        return real(fd, *a, **kw)

    monkeypatch.setattr(hashing, "hash_fd", counting)
    summary = world.executor().apply(demote_plan(world))
    assert summary.status == "done", summary.groups_failed
    assert read == []  # neither H1's delete (cached) nor H2's (carried) reads an old link again


def test_timeout_fails_and_rolls_back(world):
    world.qbt.move_polls = 10_000  # a move that never ends within budget
    summary = world.executor(relocate_base_s=30, poll_max_s=5).apply(demote_plan(world))
    assert summary.groups[0].status in ("failed", "rolled_back")
    assert "did not settle" in summary.groups_failed["g1"]
    assert summary.groups[0].needs_attention  # rollback cannot finish while it still moves
    assert world.journal.run(summary.run_id).status == "interrupted"
    # later qBittorrent finishes; resume completes the rollback
    world.qbt.move_polls = 1
    for t in world.qbt.t.values():
        t.script = t.script[-3:]
    out = world.executor().resume()
    assert len(out) == 1 and out[0].groups[0].status == "rolled_back"
    for h in (H1, H2):
        assert world.qbt.t[h].save_path == world.save(h, "stash")
    assert world.journal.run(out[0].run_id).status == "failed"


def test_a_torrent_in_error_at_the_new_place_is_moved_back(world, monkeypatch):
    # rTorrent's d.hashing_failed (a check that could not open the files: EACCES, EMFILE) reads as
    # "error". The rollback's first look raised on it, so the move back never ran: the group
    # stayed ROLLBACK INCOMPLETE, and every resume failed the same way. The move back and its
    # recheck are what clear it.
    plan = demote_plan(world)
    real = FakeQbt.set_location
    target = world.save(H1, "pool")

    def erroring(self, h, path):
        real(self, h, path)
        if path == target:
            self._get(h).script[-1] = ("error", path)  # the check at the new place fails

    monkeypatch.setattr(FakeQbt, "set_location", erroring)
    summary = world.executor().apply(plan)
    assert "went to state error" in summary.groups_failed["g1"]
    assert summary.groups[0].status == "rolled_back" and not summary.groups[0].needs_attention
    for h in (H1, H2):
        assert world.qbt.t[h].save_path == world.save(h, "stash")


def test_bad_view_content_never_reaches_set_location(world):
    plan = demote_plan(world)

    def hook(point, gid, seq, step):
        if point == "after_act" and step.kind == "copy" and step.args["dst"].endswith("movie.mkv"):
            with open(step.args["dst"], "r+b") as f:  # bit rot / a racing writer, same size
                first = f.read(1)
                f.seek(0)
                f.write(bytes([first[0] ^ 0xFF]))  # never the byte already there (urandom: 1 in 256)

    summary = world.executor(hook=hook).apply(plan)
    assert "different content" in summary.groups_failed["g1"]
    assert world.qbt.count("set_location") == 0
    assert all(os.path.exists(os.path.join(world.save(h, "stash"), r)) for h in (H1, H2) for r, _d in FILES)


def test_relocate_without_verified_view_is_refused(world):
    plan = demote_plan(world)
    g = plan.groups[0]
    g.steps = [s for s in g.steps if s.kind != "verify_view"]
    summary = world.executor().apply(plan)
    assert "was not verified in this run" in summary.groups_failed["g1"]
    assert world.qbt.count("set_location") == 0


def test_view_missing_a_file_the_torrent_has_is_refused(world):
    world.qbt.t[H1].files.append(("Movie.2020/extra.nfo", 10, 1))
    summary = world.executor().apply(demote_plan(world))
    assert "extra.nfo" in summary.groups_failed["g1"] and world.qbt.count("set_location") == 0


def _rename_file(t: FakeTorrent, old: str, new: str) -> None:
    """qBittorrent's torrents/renameFile: the file on disk and its name in the torrent."""
    os.rename(os.path.join(t.save_path, old), os.path.join(t.save_path, new))
    t.files = [(new if n == old else n, s, p) for n, s, p in t.files]


def _want_file(t: FakeTorrent, name: str) -> None:
    """qBittorrent's torrents/filePrio: a skipped file made wanted."""
    t.files = [(n, s, 1 if n == name else p) for n, s, p in t.files]


@pytest.mark.parametrize("change", ["renamed", "made wanted"])
def test_a_file_changed_in_the_client_after_verify_view_never_gets_set_location(world, change):
    """R24: a file renamed (or a skipped one made wanted) while the first sibling rechecks: the
    second sibling's view lacks it now, so its relocation is refused before setLocation, the group
    rolls back, and nothing is deleted."""
    t2 = world.qbt.t[H2]
    t2.files.append(("Movie.2020/extra.nfo", 10, 0))  # skipped, and nowhere on disk: the view may lack it
    plan = demote_plan(world)
    old, new = "Movie.2020/sub/en.srt", "Movie.2020/sub/en.forced.srt"

    def hook(point, gid, seq, step):
        if point == "before" and step.kind == "relocate" and step.args["torrent"] == H2:
            if change == "renamed" and os.path.exists(os.path.join(t2.save_path, old)):
                _rename_file(t2, old, new)
            elif change == "made wanted":
                _want_file(t2, "Movie.2020/extra.nfo")

    summary = world.executor(hook=hook).apply(plan)
    why = summary.groups_failed["g1"]
    assert f"refusing to relocate {H2}: its files changed" in why and "\n" not in why
    assert (new if change == "renamed" else "extra.nfo") in why
    assert not any(c[0] == "set_location" and c[1] == H2 for c in world.qbt.calls)
    assert world.qbt.violations == []
    for h in (H1, H2):  # rolled back, nothing deleted
        assert world.qbt.t[h].save_path == world.save(h, "stash")
        for rel, data in FILES:
            rel = new if (h, rel, change) == (H2, old, "renamed") else rel
            with open(os.path.join(world.save(h, "stash"), rel), "rb") as f:
                assert f.read() == data
    assert world.qbt.t[H1].stopped is False and world.qbt.t[H2].stopped is True  # as they were


def _imported_before_the_first_delete(world, lib):
    """A hook: Radarr hardlinks the movie into the library right before the first delete."""

    def hook(point, gid, seq, step):
        if point == "before" and step.kind == "delete" and not os.path.exists(lib):
            os.makedirs(world.lib, exist_ok=True)
            os.link(os.path.join(world.save(H1, "stash"), FILES[0][0]), lib)  # Radarr imports it now

    return hook


def test_external_link_appearing_before_delete_stops_and_rolls_back(world):
    plan = demote_plan(world)
    lib = os.path.join(world.lib, "Movie (2020).mkv")
    summary = world.executor(hook=_imported_before_the_first_delete(world, lib)).apply(plan)
    assert "links" in summary.groups_failed["g1"]
    assert summary.groups[0].status == "rolled_back"  # nothing was deleted yet: back to stash
    for h in (H1, H2):
        assert world.qbt.t[h].save_path == world.save(h, "stash")
        for rel, _d in FILES:
            assert os.path.exists(os.path.join(world.save(h, "stash"), rel))
    assert os.stat(lib).st_nlink == 3


@pytest.mark.parametrize("crash", [False, True], ids=["live", "crash-then-resume"])
def test_a_group_rolled_back_after_its_tag_steps_has_the_tags_it_had(world, crash):
    """The Tag steps (+demoted -~noHL) ran, then the first delete refused: the rollback moved
    both torrents back but left them tagged "demoted" and without "~noHL" (a Tag step had no
    undo). Also when the run was killed after the Tag steps and ``resume`` rolls back."""
    world.qbt.t[H1].tags.add("~noHL")
    plan = demote_plan(world)
    lib = os.path.join(world.lib, "Movie (2020).mkv")
    link = _imported_before_the_first_delete(world, lib)

    def kill(point, gid, seq, step):
        if point == "after_act" and step.kind == "tag" and step.torrent == H2:
            raise Crash("killed after the Tag steps")

    if crash:
        with pytest.raises(Crash):
            world.executor(hook=kill).apply(plan)
        assert world.qbt.t[H1].tags == {"demoted", "qbhook-relocated"}  # the Tag steps did run
        g = world.executor(hook=link).resume()[0].groups[0]
    else:
        g = world.executor(hook=link).apply(plan).groups[0]
    assert g.status == "rolled_back" and "links" in g.reason, g.reason
    assert world.qbt.t[H1].tags == {"~noHL"} and world.qbt.t[H2].tags == set()
    assert world.qbt.t[H1].save_path == world.save(H1, "stash")


H3 = "c" * 40


def _add_before_verify_group(world, add):
    def hook(point, gid, seq, step):
        if point == "before" and step.kind == "verify_group" and H3 not in world.qbt.t:
            add()

    return world.executor(hook=hook).apply(demote_plan(world))


@pytest.mark.parametrize("how", ["same folder", "symlinks"])
def test_a_torrent_added_after_planning_on_the_old_files_rolls_the_group_back(world, how):
    # A cross-seed saving at the searchee's folder (or symlinking its files), or a person adding
    # the hash again at the old folder: no new hardlink, so only the clients' lists show it.
    files = [(rel, len(data), 1) for rel, data in FILES]
    links = os.path.join(world.seed_s, "xs-links")

    def add():
        save = world.seed_s
        if how == "symlinks":
            save = links
            for rel, _d in FILES:
                os.makedirs(os.path.dirname(os.path.join(links, rel)), exist_ok=True)
                os.symlink(os.path.join(world.seed_s, rel), os.path.join(links, rel))
        world.qbt.add(FakeTorrent(H3, "Movie.2020", save, list(files), added_on=int(time.time())))

    summary = _add_before_verify_group(world, add)
    g = summary.groups[0]
    assert g.status == "rolled_back" and f"torrent {H3}" in g.reason and "not in the plan" in g.reason, g.reason
    for rel, _d in FILES:
        assert os.path.exists(os.path.join(world.qbt.t[H3].save_path, rel))  # links followed


def test_another_torrent_in_the_same_seeding_root_does_not_stop_the_group(world):
    other = os.path.join(world.seed_s, "Other.2021")
    write(os.path.join(other, "other.mkv").encode(), b"x" * 10)
    summary = _add_before_verify_group(
        world, lambda: world.qbt.add(FakeTorrent(H3, "Other.2021", world.seed_s, [("Other.2021/other.mkv", 10, 1)]))
    )
    assert summary.groups_done == ["g1"], summary.groups_failed


def _bonus_sharer(world, **kw) -> FakeTorrent:
    """A torrent sharing the group's content folder Movie.2020 with a file of its own only."""
    write(os.path.join(world.seed_s, "Movie.2020", "bonus", "b.mkv").encode(), b"y" * 10)
    return FakeTorrent(H3, "Movie.2020", world.seed_s, [("Movie.2020/bonus/b.mkv", 10, 1)], **kw)


def test_an_old_torrent_sharing_the_content_folder_with_files_of_its_own_does_not_stop_the_group(world):
    # Field lesson 7: several torrents share one folder. Known to the planner long before, and
    # sharing no path or inode, it is a group of its own: judged by its files, not its folder
    # (refused by its folder, the group was copied, relocated and rolled back on every sweep).
    world.qbt.add(_bonus_sharer(world, added_on=1))
    summary = world.executor().apply(demote_plan(world))
    assert summary.groups_done == ["g1"], summary.groups[0].reason
    assert os.path.exists(os.path.join(world.seed_s, "Movie.2020", "bonus", "b.mkv"))


def test_a_magnet_without_metadata_in_the_content_folder_rolls_the_group_back(world):
    # No file list yet: which files it will check when its metadata arrives is unknown.
    world.qbt.add(_bonus_sharer(world, added_on=1, has_metadata=False))
    g = world.executor().apply(demote_plan(world)).groups[0]
    assert g.status == "rolled_back" and f"torrent {H3}" in g.reason and "no metadata" in g.reason, g.reason


def _index(world, hashes, at: float) -> None:
    """The torrent index synced for "qbt" at ``at``, listing ``hashes`` first seen then."""
    fields = {k: None for k in _INDEX_COLUMNS} | {"name": "", "category": "", "tags": "[]"}
    recs = [TorrentRecord(h, fields, {}, "") for h in hashes]
    TorrentIndex(world.cat.conn).apply("qbt", recs, {}, [], rid=1, mode="full", now=at)


def _symlinked_newcomer(world, spell=lambda real: real) -> FakeTorrent:
    """cross-seed's symlink mode onto the group's files, each target written by ``spell``."""
    links = os.path.join(world.seed_s, "xs-links")
    for rel, _d in FILES:
        os.makedirs(os.path.dirname(os.path.join(links, rel)), exist_ok=True)
        os.symlink(spell(os.path.join(world.seed_s, rel)), os.path.join(links, rel))
    return FakeTorrent(H3, "Movie.2020", links, [(rel, len(d), 1) for rel, d in FILES])


@pytest.mark.parametrize("index", ["first seen long ago", "never synced"])
def test_old_torrents_without_an_added_time_are_not_read_for_every_group(world, index):
    # rTorrent items with d.load_date 0 have no added time: each counted as new, every group
    # read the files of all of them (5,000 items: 5,000 files() calls and 180,000 stats).
    old = [f"{i:040x}" for i in range(1, 21)]
    for h in old:
        world.qbt.add(FakeTorrent(h, h, os.path.join(world.seed_s, "other"), [(f"{h}/f.mkv", 10, 1)]))
    if index == "first seen long ago":
        _index(world, [*old, H1, H2], at=1000.0)
    read = []
    files = world.qbt.files
    world.qbt.files = lambda h: read.append(h) or files(h)
    summary = world.executor().apply(replace(demote_plan(world), created_at=time.time()))
    assert summary.groups_done == ["g1"], summary.groups[0].reason
    assert not set(read) & set(old)


@pytest.mark.parametrize("indexed", ["unknown to the synced index", "first seen since the plan"])
def test_a_newcomer_without_an_added_time_is_found_through_the_index(world, indexed):
    # An rTorrent cross-seed symlinking the group's files, no d.load_date: the index tells it is new.
    planned_at = time.time() - 3600
    _index(world, [H1, H2] + ([H3] if indexed == "first seen since the plan" else []), at=planned_at + 600)
    world.qbt.add(_symlinked_newcomer(world))
    g = world.executor().apply(replace(demote_plan(world), created_at=planned_at)).groups[0]
    assert g.status == "rolled_back" and f"torrent {H3}" in g.reason, g.reason


def test_a_newcomer_linking_in_a_containers_spelling_rolls_the_group_back(world):
    # R73: cross-seed in a container writes /data/... targets; on the host they dangle, so the
    # stat found nothing and the group deleted the /stash originals under the newcomer's links.
    qbt = QbtConfig("qbt", "http://127.0.0.1:1", "admin", path_map=(("/data", str(world.stash)),))
    world.cfg = replace(world.cfg, qbittorrent=(qbt,))

    def spell(real: str) -> str:
        return "/data" + real[len(str(world.stash)) :]

    world.qbt.add(replace(_symlinked_newcomer(world, spell), added_on=int(time.time())))
    g = world.executor().apply(demote_plan(world)).groups[0]
    assert g.status == "rolled_back" and f"torrent {H3}" in g.reason, g.reason
    assert "links to a file this group deletes" in g.reason, g.reason
    assert all(os.path.exists(os.path.join(world.seed_s, rel)) for rel, _d in FILES)


def test_a_newcomer_whose_file_heads_a_long_link_chain_is_no_traceback(world):
    # R74: a chain of 3,000 symlinks (ELOOP for stat) made os.path.realpath recurse once per
    # link: RecursionError, a traceback and "internal error" in the group's reason. A chain
    # longer than the kernel follows reaches nothing: the group goes on, its files kept.
    qbt = QbtConfig("qbt", "http://127.0.0.1:1", "admin", path_map=(("/data", str(world.stash)),))
    world.cfg = replace(world.cfg, qbittorrent=(qbt,))
    d = os.path.join(world.seed_s, "xs-chain")
    os.makedirs(d)
    n = 3000
    for i in range(n):
        os.symlink(f"c{i + 1}" if i + 1 < n else "/data/nowhere", os.path.join(d, f"c{i}"))
    world.qbt.add(FakeTorrent(H3, "chain", d, [("c0", 10, 1)], added_on=int(time.time())))
    g = world.executor().apply(demote_plan(world)).groups[0]
    assert "RecursionError" not in (g.reason or "") and g.status == "done", (g.status, g.reason)


class _DownClient:
    """Another configured client that does not answer (rTorrent stopped, its socket gone)."""

    name = "rt"

    def __getattr__(self, _name):
        from qbhook.errors import RtorrentUnreachable  # what the adapter raises with no socket

        raise RtorrentUnreachable("rTorrent 'rt': connection refused")


def test_another_client_down_fails_the_group_before_it_changes_anything(world):
    # verify_group lists every client: down, it used to fail each group after its copies and
    # relocations, which the rollback then undid, on every sweep while the client stayed down.
    ex = world.executor()
    ex.ctx.clients["rt"] = _DownClient()
    g = ex.apply(demote_plan(world)).groups[0]
    assert g.status == "rolled_back" and "connection refused" in g.reason, g.reason
    assert g.bytes_copied == 0 and world.qbt.calls == []
    assert not any(os.path.exists(os.path.join(world.save(H1, "pool"), rel)) for rel, _d in FILES)


def test_a_client_going_down_before_verify_group_rolls_the_group_back(world):
    # Up when the group started, down when verify_group lists it: no delete without its listing.
    def hook(point, gid, seq, step):
        if point == "before" and step.kind == "verify_group":
            ex.ctx.clients["rt"] = _DownClient()

    ex = world.executor(hook=hook)
    g = ex.apply(demote_plan(world)).groups[0]
    assert g.status == "rolled_back" and g.reason.startswith("verify_group failed") and "refused" in g.reason
    for h in (H1, H2):
        assert world.qbt.t[h].save_path == world.save(h, "stash")
        for rel, _d in FILES:
            assert os.path.exists(os.path.join(world.save(h, "stash"), rel))


def test_failure_after_deletes_began_does_not_roll_back(world):
    plan = demote_plan(world)
    lib = os.path.join(world.lib, "sub.srt")
    state = {"deletes": 0}

    def hook(point, gid, seq, step):
        if point == "before" and step.kind == "delete":
            state["deletes"] += 1
            if state["deletes"] == 2 and not os.path.exists(lib):
                os.makedirs(world.lib, exist_ok=True)
                os.link(os.path.join(world.save(H1, "stash"), FILES[1][0]), lib)

    summary = world.executor(hook=hook).apply(plan)
    g = summary.groups[0]
    assert g.status == "failed" and "after deletes began" in g.reason and not g.needs_attention
    for h in (H1, H2):
        assert world.qbt.t[h].save_path == world.save(h, "pool")  # stays at the verified new place
    assert os.path.exists(lib) and os.path.exists(os.path.join(world.save(H1, "stash"), FILES[1][0]))


def test_rollback_that_cannot_finish_is_resumed(world):
    world.qbt.fail_at[world.save(H2, "pool")] = 0.9
    world.qbt.refuse_set_location_to.add(world.save(H2, "stash"))  # qBittorrent refuses the way back
    s1 = world.executor().apply(demote_plan(world))
    assert s1.groups[0].needs_attention and "ROLLBACK INCOMPLETE" in s1.groups[0].reason
    assert world.journal.run(s1.run_id).status == "interrupted"
    assert world.qbt.t[H2].stopped is True  # incomplete: never left running
    with pytest.raises(UnsafeOperation, match="did not finish"):
        world.executor().apply(demote_plan(world))  # no new plan over a half-done group
    world.qbt.refuse_set_location_to.clear()
    out = world.executor().resume()
    assert out[0].groups[0].status == "rolled_back"
    for h in (H1, H2):
        assert world.qbt.t[h].save_path == world.save(h, "stash") and world.qbt.t[h].progress == 1
    assert world.qbt.violations == []


# --------------------------------------------------------------------------- crashes and resume


N_STEPS = 3 * 2 + 2 + 2 + 1 + 2 + 2 + 6 + 2  # make, views, relocs, verify_group, starts, tags, deletes, prunes


@pytest.mark.parametrize("hashed", [True, False], ids=["planned-hash", "hash-from-copy"])
@pytest.mark.parametrize("point", ["before", "after_intend", "after_act"])
@pytest.mark.parametrize("k", range(N_STEPS))
def test_crash_at_every_step_then_resume_reaches_the_same_end(world, k, point, hashed):
    # hash-from-copy, after_act of a copy: the copy is made but its hash is not journaled yet;
    # the resumed copy hashes the source again and accepts the copy only if it matches.
    plan = demote_plan(world, hashed=hashed)
    assert len(plan.groups[0].steps) == N_STEPS

    def hook(p, gid, seq, step):
        if p == point and seq == k:
            raise Crash(f"{point} {k}")

    with pytest.raises(Crash):
        world.executor(hook=hook).apply(plan)
    run = world.journal.runs(1)[0]
    assert run.status == "running"  # looks exactly like a killed process
    # a new process: fresh locks (the crashed one's closed with it), same catalog, same qBittorrent
    out = world.executor().resume()
    assert len(out) == 1 and out[0].run_id == run.id
    assert out[0].status == "done", out[0].groups_failed
    assert_demoted(world)
    assert world.journal.run(run.id).status == "done"
    assert [r.status for r in world.journal.steps(run.id)] == ["done"] * N_STEPS
    for h in (H1, H2):
        assert world.qbt.count("set_location", h) == 1  # never issued twice
    assert world.journal.unfinished_runs() == []


def test_a_run_journaled_with_hash_only_group_ids_resumes_under_its_own_id(world):
    """Group ids name each member's client now (identity.group_id_of); a run journaled before, its
    plan without ``instances`` and its group under the hash-only id, is resumed from that journal:
    its step rows, lock and group_state row keep the id it was journaled with, nothing recomputes it."""
    import json

    from qbhook.catalog.identity import group_id

    plan = demote_plan(world)
    old_id = group_id([H1, H2])
    plan = replace(plan, groups=[replace(plan.groups[0], group_id=old_id, instances=[])])

    def hook(p, gid, seq, step):
        if p == "after_act" and seq == 9:
            raise Crash("killed")

    with pytest.raises(Crash):
        world.executor(hook=hook).apply(plan)
    run = world.journal.runs(1)[0]
    doc = json.loads(world.cat.conn.execute("SELECT plan FROM run_plans WHERE run=?", (run.id,)).fetchone()[0])
    for g in doc["groups"]:
        del g["instances"]  # as an older qbhook journaled it, in the run's row (no run_plans then)
    world.cat.conn.execute("DELETE FROM run_plans WHERE run=?", (run.id,))
    world.cat.conn.execute("UPDATE runs SET plan=? WHERE id=?", (json.dumps(doc, sort_keys=True), run.id))
    world.cat.conn.commit()
    out = world.executor().resume()
    assert out[0].status == "done" and [g.group_id for g in out[0].groups] == [old_id]
    assert_demoted(world)
    assert world.journal.group_status(old_id) == ("done", None)
    assert {r.group_id for r in world.journal.steps(run.id)} == {old_id}


def test_crash_equals_uninterrupted_end_state(tmpfs, tmp_path):  # noqa: F811
    """Byte-for-byte: an interrupted+resumed run ends where an uninterrupted one does."""
    states = []
    for crash_at in (None, 9, 14):
        base = tmp_path / f"w{crash_at}"
        base.mkdir()
        w = _make_world(tmpfs, base, f"{crash_at}")
        plan = demote_plan(w)
        if crash_at is None:
            w.executor().apply(plan)
        else:

            def hook(p, gid, seq, step, k=crash_at):
                if p == "after_act" and seq == k:
                    raise Crash()

            with pytest.raises(Crash):
                w.executor(hook=hook).apply(plan)
            w.executor().resume()
        st = end_state(w)
        states.append(st)
        w.cat.close()
    assert states[0] == states[1] == states[2]


def test_crash_while_moving_waits_instead_of_reissuing(world):
    plan = demote_plan(world)
    polls = {"n": 0}

    def hook(p, gid, seq, step):
        if p == "poll":
            polls["n"] += 1
            if polls["n"] == 1:
                raise Crash("killed while qBittorrent moves")

    with pytest.raises(Crash):
        world.executor(hook=hook).apply(plan)
    assert world.qbt.count("set_location", H1) == 1
    out = world.executor().resume()
    assert out[0].status == "done"
    assert world.qbt.count("set_location", H1) == 1 and world.qbt.count("set_location", H2) == 1
    assert_demoted(world)


def test_crash_during_rollback_resumes_the_rollback(world):
    world.qbt.fail_at[world.save(H2, "pool")] = 0.9
    state = {"failed_seen": False}
    plan = demote_plan(world)

    def hook(p, gid, seq, step):
        # the second relocate's wait, after it failed: the rollback's first poll
        if p == "poll" and state["failed_seen"]:
            raise Crash("killed during rollback")
        if p == "poll":
            rows = world.journal.steps(world.journal.runs(1)[0].id)
            state["failed_seen"] = any(r.status == "failed" for r in rows)

    with pytest.raises(Crash):
        world.executor(hook=hook).apply(plan)
    out = world.executor().resume()
    assert out[0].groups[0].status == "rolled_back"
    for h in (H1, H2):
        t = world.qbt.t[h]
        assert t.save_path == world.save(h, "stash") and t.progress == 1 and t.transient is None
    assert world.qbt.t[H1].stopped is False and world.qbt.t[H2].stopped is True
    # H1 was moved and tagged before the kill: the resumed rollback takes the tag off too
    assert world.qbt.count("add_tags", H1) >= 1 and world.qbt.t[H1].tags == set()
    assert world.qbt.violations == []


def test_resume_without_unfinished_runs_does_nothing(world):
    assert world.executor().resume() == []
    world.executor().apply(demote_plan(world))
    assert world.executor().resume() == []


# --------------------------------------------------------------------------- locks


def test_second_executor_gets_lock_busy(world):
    with executor_lock(world.cfg):
        with pytest.raises(LockBusy, match=f"pid {os.getpid()}"):
            world.executor().apply(demote_plan(world))
        with pytest.raises(LockBusy):
            world.executor().resume()
    assert world.journal.runs() == []
    assert world.executor().apply(demote_plan(world)).status == "done"


def test_busy_group_is_skipped_not_failed(world):
    with group_lock(world.cfg, "g1"):
        summary = world.executor(group_lock_wait=0.5).apply(demote_plan(world))
    assert summary.groups[0].status == "busy" and summary.exit_code == 75
    assert world.qbt.calls == [] and world.journal.steps(summary.run_id) == []


def test_grace_period_holds_old_links(tmpfs, tmp_path):  # noqa: F811
    w = _make_world(tmpfs, tmp_path, "g")
    from dataclasses import replace

    w.cfg = replace(w.cfg, policy=replace(w.cfg.policy, grace_period=3600.0))
    summary = w.executor().apply(demote_plan(w))
    assert summary.status == "done" and summary.bytes_freed == 0
    held = os.path.join(w.seed_s, ".qbhook-holding", str(summary.run_id), FILES[0][0])
    assert os.path.exists(held)
    w.cat.close()


# --------------------------------------------------------------------------- a plan from the real planner


def test_plan_from_the_real_planner_applies(world):
    """Contract check: what planner.make_plan emits is what the executor consumes."""
    snapshot = pytest.importorskip("qbhook.decide.snapshot")
    planner = pytest.importorskip("qbhook.decide.planner")
    from qbhook.catalog.scan import scan_pool

    for t in world.qbt.t.values():
        t.tags.add("~noHL")
        t.download_path = ""  # the planner blocks stale download paths; the executor also clears them
    for p in world.cfg.pools:
        scan_pool(world.cat, p, world.cfg.scan)
    plan = planner.make_plan(snapshot.build_snapshot(world.cfg, world.cat, [world.qbt]), world.cfg.policy)
    assert [g.action for g in plan.groups] == ["demote"], [(g.action, g.reason) for g in plan.groups]
    from qbhook.move import fsops

    reads = []
    real_hash = fsops.hashing.hash_file

    def counting(path):
        reads.append(path)
        return real_hash(path)

    fsops.hashing.hash_file = counting
    try:
        summary = world.executor().apply(plan)
    finally:
        fsops.hashing.hash_file = real_hash
    # The copy hashes while it copies; every later check (view, keep, doomed file) is a stat
    # against a cached hash - no file is read a second time.
    assert reads == []
    assert summary.status == "done", summary.groups_failed
    assert_demoted(world, hand_plan=False)
    assert summary.bytes_copied == summary.bytes_freed == sum(len(d) for _r, d in FILES)


# --------------------------------------------------------------------------- several groups


H3 = "c" * 40


def single_torrent_group(w: World, gid: str = "g2") -> GroupPlan:
    data = os.urandom(50_000)
    rel = "Other/o.bin"
    src = write(os.path.join(w.seed_s, rel), data)
    w.qbt.add(FakeTorrent(H3, "Other", w.seed_s, [(rel, len(data), 1)]))
    dst = os.path.join(w.seed_p, rel)
    st = os.lstat(src)
    steps = [
        Step.of("copy", {"src": str(src), "dst": dst, "size": len(data), "blake3": b3(data)}),
        Step.of(
            "verify_view",
            {
                "torrent": H3,
                "instance": "qbt",
                "save_path": w.seed_p,
                "files": [{"path": rel, "size": len(data), "blake3": b3(data)}],
            },
        ),  # relative form
        Step.of(
            "relocate",
            {"torrent": H3, "instance": "qbt", "from_path": w.seed_s, "to_path": w.seed_p, "size": len(data)},
        ),
        Step.of("verify_group", {"torrents": [{"torrent": H3, "instance": "qbt", "save_path": w.seed_p}]}),
        Step.of(
            "delete",
            {
                "path": str(src),
                "fsid": w.cat.fsid(w.cat.fs_for_path(src)),
                "ino": st.st_ino,
                "size": len(data),
                "blake3": b3(data),
                "keep": {"path": dst},
                "seeding_links": [str(src)],
            },
        ),
        Step.of("prune_dirs", {"root": os.path.join(w.seed_s, "Other"), "stop_at": w.seed_s}),
    ]
    return GroupPlan(
        group_id=gid,
        torrents=[H3],
        names=["Other"],
        action="demote",
        reason="seed-only",
        source_pool="stash",
        target_pool="pool",
        bytes_to_copy=len(data),
        bytes_freed=len(data),
        steps=steps,
    )


def test_a_failed_group_does_not_stop_the_next(world):
    plan = demote_plan(world)
    plan.groups.append(single_torrent_group(world))
    plan.groups.append(GroupPlan(group_id="g3", torrents=[], names=[], action="stay", reason="library"))
    world.qbt.fail_at[world.save(H2, "pool")] = 0.9
    summary = world.executor().apply(plan)
    assert [g.group_id for g in summary.groups] == ["g1", "g2"]  # 'stay' groups are not run
    assert summary.groups_failed.keys() == {"g1"} and summary.groups_done == ["g2"]
    assert summary.exit_code == 5 and world.journal.run(summary.run_id).status == "failed"
    assert world.qbt.t[H3].save_path == world.seed_p and not os.path.exists(os.path.join(world.seed_s, "Other"))
    assert world.qbt.t[H1].save_path == world.save(H1, "stash")
    assert summary.bytes_freed == 50_000


def test_group_ids_select_groups(world):
    plan = demote_plan(world)
    plan.groups.append(single_torrent_group(world))
    summary = world.executor().apply(plan, group_ids=["g2"])
    assert summary.groups_done == ["g2"] and world.qbt.t[H1].save_path == world.save(H1, "stash")
    assert [g["group_id"] for g in world.journal.run(summary.run_id).plan["groups"]] == ["g2"]


def test_crash_in_second_group_resumes_only_what_is_left(world):
    plan = demote_plan(world)
    plan.groups.append(single_torrent_group(world))
    n1 = len(plan.groups[0].steps)

    def hook(p, gid, seq, step):
        if gid == "g2" and step.kind == "relocate" and p == "after_intend":
            raise Crash()

    with pytest.raises(Crash):
        world.executor(hook=hook).apply(plan)
    calls_before = world.qbt.count("set_location")
    out = world.executor().resume()
    assert out[0].groups_done == ["g1", "g2"]
    assert world.qbt.count("set_location") == calls_before + 1  # only H3's move was left
    assert [r.status for r in world.journal.steps(out[0].run_id)] == ["done"] * (n1 + 6)
    assert_demoted(world)


# --------------------------------------------------------------------------- CLI


def _cli_env(world, tmp_path, monkeypatch, plan):
    import yaml

    from qbhook import cli as cli_mod
    from qbhook.decide import planning

    cfgfile = tmp_path / "config.yaml"
    cfgfile.write_text(
        yaml.safe_dump(
            {
                "catalog": str(world.cfg.catalog),
                "pools": {
                    "stash": {"path": str(world.stash), "role": "primary"},
                    "pool": {"path": str(world.pool), "role": "cold"},
                },
                "seeding_roots": {"stash": world.seed_s, "pool": world.seed_p},
                "policy": {"relocated_tag": "qbhook-relocated"},
            }
        )
    )
    monkeypatch.setattr(planning, "plan_groups", lambda *a, **kw: planning.PlanRun(None, plan, None))
    monkeypatch.setattr(cli_mod.App, "clients", property(lambda self: {"qbt": world.qbt}))
    from qbhook.move import executor as executor_mod

    # The CLI's own wiring (cli.apply._executor -> build_executor), on the simulated clock:
    # the fake client settles in simulated polls, so real sleeps would only cost wall time.
    real = executor_mod.build_executor
    monkeypatch.setattr(
        executor_mod,
        "build_executor",
        lambda *a, **kw: real(*a, **{**kw, "sleep": world.clock.sleep, "clock": world.clock}),
    )
    return str(cfgfile)


def test_cli_apply_dry_run_then_yes_then_history(world, tmp_path, monkeypatch):
    import json as _json

    from click.testing import CliRunner

    from qbhook.cli import main

    plan = demote_plan(world)
    cfg = _cli_env(world, tmp_path, monkeypatch, plan)
    r = CliRunner().invoke(main, ["--config", cfg, "apply"])
    assert r.exit_code == 0, r.output
    assert "dry run: nothing changed" in r.output and "relocate" in r.output
    assert world.qbt.calls == [] and world.journal.runs() == []

    r = CliRunner().invoke(main, ["--config", cfg, "--json", "apply", "--yes"])
    assert r.exit_code == 0, r.output
    data = _json.loads(r.output)
    assert data["groups_done"] == ["g1"] and data["torrents_relocated"] == 2
    assert_demoted(world)
    assert world.clock.now > 1000.0  # the executor waited on the simulated clock, not for real

    r = CliRunner().invoke(main, ["--config", cfg, "history"])
    assert r.exit_code == 0 and "run     1" in r.output and "done" in r.output
    r = CliRunner().invoke(main, ["--config", cfg, "--json", "history", "--run", "1"])
    steps = _json.loads(r.output)["steps"]
    assert len(steps) == N_STEPS and {s["status"] for s in steps} == {"done"}
    r = CliRunner().invoke(main, ["--config", cfg, "resume"])
    assert r.exit_code == 0 and "no unfinished runs" in r.output


def test_cli_exit_codes_failed_group_and_busy_lock(world, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from qbhook.cli import main

    cfg = _cli_env(world, tmp_path, monkeypatch, demote_plan(world))
    with executor_lock(world.cfg):
        r = CliRunner().invoke(main, ["--config", cfg, "apply", "--yes"])
    assert r.exit_code == 75 and f"pid {os.getpid()}" in r.output
    world.qbt.fail_at[world.save(H1, "pool")] = 0.5
    r = CliRunner().invoke(main, ["--config", cfg, "apply", "--yes"])
    assert r.exit_code == 5 and "FAILED g1" in r.output
    assert world.clock.now > 1000.0  # polled on the simulated clock, not for real


@pytest.mark.parametrize("when", ["at H2's recheck", "at the first delete"])
def test_rollback_stops_a_complete_torrent_for_the_way_back_and_restarts_it(world, when):
    # At H2's recheck H1 was never started at its new place (its start step follows verify_group);
    # at the first delete (a library link the plan does not know) it runs there since its start
    # step: either way it is stopped before the move back.
    if when == "at H2's recheck":
        world.qbt.fail_at[world.save(H2, "pool")] = 0.9
    else:
        os.makedirs(world.lib, exist_ok=True)
        os.link(os.path.join(world.save(H1, "stash"), FILES[0][0]), os.path.join(world.lib, "Movie (2020).mkv"))
    summary = world.executor().apply(demote_plan(world))
    assert summary.groups[0].status == "rolled_back", summary.groups[0].reason
    calls = [c for c in world.qbt.calls if c[1] == H1]
    back = calls.index(("set_location", H1, world.save(H1, "stash")))
    started_there = ("start", H1) in calls[:back]
    assert started_there is (when == "at the first delete")
    # stopped for the way back (after any start there), rechecked there (qBittorrent would not on
    # its own), its download path as found (``Executor._settings_back``), then started
    before = [c[0] for c in calls[:back] if c[0] in ("start", "stop")]
    assert before == (["stop", "start", "stop"] if started_there else ["stop"]), calls
    after = [c for c in calls[back + 1 :] if c[0] not in ("remove_tags", "add_tags")]
    restored = ("set_download_path", H1, "/stale/incomplete")
    assert after == [("recheck", H1), restored, ("start", H1)]
    assert world.qbt.t[H1].stopped is False and world.qbt.t[H1].download_path == "/stale/incomplete"
    assert world.qbt.violations == []


def _checking_when_first_seen(world, state: str):
    """A hook that puts H1 in ``state`` (a check a person started, checkingResumeData after a
    restart) right before its relocation first looks at it; the check ends at 100 % by itself."""

    def hook(point, gid, seq, step):
        if point == "before" and step.kind == "relocate" and step.torrent == H1:
            world.qbt.t[H1].script = [(state, None)] * 3 + [("done", None)]

    return hook


@pytest.mark.parametrize("fail", [False, True], ids=["relocated", "rolled-back"])
@pytest.mark.parametrize(
    ("state", "stopped"),
    [("checkingUP", False), ("checkingUP", True), ("checkingResumeData", False)],
    ids=["recheck-running", "recheck-stopped", "resume-data"],
)
def test_a_torrent_first_seen_checking_is_moved_back_by_a_rollback_and_runs_as_before(world, state, stopped, fail):
    """H1 is checking when its relocation first looks, is waited for, then moved. That first look
    said "not at rest": the rollback (H2's recheck fails) took it for "never moved" and left H1 at
    the new place, its old links hidden. The look the move was issued on is journaled before it,
    so H1 comes back; and it runs again only if it ran before the check ended (a person's recheck
    of a stopped torrent is not a start)."""
    world.qbt.t[H1].stopped = stopped
    if fail:
        world.qbt.fail_at[world.save(H2, "pool")] = 0.9
    before = tree(world.stash)

    summary = world.executor(hook=_checking_when_first_seen(world, state)).apply(demote_plan(world))

    (g,) = summary.groups
    assert g.status == ("rolled_back" if fail else "done"), g.reason
    t = world.qbt.t[H1]
    assert t.save_path == world.save(H1, "stash" if fail else "pool") and t.progress == 1
    assert t.stopped is stopped and (("start", H1) in world.qbt.calls) is not stopped
    if fail:
        assert tree(world.stash) == before  # every old link back, nothing held
    (row,) = [r for r in world.journal.steps(summary.run_id) if r.kind == "relocate" and r.args["torrent"] == H1]
    assert row.args["_observed"]["stable"] is True and row.args["_observed"]["was_running"] is not stopped
    assert world.qbt.violations == []


@pytest.mark.parametrize("kill", ["while-waiting", "at-set-location"])
def test_a_torrent_first_seen_checking_is_moved_back_after_a_kill_and_a_resume(world, kill):
    """As above, killed while the relocation waits for H1's check (its first look journaled, not
    yet replaced) or at setLocation (replaced, H1 stopped by us, its links hidden): the resumed
    run's rollback moves H1 back, puts its links back and starts it, as it ran before."""
    world.qbt.fail_at[world.save(H2, "pool")] = 0.9
    before = tree(world.stash)
    checking = _checking_when_first_seen(world, "checkingUP")
    real_set_location = world.qbt.set_location

    def killed(h, path):
        world.qbt.set_location = real_set_location
        raise Crash("killed at setLocation")

    def hook(point, gid, seq, step):
        checking(point, gid, seq, step)
        if kill == "while-waiting" and point == "poll" and step.torrent == H1:
            raise Crash("killed while H1 is checked")

    if kill == "at-set-location":
        world.qbt.set_location = killed
    with pytest.raises(Crash):
        world.executor(hook=hook).apply(demote_plan(world))

    (summary,) = world.executor().resume()

    assert summary.groups[0].status == "rolled_back", summary.groups[0].reason
    t = world.qbt.t[H1]
    assert t.save_path == world.save(H1, "stash") and t.progress == 1 and t.stopped is False
    assert tree(world.stash) == before
    assert world.qbt.violations == []


def _crashed_run(world):
    plan = demote_plan(world)

    def hook(p, gid, seq, step):
        if p == "after_act" and seq == 3:
            raise Crash()

    with pytest.raises(Crash):
        world.executor(hook=hook).apply(plan)
    return world.journal.runs(1)[0]


@pytest.fixture
def foreign():
    """A live process of this host, not ours: (its pid, its start tick)."""
    import subprocess

    from qbhook import procs

    p = subprocess.Popen(["sleep", "60"])
    try:
        yield p.pid, procs.process_state(p.pid)[1]
    finally:
        p.kill()
        p.wait()


def test_resume_picks_dead_runs_and_leaves_live_foreign_ones(world, foreign):
    from qbhook import procs

    run = _crashed_run(world)
    assert run.process == procs.identity() is not None  # who ran it, beyond its pid
    pid, start = foreign
    boot, ns = procs.boot_id(), procs.pid_namespace()
    # The same process (same boot, same start tick) still runs: not ours to take.
    world.cat.conn.execute("UPDATE runs SET pid=?, process=? WHERE id=?", (pid, f"{boot}:{start}:{ns}", run.id))
    (left,) = world.executor().resume()
    assert left.skipped and f"process {pid} still runs" in left.skipped and left.exit_code == 75
    assert world.journal.run(run.id).status == "running"
    out = world.executor().resume(run.id)  # named explicitly: taken over
    assert out[0].status == "done" and world.journal.run(run.id).pid == os.getpid()
    assert_demoted(world)
    with pytest.raises(Exception, match="nothing to resume"):
        world.executor().resume(run.id)
    with pytest.raises(Exception, match="no run 999"):
        world.executor().resume(999)


@pytest.mark.parametrize("reused", ["start tick", "boot"])
def test_resume_takes_a_run_whose_pid_another_process_now_has(world, foreign, reused):
    # Review finding: serve's worker runs the executor in serve's own process, so after a crash
    # and a reboot the run's pid often belonged to another daemon: resume left the run alone
    # ("alive (reused?)") and serve applied nothing for as long as that daemon lived.
    from qbhook import procs

    run = _crashed_run(world)
    pid, start = foreign
    boot, ns = procs.boot_id(), procs.pid_namespace()
    ident = f"{boot}:{int(start) + 1}:{ns}" if reused == "start tick" else f"an-earlier-boot:{start}:{ns}"
    world.cat.conn.execute("UPDATE runs SET pid=?, process=? WHERE id=?", (pid, ident, run.id))
    (out,) = world.executor().resume()
    assert out.skipped is None and out.status == "done" and world.journal.run(run.id).pid == os.getpid()
    assert world.journal.run(run.id).process == procs.identity()
    assert_demoted(world)


def test_resume_judges_a_run_journaled_without_its_process_by_its_pid(world, foreign, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from qbhook.cli import main

    run = _crashed_run(world)
    pid, _start = foreign
    world.cat.conn.execute("UPDATE runs SET pid=?, process=NULL WHERE id=?", (pid, run.id))
    world.cat.conn.commit()
    cfg = _cli_env(world, tmp_path, monkeypatch, demote_plan(world))
    r = CliRunner().invoke(main, ["--config", cfg, "resume"])
    # Left alone, and said so: not "no unfinished runs" with exit 0.
    assert r.exit_code == 75, r.output
    assert f"run {run.id} left alone: its pid {pid} is alive (reused?)" in r.output
    assert "no unfinished runs" not in r.output
    assert world.journal.run(run.id).status == "running"


def test_a_top_level_file_named_dot_dot_nfo_demotes(world):
    # Review finding: verify_view refused a file whose path relative to the save path merely
    # starts with ".." ("..nfo"), while the planner (by path component) accepted it: every
    # sweep copied the payload, the view check refused, the group rolled back, forever.
    planner = pytest.importorskip("qbhook.decide.planner")
    from qbhook.catalog.scan import scan_pool
    from qbhook.decide import snapshot

    data = b"release notes\n"
    a = write(os.path.join(world.seed_s, "..nfo").encode(), data)
    os.link(a, os.path.join(world.seed_s, "cross-seed", "..nfo").encode())
    for t in world.qbt.t.values():
        t.files.append(("..nfo", len(data), 1))
        t.tags.add("~noHL")
        t.download_path = ""
    for p in world.cfg.pools:
        scan_pool(world.cat, p, world.cfg.scan)
    plan = planner.make_plan(snapshot.build_snapshot(world.cfg, world.cat, [world.qbt]), world.cfg.policy)
    assert [g.action for g in plan.groups] == ["demote"], [(g.action, g.reason) for g in plan.groups]
    summary = world.executor().apply(plan)
    assert summary.status == "done", summary.groups_failed
    for h in (H1, H2):
        with open(os.path.join(world.save(h, "pool"), "..nfo"), "rb") as f:
            assert f.read() == data


@pytest.mark.parametrize("command", [["resume", "--run", "999"], ["history", "--run", "999"]])
def test_cli_a_run_that_does_not_exist_is_bad_input(world, tmp_path, monkeypatch, command):
    # Review finding: written twice (executor.resume, cli history) and exiting 1; a run id a
    # person typed that the journal lacks is bad input (errors.UnknownRun, exit 2).
    from click.testing import CliRunner

    from qbhook.cli import main

    cfg = _cli_env(world, tmp_path, monkeypatch, demote_plan(world))
    r = CliRunner().invoke(main, ["--config", cfg, *command])
    assert r.exit_code == 2, r.output
    assert r.output.splitlines() == ["qbhook: there is no run 999 in the journal"]


def test_a_rolled_back_view_is_journaled_with_the_inode_the_copy_made_not_a_later_lookup(world):
    # Review finding: the leftover record took the view's inode from an lstat by name after the
    # rollback. A writer of that folder who renames their own file over the copy meanwhile got
    # *their* file recorded as qbhook's, for the leftover remover to delete.
    plan = demote_plan(world)
    lib = os.path.join(world.lib, "Movie (2020).mkv")
    dst = os.path.join(world.save(H1, "pool"), FILES[0][0])
    made = {}

    def hook(point, gid, seq, step):
        if point == "before" and step.kind == "delete" and not made:
            os.makedirs(world.lib, exist_ok=True)
            os.link(os.path.join(world.save(H1, "stash"), FILES[0][0]), lib)  # the delete refuses: rollback
            made["ino"] = os.lstat(dst).st_ino
            theirs = dst + ".theirs"
            with open(theirs, "wb") as f:
                f.write(b"t" * len(FILES[0][1]))  # same size, other bytes
            os.rename(theirs, dst)

    summary = world.executor(hook=hook).apply(plan)
    assert summary.groups[0].status == "rolled_back"
    (view,) = [v for _sid, v in world.journal.leftover_views() if v["path"] == dst]
    (copy,) = [r for r in world.journal.steps(summary.run_id) if r.kind == "copy" and r.args["dst"] == dst]
    # the copy's own proven stat (Act.after), journaled with its result
    assert (view["ino"], view["ctime_ns"]) == (copy.result["ino"], copy.result["ctime_ns"]) == (made["ino"], ANY)
    assert view["ino"] != os.lstat(dst).st_ino


def _library_link_before_the_first_delete(world):
    """A hook: Radarr links a file of the old place just before the first delete, which then refuses
    (a library links it): the group rolls back."""
    lib = os.path.join(world.lib, "Movie (2020).mkv")

    def hook(point, gid, seq, step):
        if point == "before" and step.kind == "delete" and not os.path.exists(lib):
            os.makedirs(world.lib, exist_ok=True)
            os.link(os.path.join(world.save(H1, "stash"), FILES[0][0]), lib)

    return hook


@pytest.mark.parametrize("k", [0, 2, 3], ids=["copy", "mkempty", "link"])
def test_a_view_made_before_a_crash_is_tracked_when_the_resumed_group_rolls_back(world, k):
    # Review finding: the make step repeated after the crash answers present/already, and only
    # copied/linked/created views were journaled as leftovers: the crashed run's copy stayed on
    # the target pool, untracked, once the group rolled back.
    plan = demote_plan(world)
    makes = [s.args["dst"] for s in plan.groups[0].steps if s.kind in ("copy", "link", "mkempty")]
    assert plan.groups[0].steps[k].kind in ("copy", "mkempty", "link")

    def crash(p, gid, seq, step):
        if p == "after_act" and seq == k:
            raise Crash(f"after_act {k}")

    with pytest.raises(Crash):
        world.executor(hook=crash).apply(plan)
    (out,) = world.executor(hook=_library_link_before_the_first_delete(world)).resume()
    assert out.groups[0].status == "rolled_back", out.groups[0].reason
    redone = next(r for r in world.journal.steps(out.run_id) if r.seq == k)
    assert redone.result["status"] in ("present", "already")
    assert sorted(v["path"] for _sid, v in world.journal.leftover_views()) == sorted(makes)
    from qbhook.move import leftovers

    done = leftovers.remove_leftover_views(world.cfg, world.cat, [world.qbt])
    assert [r["status"] for r in done] == ["removed"] * len(makes), done
    assert not any(os.path.lexists(p) for p in makes)


def test_a_rollback_killed_while_journaling_its_views_journals_each_once_when_resumed(world, monkeypatch):
    plan = demote_plan(world)
    makes = [s.args["dst"] for s in plan.groups[0].steps if s.kind in ("copy", "link", "mkempty")]
    real = Journal.record_leftover
    recorded = []

    def killed_after_one(self, run, group_id, view):
        sid = real(self, run, group_id, view)
        recorded.append(sid)
        if len(recorded) == 1:
            raise Crash("killed while journaling the leftover views")
        return sid

    monkeypatch.setattr(Journal, "record_leftover", killed_after_one)
    with pytest.raises(Crash):
        world.executor(hook=_library_link_before_the_first_delete(world)).apply(plan)
    assert world.journal.group_status("g1")[0] != "rolled_back"  # its end state waits for its views
    (out,) = world.executor().resume()
    assert out.groups[0].status == "rolled_back", out.groups[0].reason
    assert world.journal.group_status("g1")[0] == "rolled_back"
    assert sorted(v["path"] for _sid, v in world.journal.leftover_views()) == sorted(makes)


@pytest.mark.parametrize("k", [0, 2, 3], ids=["copy", "mkempty", "link"])
def test_a_view_file_is_made_only_below_a_seeding_root(world, k):
    # Defence in depth: the make acts were handed the whole pools as roots, so a step naming a
    # destination elsewhere in a pool (a planner bug, an edited plan file) wrote there.
    plan = demote_plan(world)
    steps = plan.groups[0].steps
    outside = os.path.join(str(world.pool), "elsewhere", os.path.basename(steps[k].args["dst"]))
    steps[k] = Step.of(steps[k].kind, {**steps[k].args, "dst": outside})
    summary = world.executor().apply(plan)
    assert "not inside a configured root" in summary.groups_failed["g1"]
    assert not os.path.lexists(os.path.dirname(outside))


@pytest.mark.parametrize("saved", [False, True], ids=["apply", "apply --plan"])
def test_cli_apply_removes_leftover_views_first_only_when_it_may_change_things(world, tmp_path, monkeypatch, saved):
    """One order for both: `apply --plan FILE --yes` skipped the removal `apply --yes` did."""
    from click.testing import CliRunner

    from qbhook.cli import main
    from qbhook.decide import approved
    from qbhook.decide.plan import Plan
    from qbhook.move import leftovers

    cfg = _cli_env(world, tmp_path, monkeypatch, Plan(groups=[], created_at=0.0))
    calls = []
    monkeypatch.setattr(leftovers, "remove_leftover_views", lambda *a, **kw: calls.append("leftovers") or [])
    monkeypatch.setattr(
        approved, "load", lambda *a: approved.SavedPlan("0" * 64, {}, Plan(groups=[], created_at=0.0), {})
    )
    args = ["apply", "--plan", str(tmp_path / "plan.json")] if saved else ["apply"]
    r = CliRunner().invoke(main, ["--config", cfg, *args])
    assert r.exit_code == 0 and calls == [], r.output  # a dry run removes nothing
    r = CliRunner().invoke(main, ["--config", cfg, *args, "--yes"])
    assert r.exit_code == 0 and calls == ["leftovers"], r.output


@pytest.mark.parametrize("spec", ["x", ":mid_act", "-1", "3x:after_intend"])
def test_a_mistyped_test_crash_variable_is_one_line_not_a_traceback(monkeypatch, spec):
    from qbhook.move import executor as executor_mod

    monkeypatch.setenv(executor_mod.CRASH_ENV, spec)
    with pytest.raises(QbhookError, match="QBHOOK_TEST_CRASH_AT=.*want <step number>"):
        executor_mod._env_crash_hook()
    monkeypatch.setenv(executor_mod.CRASH_ENV, "3:mid_act")
    assert callable(executor_mod._env_crash_hook())


def test_a_torrent_removed_before_a_later_failure_is_undone_as_gone(world):
    """H1 moved; then it is removed from qBittorrent and H2's move fails: the rollback of H1
    has nothing to move and must not stop the group's rollback there."""
    world.qbt.fail_at[world.save(H2, "pool")] = 0.9

    def hook(point, gid, seq, step):
        if point == "poll" and step.torrent == H2 and H1 in world.qbt.t:
            del world.qbt.t[H1]

    summary = world.executor(hook=hook).apply(demote_plan(world))

    (g,) = summary.groups
    assert g.status == "rolled_back" and not g.needs_attention, g.reason
    (row,) = [r for r in world.journal.steps(summary.run_id) if r.kind == "relocate" and r.args["torrent"] == H1]
    assert row.status == "undone" and row.result["note"] == "torrent gone"
    t = world.qbt.t[H2]
    assert t.save_path == world.save(H2, "stash") and t.progress == 1
    for rel, data in FILES:
        with open(os.path.join(world.save(H1, "stash"), rel), "rb") as f:
            assert f.read() == data


@pytest.mark.parametrize("deleted", [0, 2])
def test_a_torrent_moved_back_after_verify_group_stops_the_deletes(world, deleted):
    # A person turns ATM back on (category path: the old folder) once verify_group is done: its
    # old links are its files again. Before the first delete the group rolls back; later, the
    # deletes stop there, the rest of the old links kept.
    state = {"deletes": 0}

    def hook(point, gid, seq, step):
        if point == "before" and step.kind == "delete":
            world.clock.now += 5  # each delete re-hashes its link: the deletes take a while
            if state["deletes"] == deleted:
                t = world.qbt.t[H1]
                t.auto_tmm, t.save_path = True, world.seed_s
            state["deletes"] += 1

    summary = world.executor(hook=hook).apply(demote_plan(world))
    g = summary.groups[0]
    assert f"torrent {H1} changed after verification" in g.reason, g.reason
    assert g.status == ("rolled_back" if deleted == 0 else "failed"), g.reason
    kept = [rel for rel, _d in FILES if os.path.exists(os.path.join(world.seed_s, rel))]
    assert kept == [rel for rel, _d in FILES][deleted:]


def _newcomer_during_deletes(world, deleted: int, step_s: float):
    """The demote with each delete taking ``step_s`` (it re-hashes its link), and a cross-seed
    symlinking the group's old files added right before delete number ``deleted`` (0: the first)."""
    state = {"deletes": 0}

    def hook(point, gid, seq, step):
        if point == "before" and step.kind == "delete":
            world.clock.now += step_s
            if state["deletes"] == deleted and H3 not in world.qbt.t:
                world.qbt.add(replace(_symlinked_newcomer(world), added_on=int(time.time())))
            state["deletes"] += 1

    return world.executor(hook=hook).apply(demote_plan(world))


@pytest.mark.parametrize("deleted", [0, 2])
def test_a_torrent_added_during_the_deletes_stops_them(world, deleted):
    # Added after verify_group (the "finished" event that queued this demote also triggers
    # cross-seed), it was never looked for: its files were deleted under it (missingFiles).
    # Before the first delete the group rolls back; later, the deletes stop there.
    g = _newcomer_during_deletes(world, deleted, step_s=60).groups[0]
    assert f"torrent {H3} (qbt), not in the plan" in g.reason, g.reason
    assert g.status == ("rolled_back" if deleted == 0 else "failed"), g.reason
    kept = [rel for rel, _d in FILES if os.path.exists(os.path.join(world.seed_s, rel))]
    assert kept == [rel for rel, _d in FILES][deleted:]
    assert all(os.path.exists(os.path.join(world.save(H2, "stash"), rel)) for rel, _d in FILES)
    if deleted:  # nothing done is undone: the torrents stay at their verified new place
        assert "no more old links deleted" in g.reason and "after deletes began" in g.reason, g.reason
        for h in (H1, H2):
            assert world.qbt.t[h].save_path == world.save(h, "pool")


def test_the_deletes_list_the_clients_once_per_interval_not_per_delete(world):
    listings = []
    torrents = world.qbt.torrents
    world.qbt.torrents = lambda hashes=None, **kw: (
        (hashes is None and listings.append(world.clock.now)) or torrents(hashes, **kw)
    )
    state = {}

    def hook(point, gid, seq, step):
        if point == "before" and step.kind == "verify_group":
            state["verified"] = len(listings) + 1  # its own listing
        if point == "before" and step.kind == "delete":
            world.clock.now += 10

    summary = world.executor(hook=hook).apply(demote_plan(world))
    assert summary.groups_done == ["g1"], summary.groups_failed
    # Six deletes 10 s apart: once before the first (verify_group's look is 10 s old), once 30 s
    # later, and once after the last (the write-place look at the group's end, its last look 20 s old).
    during = listings[state["verified"] :]
    assert len(during) == 3 and during[1] - during[0] == 30 and during[2] - during[1] == 20, listings


def test_a_quick_groups_deletes_list_the_clients_no_more_than_verify_group_did(world):
    # The write-place look at the group's end is skipped, as the first delete's look is, while the
    # last look is under _REREAD_S old: a sweep's small groups pay no listing for it.
    listings = []
    torrents = world.qbt.torrents
    world.qbt.torrents = lambda hashes=None, **kw: (
        (hashes is None and listings.append(world.clock.now)) or torrents(hashes, **kw)
    )
    state = {}

    def hook(point, gid, seq, step):
        if point == "before" and step.kind == "verify_group":
            state["verified"] = len(listings) + 1  # its own listing

    summary = world.executor(hook=hook).apply(demote_plan(world))
    assert summary.groups_done == ["g1"], summary.groups_failed
    assert listings[state["verified"] :] == [], listings


@pytest.mark.parametrize("deleted", [0, 2])
def test_a_torrent_added_while_a_demote_was_down_is_found_by_its_resume(world, deleted):
    # Killed after verify_group (and ``deleted`` deletes), a cross-seed added, then qbhook resume:
    # the resumed verify_group finds it. With deletes done, a rollback would move the torrents
    # back onto old links that are partly gone: the group stops at its verified new place.
    def hook(point, gid, seq, step):
        if (
            point == "before"
            and step.kind == "delete"
            and sum(r.kind == "delete" for r in world.journal.steps(1)) == deleted
        ):
            raise Crash("killed")

    with pytest.raises(Crash):
        world.executor(hook=hook).apply(demote_plan(world))
    world.qbt.add(replace(_symlinked_newcomer(world), added_on=int(time.time())))
    (out,) = world.executor().resume()
    g = out.groups[0]
    assert f"torrent {H3} (qbt), not in the plan" in g.reason and not g.needs_attention, g.reason
    assert g.status == ("rolled_back" if deleted == 0 else "failed"), g.reason
    kept = [rel for rel, _d in FILES if os.path.exists(os.path.join(world.seed_s, rel))]
    assert kept == [rel for rel, _d in FILES][deleted:]
    for h in (H1, H2):
        assert world.qbt.t[h].save_path == world.save(h, "stash" if deleted == 0 else "pool")
    if deleted:  # stopped for good: the old links left are orphans now
        assert "4 old link(s) kept under" in g.reason and "qbhook orphans" in g.reason, g.reason


def _killed_at_a_delete(world, deleted: int, point: str) -> None:
    """A demote killed at its delete number ``deleted`` (0: the first): ``point`` "before" its
    intent, or "after_intend" (the sync, the listings, the re-hash: nothing unlinked yet)."""

    def hook(p, gid, seq, step):
        done = [r for r in world.journal.steps(1) if r.kind == "delete" and r.status == "done"]
        if p == point and step.kind == "delete" and len(done) == deleted:
            raise Crash("killed")

    with pytest.raises(Crash):
        world.executor(hook=hook).apply(demote_plan(world))


def _not_passing_yet(world, ex, why: str) -> None:
    """What a resume meets right after a reboot, or a person's doing (``why``)."""
    if why == "newcomer":
        world.qbt.add(replace(_symlinked_newcomer(world), added_on=int(time.time())))
    elif why == "member checking":
        world.qbt.t[H2].transient = "checkingUP"
    elif why == "resume data":
        world.qbt.t[H1].transient = "checkingResumeData"  # qBittorrent right after its restart
    else:
        ex.ctx.clients["rt"] = _DownClient()  # not up yet when qbhook resumes at boot


@pytest.mark.parametrize("why", ["newcomer", "member checking", "client down", "resume data"])
def test_a_delete_only_intended_when_killed_does_not_stop_a_failing_resume(world, why):
    # R18: killed between the first delete's intent and its unlink (nothing unlinked), the
    # resumed verify_group failing stopped the group at the new place with every old link kept
    # (duplicated data, nothing to resume). The intended delete is judged by the world: its
    # link is still the planned file, so the group rolls back as before any delete.
    _killed_at_a_delete(world, 0, "after_intend")
    ex = world.executor()
    _not_passing_yet(world, ex, why)
    g = ex.resume()[0].groups[0]
    assert "after deletes began" not in g.reason, g.reason
    if why in ("member checking", "resume data"):  # still checking: its move back waits for it
        assert g.needs_attention and "ROLLBACK INCOMPLETE" in g.reason, g.reason
        for h in (H1, H2):
            world.qbt.t[h].transient = None
        g = ex.resume()[0].groups[0]
    assert g.status == "rolled_back", g.reason
    for h in (H1, H2):
        assert world.qbt.t[h].save_path == world.save(h, "stash")
        assert all(os.path.exists(os.path.join(world.save(h, "stash"), rel)) for rel, _d in FILES)


@pytest.mark.parametrize("why", ["client down", "resume data"])
def test_a_resume_after_some_deletes_waits_out_a_passing_problem(world, why):
    # R18: rebooted after two deletes, the resume met a client not up yet (or a torrent checking
    # its resume data): the group was closed failed for good, and the rest of the old links
    # stayed forever. It pauses now, resumable, and a later resume finishes its deletes.
    _killed_at_a_delete(world, 2, "before")
    ex = world.executor()
    _not_passing_yet(world, ex, why)
    (out,) = ex.resume()
    g = out.groups[0]
    assert out.status == "interrupted" and g.status == "failed" and g.needs_attention and g.paused, g.reason
    assert "paused at the verified new place, 4 old link(s) kept under" in g.reason, g.reason
    assert out.exit_code == 75  # try again later, not "a group failed" (5)
    assert out.counters()["groups_paused"] == ["g1"]  # history and the status page: not a failed one
    ex.ctx.clients.pop("rt", None)
    world.qbt.t[H1].transient = None
    (out,) = ex.resume()
    assert out.status == "done" and out.groups[0].status == "done", out.groups[0].reason
    for h in (H1, H2):
        assert world.qbt.t[h].save_path == world.save(h, "pool")
        assert not any(os.path.exists(os.path.join(world.save(h, "stash"), rel)) for rel, _d in FILES)


class _RefusingClient:
    """Another configured client that answers, refusing (a password changed: HTTP 403)."""

    name = "rt"

    def __getattr__(self, _name):
        raise QbtError("qBittorrent 'rt' (http://x): torrents/info refused (HTTP 403): Forbidden")


@pytest.mark.parametrize("why", ["missingFiles", "refused"])
def test_a_problem_that_does_not_pass_by_itself_stops_a_resumed_group_for_good(world, why):
    # R21: after deletes began, every unstable state (missingFiles: /pool not mounted yet when
    # qBittorrent came back) and every QbtError (a refusal, a client the config lacks) paused the
    # group "until it passes": it never did, and the paused run kept serve's worker from every
    # job for good. Only no answer and a check under way pause now; these stop it, as before.
    _killed_at_a_delete(world, 2, "before")
    ex = world.executor()
    if why == "missingFiles":
        world.qbt.t[H1].transient = "missingFiles"
    else:
        ex.ctx.clients["rt"] = _RefusingClient()
    (out,) = ex.resume()
    g = out.groups[0]
    assert g.status == "failed" and not g.paused and not g.needs_attention, g.reason
    assert out.status == "failed" and out.exit_code == 5, out.status
    assert "qbhook orphans lists them" in g.reason, g.reason
    assert ex.resume() == []  # nothing left to retry
