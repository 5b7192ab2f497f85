"""RtorrentClient against a real rtorrent 0.9.8 (Debian) on zfs-fuse pools.

Covers what the executor needs from the adapter on the real client: listing in host
paths, relocation of a multi-file and a single-file item onto a hardlinked view on the
other pool (100 % after d.check_hash, nothing written), an incomplete view ending
stopped and incomplete (never downloading into it), label and tags, unknown hashes,
and rtorrent killed in the middle of the recheck.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from qbhook.clients.port import BatchListing, ClientPort
from qbhook.clients.rtorrent import RtorrentClient
from qbhook.errors import (
    PathMapError,
    RtorrentUnreachable,
    UnknownTorrent,
    UnsafeOperation,
)
from qbhook.sandbox.rtorrent import load_torrent
from qbhook.sandbox.torrents import infohash, make_torrent, write_payload

pytestmark = pytest.mark.integration

SHOW = {"e01.mkv": 300_000, "e02.mkv": 200_000, "sub/e01.srt": 1_000}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_nothing_deleted(files: dict[Path, str], root: Path) -> None:
    """Each file is at its place with its bytes or, while its item was being relocated, kept out
    of the client's reach in a run's "-moving" holding folder (move/fsops.hide_during_move)
    until the relocation is settled or rolled back."""
    for p, digest in files.items():
        if p.exists():
            assert _digest(p) == digest, p
            continue
        hidden = list(root.glob(f".qbhook-holding/*-moving/{p.relative_to(root)}"))
        assert [_digest(h) for h in hidden] == [digest], (p, hidden)


def _snapshot(root: Path) -> dict[str, tuple[int, int, int, str]]:
    """(inode, size, mtime_ns, sha256) of every file under root: proves nothing was written."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_ino, st.st_size, st.st_mtime_ns, _digest(p))
    return out


def _wait_complete(client: RtorrentClient, h: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t = client.find(h)  # None for a moment: load.raw_start may return before the item is listed
        if t is not None and t.is_complete and not t.is_checking:
            return t
        time.sleep(0.1)
    raise TimeoutError(f"{h} not complete: {client.torrent(h)}")


def _hardlinked_view(src: Path, library: Path, view: Path) -> None:
    """Copy ``src`` (file or folder) into ``library`` on the other pool, hardlink it into ``view``."""
    if src.is_file():
        library.parent.mkdir(parents=True, exist_ok=True)
        view.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, library)
        os.link(library, view)
        return
    shutil.copytree(src, library)
    for f in library.rglob("*"):
        if f.is_file():
            target = view / f.relative_to(library)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(f, target)


@pytest.fixture
def bed(pools, tmp_path):
    """A multi-file item (Show.X) and a single-file item (movie.mkv) seeding from stash."""
    stash_t = pools["stash"] / "data" / "torrents"
    write_payload(stash_t / "Show.X", SHOW)
    write_payload(stash_t, {"movie.mkv": 400_000}, seed=1)
    multi = make_torrent(stash_t / "Show.X", tmp_path / "show.torrent")
    single = make_torrent(stash_t / "movie.mkv", tmp_path / "movie.torrent")
    return {
        "stash_t": stash_t,
        "pool_t": pools["pool"] / "data" / "torrents",
        "library": pools["pool"] / "data" / "media",
        "multi": multi,
        "single": single,
        "hm": infohash(multi),
        "hs": infohash(single),
    }


def _load_seeding(rtorrent, client, bed):
    load_torrent(rtorrent.rpc(), bed["multi"], str(bed["stash_t"]), label="tv")
    load_torrent(rtorrent.rpc(), bed["single"], str(bed["stash_t"]))
    _wait_complete(client, bed["hm"])
    _wait_complete(client, bed["hs"])


def test_lists_items_and_files_in_qbittorrent_terms(rtorrent, rt_client, bed):
    _load_seeding(rtorrent, rt_client, bed)
    assert isinstance(rt_client, ClientPort) and isinstance(rt_client, BatchListing)
    by_hash = {t.hash: t for t in rt_client.torrents()}
    m, s = by_hash[bed["hm"]], by_hash[bed["hs"]]
    stash_t = str(bed["stash_t"])
    # save_path holds the content for both kinds, as in qBittorrent
    assert (m.save_path, m.content_path, m.category) == (stash_t, f"{stash_t}/Show.X", "tv")
    assert (s.save_path, s.content_path, s.root_path) == (stash_t, f"{stash_t}/movie.mkv", "")
    assert m.state == s.state == "stalledUP" and m.is_stable and m.is_complete
    assert {f.name: f.size for f in rt_client.files(bed["hm"])} == {f"Show.X/{k}": v for k, v in SHOW.items()}
    assert [(f.name, f.size, f.progress) for f in rt_client.files(bed["hs"].upper())] == [("movie.mkv", 400_000, 1.0)]
    batched = {t.hash: (t, files) for t, files in rt_client.torrents_with_files()}
    assert batched[bed["hm"]][0] == m
    assert batched[bed["hm"]][1] == rt_client.files(bed["hm"])
    # every listed file exists at save_path/name: the executor's path arithmetic holds
    for t in (m, s):
        for f in rt_client.files(t.hash):
            assert os.path.isfile(os.path.join(t.save_path, f.name))
    assert rt_client.torrents(hashes=[bed["hs"].upper()]) == [s]
    assert rt_client.torrents(category="tv") == [m]


def test_relocates_multi_and_single_file_items_onto_a_hardlinked_view(rtorrent, rt_client, bed):
    _load_seeding(rtorrent, rt_client, bed)
    _hardlinked_view(bed["stash_t"] / "Show.X", bed["library"] / "Show.X", bed["pool_t"] / "Show.X")
    _hardlinked_view(bed["stash_t"] / "movie.mkv", bed["library"] / "movie.mkv", bed["pool_t"] / "movie.mkv")
    before_old = _snapshot(bed["stash_t"])
    before_lib = _snapshot(bed["library"])

    for h in (bed["hm"], bed["hs"]):
        rt_client.set_location(h, str(bed["pool_t"]))
        t = rt_client.wait_checked(h)
        assert t.save_path == str(bed["pool_t"])
        assert t.is_complete and t.progress == 1.0 and t.state == "stoppedUP", t
        rt_client.start(h)
        assert rt_client.torrent(h).state == "stalledUP"

    # rTorrent now reads the library's inodes through the view ...
    for f in rt_client.files(bed["hm"]):
        seen = os.stat(bed["pool_t"] / f.name)
        lib = os.stat(bed["library"] / f.name)
        assert (seen.st_ino, seen.st_nlink) == (lib.st_ino, 2)
    assert os.stat(bed["pool_t"] / "movie.mkv").st_ino == os.stat(bed["library"] / "movie.mkv").st_ino
    # ... and neither the old copy nor the library was written
    assert _snapshot(bed["stash_t"]) == before_old
    assert _snapshot(bed["library"]) == before_lib


def test_relocation_onto_a_bad_view_ends_stopped_and_incomplete_without_writing(rtorrent, rt_client, bed):
    _load_seeding(rtorrent, rt_client, bed)
    _hardlinked_view(bed["stash_t"] / "Show.X", bed["library"] / "Show.X", bed["pool_t"] / "Show.X")
    bad = bed["library"] / "Show.X" / "e02.mkv"
    data = bytearray(bad.read_bytes())
    data[100] ^= 0xFF  # same size, one wrong byte: only the hash check can tell
    bad.write_bytes(bytes(data))
    before = _snapshot(bed["library"])

    rt_client.set_location(bed["hm"], str(bed["pool_t"]))
    t = rt_client.wait_checked(bed["hm"])
    assert t.save_path == str(bed["pool_t"])
    assert not t.is_complete and t.state == "stoppedDL" and t.is_stopped, t
    time.sleep(1)  # a started item would begin writing here; a stopped one must not
    assert _snapshot(bed["library"]) == before
    assert rt_client.torrent(bed["hm"]).state == "stoppedDL"


def test_relocation_refuses_a_missing_destination(rtorrent, rt_client, bed):
    _load_seeding(rtorrent, rt_client, bed)
    with pytest.raises(UnsafeOperation, match="does not exist"):
        rt_client.set_location(bed["hm"], str(bed["pool_t"]))
    t = rt_client.torrent(bed["hm"])
    assert (t.save_path, t.state) == (str(bed["stash_t"]), "stalledUP")  # untouched


def test_label_and_tags_round_trip(rtorrent, rt_client, bed):
    _load_seeding(rtorrent, rt_client, bed)
    rt_client.set_label(bed["hs"], "movies, 4K/HDR 100%")
    rt_client.add_tags(bed["hs"], ["qbhook-relocated", "keep"])
    rt_client.remove_tags(bed["hs"], ["keep"])
    t = rt_client.torrent(bed["hs"])
    assert t.category == "movies, 4K/HDR 100%"
    assert t.tags == frozenset({"qbhook-relocated"})
    # stored the way ruTorrent stores labels: percent-encoded in d.custom1
    assert rtorrent.rpc().call("d.custom1", bed["hs"].upper()) == "movies%2C%204K%2FHDR%20100%25"
    assert rt_client.torrents(tag="qbhook-relocated") == [t]
    # written to the session at once: a crash right after does not forget them
    rtorrent.kill()
    rtorrent.restart()
    t = rt_client.torrent(bed["hs"])
    assert (t.category, t.tags) == ("movies, 4K/HDR 100%", frozenset({"qbhook-relocated"}))


def test_unknown_hashes_raise_unknown_torrent(rt_client, tmp_path):
    absent = "ab" * 20
    assert rt_client.find(absent) is None
    assert rt_client.find("cd" * 32) is None  # a v2 hash never names an rTorrent item
    for action in (rt_client.torrent, rt_client.files, rt_client.stop, rt_client.start, rt_client.recheck):
        with pytest.raises(UnknownTorrent, match=absent):
            action(absent)
    with pytest.raises(UnknownTorrent):
        rt_client.set_location(absent, str(tmp_path))
    with pytest.raises(UnknownTorrent):
        rt_client.add_tags(absent, ["x"])


@pytest.mark.slow
def test_killed_mid_recheck_raises_unreachable_and_a_restart_converges_at_the_new_place(
    rtorrent, rt_client, pools, tmp_path
):
    """The relocation saves the item's session with it (d.save_full_session): killed mid-check,
    rTorrent comes back at the new place and checks there. Before, nothing was saved until the
    periodic save (20 min): killed after qbhook had deleted the old links, it came back at the
    old, empty place."""
    stash_t = pools["stash"] / "data" / "torrents"
    write_payload(stash_t / "Big", {"a.bin": 120 << 20, "b.bin": 40 << 20}, seed=7)
    torrent = make_torrent(stash_t / "Big", tmp_path / "big.torrent", piece_size=1 << 20)
    h = infohash(torrent)
    load_torrent(rtorrent.rpc(), torrent, str(stash_t))
    _wait_complete(rt_client, h, timeout=120)
    view = pools["pool"] / "data" / "torrents"
    _hardlinked_view(stash_t / "Big", pools["pool"] / "data" / "media" / "Big", view / "Big")

    rt_client.set_location(h, str(view))
    hashing = rtorrent.rpc().call("d.hashing", h.upper())
    rtorrent.kill()
    assert hashing != 0, "the check ended before the kill: the test proves nothing"

    with pytest.raises(RtorrentUnreachable, match="no answer"):
        rt_client.torrent(h)

    rtorrent.restart()
    t = rt_client.torrent(h)
    # d.check_hash cleared the resume progress before the save: the item never claims unchecked
    # data at the new place, it checks it again.
    assert t.save_path == str(view) and not t.is_complete, t
    t = rt_client.wait_checked(h, budget=120)
    assert (t.save_path, t.is_complete) == (str(view), True), t


# -- events: rTorrent calling the same hook script as qBittorrent ----------------------

REPO = Path(__file__).resolve().parents[2]


class _HookListener:
    """Loopback HTTP endpoint standing in for qbhook's /hook/qbittorrent."""

    def __init__(self):
        import http.server
        import threading

        self.posts: list[tuple[str, dict, bytes]] = []
        posts = self.posts

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                posts.append((self.path, dict(self.headers), body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.slow
def test_finished_and_added_events_call_the_qbittorrent_hook_script(rtorrent, rt_client, tmp_path):
    from urllib.parse import parse_qsl

    import torf

    from qbhook.clients.rtorrent import event_rc_lines
    from qbhook.events.parse import parse_qbt_hook
    from qbhook.sandbox.rtorrent import LoopbackTracker, RtorrentInstance

    tracker, listener = LoopbackTracker(), _HookListener()
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    shutil.copy(REPO / "hooks" / "qbt-hook.sh", hooks / "qbt-hook.sh")
    (hooks / "qbt-hook.conf").write_text(f"QBHOOK_URL=http://127.0.0.1:{listener.port}\nQBHOOK_TOKEN=t0ken\n")
    leecher = RtorrentInstance()
    try:
        # A name with a comma and spaces: one argv item whatever rTorrent's rc syntax does
        name = "Show, The (2020) [x]"
        seed_dir = tmp_path / "seed"
        write_payload(seed_dir / name, {"a.mkv": 2_000_000, "b.srt": 5_000}, seed=3)
        t = torf.Torrent(
            path=seed_dir / name, trackers=[tracker.url], private=True, created_by=None, creation_date=None
        )
        t.generate()
        data = t.dump()
        h = t.infohash
        load_torrent(rtorrent.rpc(), data, str(seed_dir))  # the session rtorrent seeds
        _wait_complete(rt_client, h)
        deadline = time.monotonic() + 20
        while not any(tracker.peers.values()) and time.monotonic() < deadline:
            time.sleep(0.1)  # the seeder announced: the leecher will be told about it

        leecher.start(tmp_path / "leech", extra_rc=event_rc_lines(str(hooks / "qbt-hook.sh"), instance="rt2"))
        leech_dir = tmp_path / "leech-data"
        leech_dir.mkdir()
        load_torrent(leecher.rpc(), data, str(leech_dir), label="tv")
        leeching = RtorrentClient("rt2", leecher.address)
        _wait_complete(leeching, h, timeout=60)
        deadline = time.monotonic() + 20
        while len(listener.posts) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        leecher.stop()
        tracker.close()
        listener.close()

    events = {}
    for path, headers, body in listener.posts:
        assert path == "/hook/qbittorrent" and headers["X-Qbhook-Token"] == "t0ken"
        fields = dict(parse_qsl(body.decode(), keep_blank_values=True))
        events[fields["event"]] = (fields, parse_qbt_hook(fields))
    assert set(events) == {"added", "finished"}, listener.posts
    fields, ev = events["finished"]
    content = str(leech_dir / name)
    assert ev.hashes == (h,) and ev.instance == "rt2" and ev.paths == (content,)
    # Only what qbhook reads is sent (R51: a long name's N, L, G, R, D cost the event).
    assert sorted(fields) == ["F", "I", "J", "K", "event", "instance"]
    assert (fields["F"], fields["J"], fields["instance"]) == (content, "-", "rt2")
    assert (leech_dir / name / "a.mkv").read_bytes() == (seed_dir / name / "a.mkv").read_bytes()
    added = events["added"][1]
    assert added.hashes == (h,)


# -- the unchanged executor driving rTorrent through the port -------------------------


@dataclass
class DemoteBed:
    cfg: object
    catalog: object
    clients: object
    hashes: list
    seed_s: Path
    seed_p: Path
    files: dict

    def executor(self, **kw):
        from qbhook.move.executor import build_executor
        from qbhook.move.journal import Journal

        return build_executor(
            self.cfg, self.catalog, self.clients, Journal(self.catalog.conn), poll_initial_s=0.2, poll_max_s=1, **kw
        )

    def plan(self):
        from qbhook.catalog.scan import scan_pool
        from qbhook.decide.planner import make_plan
        from qbhook.decide.snapshot import build_snapshot

        for p in self.cfg.pools:
            scan_pool(self.catalog, p, self.cfg.scan)
        return make_plan(build_snapshot(self.cfg, self.catalog, self.clients), self.cfg.policy)


def _demote_bed(rtorrent, rt_client, pools, tmp_path, qbt=None) -> DemoteBed:
    """A seed-only season and a cross-seed sibling (other root name), seeded from stash.

    Both by rTorrent; with ``qbt`` (a QbtClient), the season by qBittorrent instead: a mixed group.
    """
    # the client-neutral collection the CLI builds from `clients:`
    from qbhook.clients.registry import Clients

    stash, pool = pools["stash"], pools["pool"]
    seed_s, seed_p = stash / "data/media/torrents/seeding", pool / "data/media/torrents/seeding"
    seed_p.mkdir(parents=True)
    save = seed_s / "tv"
    files = {"Show.S01.1080p/e1.mkv": 2 << 20, "Show.S01.1080p/e2.mkv": 1 << 20}
    write_payload(save, files, seed=2)
    xs = seed_s / "cross-seed" / "TrackerA"
    for rel in files:
        dst = xs / "Show.S01.REPACK" / Path(rel).name
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.link(save / rel, dst)
    t1 = make_torrent(save / "Show.S01.1080p", tmp_path / "t1.torrent", piece_size=256 * 1024)
    t2 = make_torrent(xs / "Show.S01.REPACK", tmp_path / "t2.torrent", piece_size=256 * 1024)
    if qbt is None:
        load_torrent(rtorrent.rpc(), t1, str(save))
    else:
        from qbhook.sandbox.torrents import add_and_wait_seeding

        add_and_wait_seeding(qbt._api, t1, save, tags=["~noHL"])
    load_torrent(rtorrent.rpc(), t2, str(xs))
    hashes = [infohash(t1), infohash(t2)]
    for h in hashes if qbt is None else hashes[1:]:  # rTorrent's items
        _wait_complete(rt_client, h)
        rt_client.add_tags(h, ["~noHL"])
    clients = Clients([rt_client] if qbt is None else [qbt, rt_client])
    return _bed(pools, tmp_path, clients, hashes, files)


def _bed(pools, tmp_path, clients, hashes, files) -> DemoteBed:
    """Config + catalog for the two pools (policy as the qBittorrent scenarios use it)."""
    import yaml

    from qbhook.catalog.store import Catalog
    from qbhook.config import load_config

    stash, pool = pools["stash"], pools["pool"]
    seed_s, seed_p = stash / "data/media/torrents/seeding", pool / "data/media/torrents/seeding"
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(
        yaml.safe_dump(
            {
                "catalog": str(tmp_path / "catalog.sqlite"),
                "pools": {
                    "stash": {"path": str(stash), "role": "primary"},
                    "pool": {"path": str(pool), "role": "cold"},
                },
                "seeding_roots": {"stash": str(seed_s), "pool": str(seed_p)},
                # the tests pass their clients directly (the CLI would build them from `clients:`)
                "scan": {"settle_seconds": 0},
                "policy": {"demote_require_tag": "~noHL"},
            }
        )
    )
    cfg = load_config(cfg_path)
    return DemoteBed(cfg, Catalog.open(cfg.catalog), clients, hashes, seed_s, seed_p, files)


def _assert_demoted(bed: DemoteBed, rt_client):
    # The group's start steps run right before its tags and deletes (fix-w95: started only after
    # verify_group), and qBittorrent shows a start at its next refresh: read until both show it.
    deadline = time.monotonic() + 10
    while True:
        by_hash = {t.hash: t for c in bed.clients for t in c.torrents()}
        if all(by_hash[h].state == "stalledUP" for h in bed.hashes) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert by_hash[bed.hashes[0]].save_path == str(bed.seed_p / "tv")
    assert by_hash[bed.hashes[1]].save_path == str(bed.seed_p / "cross-seed" / "TrackerA")
    for h in bed.hashes:
        t = by_hash[h]
        assert (t.state, t.is_complete) == ("stalledUP", True), t
        assert "qbhook-relocated" in t.tags
    for rel in bed.files:
        a = os.stat(bed.seed_p / "tv" / rel)
        b = os.stat(bed.seed_p / "cross-seed" / "TrackerA" / "Show.S01.REPACK" / Path(rel).name)
        assert (a.st_ino, a.st_nlink) == (b.st_ino, 2)  # siblings share one physical copy
    assert not any(p.is_file() for p in bed.seed_s.rglob("*"))  # the stash copy is gone


@pytest.mark.slow
def test_executor_demotes_an_rtorrent_sibling_group_through_the_port(rtorrent, rt_client, pools, tmp_path):
    """Planner + executor as they are today, with only an RtorrentClient as the client."""
    bed = _demote_bed(rtorrent, rt_client, pools, tmp_path)
    plan = bed.plan()
    assert [g.action for g in plan.groups] == ["demote"]
    summary = bed.executor().apply(plan)
    assert summary.status == "done" and summary.torrents_relocated == 2, summary.to_dict()
    assert summary.bytes_copied == 3 << 20  # one copy for both siblings
    _assert_demoted(bed, rt_client)


@pytest.mark.slow
def test_a_paused_rtorrent_item_demoted_ends_paused_and_a_started_one_started(rtorrent, rt_client, pools, tmp_path):
    """ruTorrent's "paused" (d.state 1, d.is_active 0) survives a relocation on the real rTorrent:
    the relocation's d.stop ends the pause, and the executor pauses it again (``Pausing``) once
    its check at the new place ended at 100 %, not start it or leave it stopped."""
    bed = _demote_bed(rtorrent, rt_client, pools, tmp_path)
    rpc = rtorrent.rpc()
    started, paused = (h.upper() for h in bed.hashes)
    rpc.call("d.pause", paused)
    assert (rpc.call("d.state", paused), rpc.call("d.is_active", paused)) == (1, 0)
    assert rt_client.torrent(paused).is_paused
    summary = bed.executor().apply(bed.plan())
    assert summary.status == "done" and summary.torrents_relocated == 2, summary.to_dict()
    assert (rpc.call("d.state", paused), rpc.call("d.is_active", paused)) == (1, 0)
    assert (rpc.call("d.state", started), rpc.call("d.is_active", started)) == (1, 1)
    for h in bed.hashes:
        t = rt_client.torrent(h)
        assert t.is_complete and t.save_path.startswith(str(bed.seed_p)), t


@pytest.mark.slow
def test_executor_promotes_an_rtorrent_item_onto_a_library_copy(rtorrent, rt_client, pools, tmp_path):
    """An *arr copied the pool-seeded file into the stash library: promote, copying nothing."""
    from qbhook.clients.registry import Clients

    seed_p = pools["pool"] / "data/media/torrents/seeding"
    (pools["stash"] / "data/media/torrents/seeding").mkdir(parents=True)
    write_payload(seed_p / "movies", {"Film.C.2021/film.c.mkv": 3 << 20}, seed=4)
    pool_file = seed_p / "movies/Film.C.2021/film.c.mkv"
    lib = pools["stash"] / "data/media/movies/Film C (2021)/Film C (2021).mkv"
    lib.parent.mkdir(parents=True)
    shutil.copy2(pool_file, lib)
    lib_st = os.stat(lib)
    torrent = make_torrent(seed_p / "movies/Film.C.2021", tmp_path / "film.torrent", piece_size=256 * 1024)
    h = infohash(torrent)
    load_torrent(rtorrent.rpc(), torrent, str(seed_p / "movies"))
    _wait_complete(rt_client, h)
    bed = _bed(pools, tmp_path, Clients([rt_client]), [h], {})

    plan = bed.plan()
    assert [g.action for g in plan.groups] == ["promote"]
    summary = bed.executor().apply(plan)

    assert summary.status == "done" and summary.bytes_copied == 0 and summary.torrents_relocated == 1, summary.to_dict()
    t = rt_client.torrent(h)
    assert (t.save_path, t.state, t.is_complete) == (str(bed.seed_s / "movies"), "stalledUP", True)
    seeded = os.stat(bed.seed_s / "movies/Film.C.2021/film.c.mkv")
    assert (seeded.st_ino, seeded.st_nlink) == (lib_st.st_ino, 2)  # rTorrent seeds the library's inode
    assert os.stat(lib).st_mtime_ns == lib_st.st_mtime_ns  # never written
    assert not pool_file.exists()


@pytest.mark.slow
def test_rtorrent_killed_mid_move_then_resume_converges(rtorrent, rt_client, pools, tmp_path):
    bed = _demote_bed(rtorrent, rt_client, pools, tmp_path)
    stash_files = {p: _digest(p) for p in bed.seed_s.rglob("*") if p.is_file()}
    killed = []

    def kill_at_first_poll(point, gid, seq, step):
        if point == "poll" and not killed:
            killed.append(step.args["torrent"])
            rtorrent.kill()

    summary = bed.executor(hook=kill_at_first_poll).apply(bed.plan())
    assert killed, "no relocation poll happened: the test proves nothing"
    # rTorrent unreachable mid-move: the group cannot finish nor roll back; nothing deleted
    assert summary.status == "interrupted" and summary.groups[0].needs_attention, summary.to_dict()
    # every old link in place: rTorrent never moves files, so qbhook never hides them from it
    assert {p: _digest(p) for p in stash_files} == stash_files

    rtorrent.restart()
    resumed = bed.executor().resume()
    # The failed relocation is rolled back: both items seed again, complete, from stash.
    assert [g.status for g in resumed[0].groups] == ["rolled_back"], resumed[0].to_dict()
    assert not resumed[0].groups[0].needs_attention
    by_hash = {t.hash: t for t in rt_client.torrents()}
    assert by_hash[bed.hashes[0]].save_path == str(bed.seed_s / "tv")
    assert by_hash[bed.hashes[1]].save_path == str(bed.seed_s / "cross-seed" / "TrackerA")
    for h in bed.hashes:
        assert (by_hash[h].state, by_hash[h].is_complete) == ("stalledUP", True), by_hash[h]
    assert {p: _digest(p) for p in stash_files} == stash_files
    # ... and the next plan, with rTorrent up, completes the demotion.
    plan = bed.plan()  # needs the ~noHL tags to have survived the kill
    summary = bed.executor().apply(plan)
    assert summary.status == "done", summary.to_dict()
    _assert_demoted(bed, rt_client)


# -- a container's view of paths (bind mounts), as with rTorrent in Docker -----------


def test_path_map_container_view_lists_and_relocates_in_host_paths(rtorrent, pools, tmp_path):
    """rTorrent sees /ctr/data and /ctr/pool; the host sees the pools. Only host paths leave
    the adapter, only client paths reach rTorrent."""
    import subprocess

    from qbhook.pathmap import PathMap

    host_data, host_pool = pools["stash"] / "data", pools["pool"] / "data"
    ctr = tmp_path / "ctr"
    client_data, client_pool = ctr / "data", ctr / "pool"
    mounted = []
    try:
        for host, client in ((host_data, client_data), (host_pool, client_pool)):
            host.mkdir(parents=True, exist_ok=True)
            client.mkdir(parents=True)
            subprocess.run(["mount", "--bind", str(host), str(client)], check=True, capture_output=True)
            mounted.append(client)
        write_payload(host_data / "torrents" / "Show.X", SHOW)
        torrent = make_torrent(host_data / "torrents" / "Show.X", tmp_path / "show.torrent")
        h = infohash(torrent)
        load_torrent(rtorrent.rpc(), torrent, str(client_data / "torrents"))  # the client's spelling
        c = RtorrentClient(
            "rt", rtorrent.address, PathMap([(str(client_data), str(host_data)), (str(client_pool), str(host_pool))])
        )
        t = _wait_complete(c, h)
        assert (t.save_path, t.client_save_path) == (str(host_data / "torrents"), str(client_data / "torrents"))
        assert t.content_path == str(host_data / "torrents" / "Show.X")

        _hardlinked_view(
            host_data / "torrents" / "Show.X", host_pool / "media" / "Show.X", host_pool / "torrents" / "Show.X"
        )
        c.set_location(h, str(host_pool / "torrents"))  # a HOST path in ...
        # ... the client's spelling reaches rTorrent
        assert rtorrent.rpc().call("d.directory", h.upper()) == str(client_pool / "torrents" / "Show.X")
        t = c.wait_checked(h)
        assert (t.save_path, t.is_complete) == (str(host_pool / "torrents"), True)

        with pytest.raises(PathMapError, match="under no path_map prefix"):
            c.set_location(h, str(tmp_path / "elsewhere"), require_existing=False)
    finally:
        rtorrent.remove_all()  # let go of the files before the mounts go away
        for client in reversed(mounted):
            if subprocess.run(["umount", str(client)], check=False, capture_output=True).returncode:
                subprocess.run(["umount", "-l", str(client)], check=True, capture_output=True)


# -- mixed groups: one payload seeded by qBittorrent and rTorrent -----------------------


@pytest.fixture
def qbt_port(qbt, qbt_client):
    from qbhook.clients.qbt.client import QbtClient

    c = QbtClient("qbt", qbt.url, qbt.username, qbt.password, timeout=15, backoff=0.1)
    yield c
    c.close()


@pytest.mark.slow
def test_executor_demotes_a_mixed_qbittorrent_and_rtorrent_group(rtorrent, rt_client, qbt_port, pools, tmp_path):
    """The season in qBittorrent, its cross-seed in rTorrent: one group, one copy, both moved."""
    bed = _demote_bed(rtorrent, rt_client, pools, tmp_path, qbt=qbt_port)
    plan = bed.plan()
    assert [g.action for g in plan.groups] == ["demote"]
    relocs = [(s.args["instance"], s.args["torrent"]) for s in plan.groups[0].steps if s.kind == "relocate"]
    assert sorted(relocs) == sorted([("qbt", bed.hashes[0]), ("rt", bed.hashes[1])])
    kinds = [s.kind for s in plan.groups[0].steps]
    # every client's torrents are relocated and verified before any old link is removed
    assert max(i for i, k in enumerate(kinds) if k in ("relocate", "verify_group")) < kinds.index("delete")
    summary = bed.executor().apply(plan)
    assert summary.status == "done" and summary.torrents_relocated == 2, summary.to_dict()
    assert summary.bytes_copied == 3 << 20
    _assert_demoted(bed, rt_client)


@pytest.mark.slow
def test_mixed_group_rtorrent_killed_mid_move_rolls_back_both_clients(rtorrent, rt_client, qbt_port, pools, tmp_path):
    bed = _demote_bed(rtorrent, rt_client, pools, tmp_path, qbt=qbt_port)
    stash_files = {p: _digest(p) for p in bed.seed_s.rglob("*") if p.is_file()}
    plan = bed.plan()
    order = [s.args["instance"] for s in plan.groups[0].steps if s.kind == "relocate"]
    killed = []

    def kill_when_rtorrent_moves(point, gid, seq, step):
        if point == "poll" and step.args["torrent"] == bed.hashes[1] and not killed:
            killed.append(qbt_port.torrent(bed.hashes[0]).save_path)  # where qBittorrent's is by now
            rtorrent.kill()

    summary = bed.executor(hook=kill_when_rtorrent_moves).apply(plan)
    assert killed, "rTorrent's relocation was never polled: the test proves nothing"
    # the plan moves qBittorrent's torrent first: it had moved already, so the rollback must undo it
    assert order == ["qbt", "rt"] and killed == [str(bed.seed_p / "tv")], (order, killed)
    assert summary.status == "interrupted", summary.to_dict()
    _assert_nothing_deleted(stash_files, bed.seed_s)

    rtorrent.restart()
    resumed = bed.executor().resume()
    assert [g.status for g in resumed[0].groups] == ["rolled_back"], resumed[0].to_dict()
    # both clients seed from stash again, complete: qBittorrent's move was undone too
    qt = qbt_port.torrent(bed.hashes[0])
    rt = rt_client.torrent(bed.hashes[1])
    assert (qt.save_path, qt.is_complete, qt.is_stopped) == (str(bed.seed_s / "tv"), True, False), (order, qt)
    assert (rt.save_path, rt.is_complete, rt.state) == (str(bed.seed_s / "cross-seed" / "TrackerA"), True, "stalledUP")
    assert {p: _digest(p) for p in stash_files} == stash_files


def test_the_largest_file_listing_request_is_accepted(rt_client):
    """``torrents_with_files`` sends at most ``_ITEMS_PER_CALL`` f.multicall requests in one
    system.multicall: the real rtorrent takes that many (unknown hashes answer faults, which is
    fine here) and refuses twice as many with its default network.xmlrpc.size_limit (512 KiB), as
    every listing of an rTorrent with ~1,000 items did when batches were cut by files only."""
    from qbhook.clients.rtorrent import _FILE_FIELDS, _ITEMS_PER_CALL, _mc
    from qbhook.errors import RtorrentError

    def calls(n):
        return [_mc("f.multicall", f"{i:040X}", "", *_FILE_FIELDS) for i in range(n)]

    answers = rt_client._call("list files", "system.multicall", calls(_ITEMS_PER_CALL))
    assert isinstance(answers, list) and len(answers) == _ITEMS_PER_CALL
    with pytest.raises(RtorrentError, match="too large"):
        rt_client._call("list files", "system.multicall", calls(2 * _ITEMS_PER_CALL))


def test_an_item_whose_check_failed_at_the_new_place_can_be_relocated_back(rtorrent, rt_client, bed):
    # rTorrent 0.9.8 leaves d.hashing at 3 with d.hashing_failed 1 when a check cannot open a
    # file (seen here); the rollback's relocation back must not read that as a check running (R7).
    _load_seeding(rtorrent, rt_client, bed)
    _hardlinked_view(bed["stash_t"] / "Show.X", bed["library"] / "Show.X", bed["pool_t"] / "Show.X")
    unopenable = next(p for p in sorted((bed["pool_t"] / "Show.X").rglob("*")) if p.is_file())
    unopenable.unlink()
    unopenable.mkdir()  # a folder where a file should be: the check cannot open it
    before = _snapshot(bed["stash_t"])

    rt_client.set_location(bed["hm"], str(bed["pool_t"]))
    deadline = time.monotonic() + 30
    while (t := rt_client.torrent(bed["hm"])).state != "error" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert t.state == "error", t

    rt_client.set_location(bed["hm"], str(bed["stash_t"]))
    t = rt_client.wait_checked(bed["hm"])
    assert t.save_path == str(bed["stash_t"]) and t.is_complete, t
    assert _snapshot(bed["stash_t"]) == before
