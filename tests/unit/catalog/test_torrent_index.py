"""The torrent index's sync logic against recorded-shape maindata answers (no network).

The fake answers follow qBittorrent's sync/maindata contract: ``full_update`` lists every
torrent in full; otherwise only changed fields of changed torrents, new ones in full, and
removed ids in ``torrents_removed``. Real qBittorrent is exercised in
tests/integration/test_index_real.py.
"""

from __future__ import annotations

import os

import pytest

from qbhook.catalog.indexer import sync_client
from qbhook.catalog.store import Catalog
from qbhook.catalog.torrents import TorrentIndex, payload_duplicates
from qbhook.clients.model import TorrentFile, TorrentInfo
from qbhook.pathmap import PathMap

H1, H2, H3 = "a" * 40, "b" * 40, "c" * 40


def _raw(name, save="/client/seed", **kw):
    return {
        "name": name,
        "save_path": save,
        "content_path": f"{save}/{name}",
        "state": "stalledUP",
        "progress": 1.0,
        "amount_left": 0,
        "size": 30,
        "total_size": 30,
        "category": "",
        "tags": "",
        "infohash_v1": "",
        "infohash_v2": "",
        "auto_tmm": False,
        "added_on": 1,
        "completion_on": 2,
        **kw,
    }


class FakeQbt:
    """Answers maindata from a script of answers; counts file-list requests."""

    def __init__(self):
        self.name = "q"
        self.path_map = PathMap([("/client", "/host")])
        self.answers: list[dict] = []
        self.files_asked: list[str] = []
        self.rids: list[int] = []
        self.file_lists = {H1: [("R1/a.bin", 10), ("R1/b.bin", 20)], H2: [("R2/x.bin", 30)], H3: [("R3/y.bin", 30)]}

    def maindata(self, rid=0):
        self.rids.append(rid)
        return self.answers.pop(0)

    def files_of_id(self, h):
        self.files_asked.append(h)
        return [TorrentFile(i, n, s, 1.0, 1) for i, (n, s) in enumerate(self.file_lists[h])]


@pytest.fixture
def cat(tmp_path):
    c = Catalog.open(tmp_path / "c.sqlite")
    yield c
    c.close()


def _rows(cat):
    return {t.hash: t for t in TorrentIndex(cat.conn).torrents(include_gone=True)}


def test_partial_records_merge_and_only_changed_file_lists_are_fetched(cat):
    q = FakeQbt()
    q.answers = [
        {"rid": 5, "full_update": True, "torrents": {H1: _raw("R1"), H2: _raw("R2")}},
        {"rid": 6, "torrents": {H1: {"category": "tv", "tags": "x, y"}, H2: {"save_path": "/client/moved"}}},
        {"rid": 7, "torrents_removed": [H1]},
        {"rid": 8},
    ]
    rep = sync_client(cat, q)
    assert (rep.mode, rep.added, rep.files_fetched) == ("full", 2, 2)
    assert _rows(cat)[H1].save_path == "/host/seed"
    rep = sync_client(cat, q)
    assert q.rids == [0, 5]  # the stored rid is sent back
    assert (rep.mode, rep.changed, rep.files_fetched) == ("incremental", 2, 1)
    assert q.files_asked[-1] == H2  # only the torrent whose path changed
    rows = _rows(cat)
    assert rows[H1].category == "tv" and rows[H1].tags == ("x", "y") and rows[H1].name == "R1"
    assert rows[H2].save_path == "/host/moved" and rows[H2].name == "R2"  # merged, not replaced
    files = TorrentIndex(cat.conn).files("q", H2)
    assert files[0][4] == b"/host/moved/R2/x.bin"
    rep = sync_client(cat, q)
    assert rep.gone == 1 and _rows(cat)[H1].gone_at is not None and _rows(cat)[H2].gone_at is None
    rep = sync_client(cat, q)
    assert (rep.changed, rep.files_fetched, rep.gone) == (0, 0, 0) and q.rids[-1] == 7


def test_full_update_marks_absent_torrents_gone_and_reuses_unchanged_file_lists(cat):
    q = FakeQbt()
    q.answers = [
        {"rid": 1, "full_update": True, "torrents": {H1: _raw("R1"), H2: _raw("R2")}},
        {"rid": 1, "full_update": True, "torrents": {H2: _raw("R2"), H3: _raw("R3")}},
    ]
    sync_client(cat, q)
    rep = sync_client(cat, q)
    assert (rep.mode, rep.added, rep.gone, rep.files_fetched) == ("full", 1, 1, 1)
    assert q.files_asked == [H1, H2, H3]
    assert _rows(cat)[H1].gone_at is not None


def test_unmappable_torrent_is_kept_with_its_reason(cat):
    q = FakeQbt()
    q.answers = [{"rid": 1, "full_update": True, "torrents": {H1: _raw("R1", save="/elsewhere"), H2: _raw("R2")}}]
    rep = sync_client(cat, q)
    assert len(rep.unmappable) == 1 and H1 in rep.unmappable[0]
    t = _rows(cat)[H1]
    assert t.save_path is None and t.client_save_path == "/elsewhere" and "no path_map prefix" in t.map_error
    assert [f[4] for f in TorrentIndex(cat.conn).files("q", H1)] == [None, None]
    from qbhook.catalog.indexer import snapshot_view

    # the sweep must not plan from an index missing a torrent's paths: it lists live instead
    assert snapshot_view(cat, [q], [rep]) is None


def test_inconsistent_index_is_rebuilt_with_a_reason(cat):
    q = FakeQbt()
    q.answers = [
        {"rid": 3, "full_update": True, "torrents": {H1: _raw("R1")}},
        {"rid": 1, "full_update": True, "torrents": {H1: _raw("R1")}},
    ]
    sync_client(cat, q)
    cat.conn.execute("UPDATE torrent_sync SET rid = 'garbage'")
    rep = sync_client(cat, q)
    assert rep.rebuilt and "not a response id" in rep.rebuilt and "rebuilt" in rep.rebuilt
    assert q.rids == [0, 0] and rep.added == 1 and _rows(cat)[H1].gone_at is None


def test_payload_ids_follow_member_hashes_and_dupes_need_distinct_inodes(cat, tmp_path):
    # Three torrents: R1 and R3 the same content (two files), R2 a hardlinked sibling of R1.
    q = FakeQbt()
    q.path_map = PathMap()
    seed = tmp_path / "seed"
    q.file_lists = {
        H1: [("R1/a.bin", 3), ("R1/b.bin", 4)],
        H2: [("R2/b.bin", 4), ("R2/sub/a.bin", 3)],
        H3: [("R3/z/a.bin", 3), ("R3/b.bin", 4)],
    }
    for rel, data in (("R1/a.bin", b"aaa"), ("R1/b.bin", b"bbbb"), ("R3/z/a.bin", b"aaa"), ("R3/b.bin", b"bbbb")):
        (seed / rel).parent.mkdir(parents=True, exist_ok=True)
        (seed / rel).write_bytes(data)
    (seed / "R2/sub").mkdir(parents=True)
    os.link(seed / "R1/b.bin", seed / "R2/b.bin")
    os.link(seed / "R1/a.bin", seed / "R2/sub/a.bin")
    q.answers = [
        {
            "rid": 1,
            "full_update": True,
            "torrents": {h: _raw(n, save=str(seed)) for h, n in ((H1, "R1"), (H2, "R2"), (H3, "R3"))},
        },
        {"rid": 2},
        {"rid": 3},
    ]
    sync_client(cat, q)
    assert all(t.content_id is None and t.files_hashed == 0 for t in _rows(cat).values())

    from qbhook.catalog.hashing import ensure_hashes

    for p in seed.rglob("*.bin"):
        cat.record_path(str(p), "stash")
    ensure_hashes(cat, [r[0] for r in cat.conn.execute("SELECT id FROM inodes")], settle_seconds=0)
    sync_client(cat, q)
    rows = _rows(cat)
    assert rows[H1].content_id == rows[H2].content_id == rows[H3].content_id is not None
    assert len({rows[H1].tree_id, rows[H2].tree_id, rows[H3].tree_id}) == 3
    groups = TorrentIndex(cat.conn).groups()
    assert groups[("q", H1)] == groups[("q", H2)] != groups[("q", H3)]
    dupes = payload_duplicates(TorrentIndex(cat.conn))
    assert len(dupes) == 1 and dupes[0]["copies"] == 2 and dupes[0]["layouts"] == 3 and dupes[0]["size"] == 7

    # R3's a.bin changes content: its hash no longer holds, the ids drop and the dupe goes.
    (seed / "R3/z/a.bin").write_bytes(b"AAA")
    cat.record_path(str(seed / "R3/z/a.bin"), "stash")
    sync_client(cat, q)
    rows = _rows(cat)
    assert rows[H3].content_id is None and rows[H3].files_hashed == 1 and rows[H1].content_id is not None
    assert payload_duplicates(TorrentIndex(cat.conn)) == []


class FakeListing:
    """A client without maindata (rTorrent-like): a typed listing and per-torrent files."""

    def __init__(self):
        self.name = "rt"
        self.path_map = PathMap()
        self.infos: list[TorrentInfo] = []
        self.files_asked: list[str] = []

    def torrents(self):
        return list(self.infos)

    def files(self, h):
        self.files_asked.append(h)
        return [TorrentFile(0, "f.bin", 5, 1.0, 1)]


def test_listing_client_fetches_files_only_for_new_or_changed(cat):
    c = FakeListing()
    c.infos = [
        TorrentInfo.from_api({"hash": h, **_raw(n, save="/s")}, c.path_map, "rt") for h, n in ((H1, "A"), (H2, "B"))
    ]
    assert sync_client(cat, c).files_fetched == 2
    c.infos = [
        TorrentInfo.from_api({"hash": H1, **_raw("A", save="/s", category="x")}, c.path_map, "rt"),
        TorrentInfo.from_api({"hash": H2, **_raw("B", save="/t")}, c.path_map, "rt"),
    ]
    rep = sync_client(cat, c)
    assert (rep.mode, rep.changed, rep.files_fetched) == ("listing", 2, 1) and c.files_asked == [H1, H2, H2]
    c.infos = c.infos[:1]
    assert sync_client(cat, c).gone == 1


def _on_disk(cat, tmp_path, q, rels):
    """Make ``rels`` (below the fake's /client/seed) real files, catalogued: they resolve to inodes."""
    q.path_map = PathMap([("/client", str(tmp_path / "host"))])
    for rel in rels:
        p = tmp_path / "host/seed" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
        cat.record_path(str(p), "stash")


def test_snapshot_view_serves_complete_torrents_files_from_the_index_and_asks_live_otherwise(cat, tmp_path):
    from qbhook.catalog.indexer import snapshot_view

    q = FakeQbt()
    q.files = lambda h: [TorrentFile(0, "live.bin", 1, 0.5, 1)]
    q.answers = [
        {"rid": 1, "full_update": True, "torrents": {H1: _raw("R1"), H2: _raw("R2", progress=0.5, amount_left=15)}}
    ]
    _on_disk(cat, tmp_path, q, ["R1/a.bin", "R1/b.bin"])
    rep = sync_client(cat, q)
    clients, infos = snapshot_view(cat, [q], [rep])
    assert {t.hash for t in infos} == {H1, H2} and infos[0].save_path.startswith(str(tmp_path / "host"))
    asked = len(q.files_asked)
    assert [f.name for f in clients[0].files(H1)] == ["R1/a.bin", "R1/b.bin"]  # complete: from the index
    assert len(q.files_asked) == asked
    assert [f.name for f in clients[0].files(H2)] == ["live.bin"]  # downloading: asked live
    # a row only an event wrote has no client record: the sweep lists live
    cat.conn.execute("UPDATE torrents SET raw = '{\"_qbhook_event\": true}' WHERE hash = ?", (H1,))
    assert snapshot_view(cat, [q], [rep]) is None


def test_a_file_renamed_in_the_client_is_listed_live_once_and_the_index_takes_the_new_name(cat, tmp_path):
    """qBittorrent's renameFile moves none of files_key (paths, name, sizes), so the sync never
    fetches the list again; the old name then resolves to no inode, which makes the sweep list
    the torrent live (not the stale names: its group would stay blocked on a missing file), and
    the live list is written back: the next sweep serves the new names from the index."""
    from qbhook.catalog.indexer import snapshot_view, write_back

    q = FakeQbt()
    q.files = lambda h: q.files_of_id(h)
    q.answers = [{"rid": 1, "full_update": True, "torrents": {H1: _raw("R1")}} for _ in range(3)]
    _on_disk(cat, tmp_path, q, ["R1/a.bin", "R1/b.bin"])
    sync_client(cat, q)
    seed = tmp_path / "host/seed"
    (seed / "R1/a.bin").rename(seed / "R1/a-renamed.bin")  # renamed in qBittorrent's UI; the scan sees it
    cat.forget_path(str(seed / "R1/a.bin"))
    cat.record_path(str(seed / "R1/a-renamed.bin"), "stash")
    q.file_lists[H1] = [("R1/a-renamed.bin", 10), ("R1/b.bin", 20)]
    rep = sync_client(cat, q)
    assert rep.files_fetched == 0  # nothing in the record moved
    clients, _infos = snapshot_view(cat, [q], [rep])
    asked = len(q.files_asked)
    assert [f.name for f in clients[0].files(H1)] == ["R1/a-renamed.bin", "R1/b.bin"]  # live
    assert len(q.files_asked) == asked + 1
    assert write_back(cat, clients) == 1
    assert [r[1] for r in TorrentIndex(cat.conn).files("q", H1)] == ["R1/a-renamed.bin", "R1/b.bin"]
    assert _rows(cat)[H1].files_resolved == 2
    rep = sync_client(cat, q)
    clients, _infos = snapshot_view(cat, [q], [rep])
    asked = len(q.files_asked)
    assert [f.name for f in clients[0].files(H1)] == ["R1/a-renamed.bin", "R1/b.bin"]  # from the index again
    assert len(q.files_asked) == asked and write_back(cat, clients) == 0


def test_a_symlinked_cross_seed_is_served_from_the_index_not_listed_live_every_sweep(cat, tmp_path):
    """Every path through a symlink resolves to no catalog inode (the scan never catalogues
    symlinks), like a file renamed in the client; but its stored name is still on disk, so
    listing it live would cost a request per torrent on every sweep and write nothing back."""
    import os

    from qbhook.catalog.indexer import snapshot_view, write_back

    q = FakeQbt()
    q.files = lambda h: q.files_of_id(h)
    q.answers = [{"rid": 1, "full_update": True, "torrents": {H1: _raw("R1"), H2: _raw("X1")}} for _ in range(3)]
    q.file_lists[H2] = [("X1/a.bin", 10), ("X1/b.bin", 20)]
    _on_disk(cat, tmp_path, q, ["R1/a.bin", "R1/b.bin"])
    seed = tmp_path / "host/seed"
    (seed / "X1").mkdir()
    for n in ("a.bin", "b.bin"):
        os.symlink(seed / "R1" / n, seed / "X1" / n)  # cross-seed in symlink mode
    for _sweep in range(3):
        rep = sync_client(cat, q)
        assert _rows(cat)[H2].files_resolved == 0
        clients, _infos = snapshot_view(cat, [q], [rep])
        asked = len(q.files_asked)
        assert [f.name for f in clients[0].files(H2)] == ["X1/a.bin", "X1/b.bin"]  # from the index
        assert len(q.files_asked) == asked and clients[0].relisted == {}
        assert write_back(cat, clients) == 0


def test_last_known_hashes_outlive_the_files_and_a_refetched_file_list(cat, tmp_path):
    """qbhook repair needs a vanished torrent's content: kept per file and per torrent, and kept
    when its file list is fetched again (same index, path and size)."""
    from qbhook.catalog.hashing import ensure_hashes
    from qbhook.catalog.identity import content_id
    from qbhook.catalog.torrents import last_known_files

    q = FakeQbt()
    seed = tmp_path / "host/seed"
    q.path_map = PathMap([("/client", str(tmp_path / "host"))])
    for rel, data in (("R1/a.bin", b"a" * 10), ("R1/b.bin", b"b" * 20)):
        (seed / rel).parent.mkdir(parents=True, exist_ok=True)
        (seed / rel).write_bytes(data)
    q.answers = [
        {"rid": 1, "full_update": True, "torrents": {H1: _raw("R1", save="/client/seed")}},
        {"rid": 2},
        {"rid": 3},
        {"rid": 4, "torrents": {H1: {"name": "R1 renamed"}}},  # files_key changes: the list is fetched again
    ]
    sync_client(cat, q)
    assert last_known_files(cat.conn, "q", H1) == (None, [(0, "R1/a.bin", 10, 1, None), (1, "R1/b.bin", 20, 1, None)])
    for p in seed.rglob("*.bin"):
        cat.record_path(str(p), "stash")
    ensure_hashes(cat, [r[0] for r in cat.conn.execute("SELECT id FROM inodes")], settle_seconds=0)
    sync_client(cat, q)
    cid, files = last_known_files(cat.conn, "q", H1)
    digests = {rel: d for _i, rel, _s, _p, d in files}
    assert all(digests.values()) and cid == _rows(cat)[H1].content_id == content_id(
        [(10, digests["R1/a.bin"]), (20, digests["R1/b.bin"])]
    )

    # the files vanish: the live ids drop, the last known ones stay
    for p in seed.rglob("*.bin"):
        p.unlink()
        cat.forget_path(str(p))
    sync_client(cat, q)
    assert _rows(cat)[H1].content_id is None
    assert last_known_files(cat.conn, "q", H1) == (cid, files)
    sync_client(cat, q)  # and a fetched-again file list keeps them too
    assert q.files_asked.count(H1) == 2
    assert last_known_files(cat.conn, "q", H1) == (cid, files)
    assert last_known_files(cat.conn, "q", "f" * 40) == (None, [])


# ------------------------------------------------------------------ an unchanged sync reads nothing
def _plans_of(cat, statements: list[str]) -> list[str]:
    """SQLite's plan of every SELECT in ``statements`` (expanded by the trace callback), one
    line per step; a SELECT of scalar subqueries has a ``SCAN CONSTANT ROW`` step, left out."""
    out = []
    for sql in statements:
        if sql.lstrip().upper().startswith(("SELECT", "WITH")):
            steps = [r[3] for r in cat.conn.execute("EXPLAIN QUERY PLAN " + sql)]
            out += [f"{step}  <- {sql[:120]}" for step in steps if step != "SCAN CONSTANT ROW"]
    return out


def test_an_unchanged_sync_decodes_no_stored_record_and_scans_no_table(cat, monkeypatch):
    """The sweep's index phase when qBittorrent reports nothing: no record decoded (counted on
    json.loads, by the stored texts), no table read whole (SQLite's plans), one request."""
    import json

    q = FakeQbt()
    q.answers = [
        {"rid": 1, "full_update": True, "torrents": {H1: _raw("R1"), H2: _raw("R2"), H3: _raw("R3")}},
        {"rid": 2},
        {"rid": 3, "torrents": {H2: {"category": "tv"}}},
    ]
    sync_client(cat, q)
    stored = {r[0] for r in cat.conn.execute("SELECT raw FROM torrents")}
    real_loads = json.loads
    decoded: list[str] = []

    def counting_loads(s, *a, **k):
        if s in stored:
            decoded.append(s)
        return real_loads(s, *a, **k)

    monkeypatch.setattr(json, "loads", counting_loads)
    statements: list[str] = []
    cat.conn.set_trace_callback(statements.append)
    rep = sync_client(cat, q)
    cat.conn.set_trace_callback(None)
    assert (rep.mode, rep.changed, rep.touched, rep.files_fetched) == ("incremental", 0, set(), 0)
    assert decoded == []  # main decoded all three twice (the check, then the merge base)
    scans = [p for p in _plans_of(cat, statements) if p.startswith("SCAN ")]
    assert scans == [], scans

    # a change decodes the one record it merges into, and is seen
    rep = sync_client(cat, q)
    assert len(decoded) == 1 and real_loads(decoded[0])["name"] == "R2"
    assert rep.touched == {H2} and _rows(cat)[H2].category == "tv" and q.rids == [0, 1, 2]


def test_an_unreadable_record_is_found_when_merged_into_and_the_index_rebuilt(cat):
    q = FakeQbt()
    q.answers = [
        {"rid": 1, "full_update": True, "torrents": {H1: _raw("R1"), H2: _raw("R2")}},
        {"rid": 2},
        {"rid": 3, "torrents": {H1: {"category": "tv"}}},
        {"rid": 9, "full_update": True, "torrents": {H1: _raw("R1", category="tv"), H2: _raw("R2")}},
    ]
    sync_client(cat, q)
    cat.conn.execute("UPDATE torrents SET raw = 'not json{' WHERE hash = ?", (H1,))
    rep = sync_client(cat, q)  # nothing merged into it: not read, nothing to rebuild
    assert rep.rebuilt is None and rep.mode == "incremental"
    rep = sync_client(cat, q)  # a delta for it: rebuilt from a full listing (rid 0), one more request
    assert rep.rebuilt and "not readable" in rep.rebuilt and q.rids == [0, 1, 2, 0]
    assert rep.mode == "full" and _rows(cat)[H1].category == "tv" and _rows(cat)[H2].gone_at is None


def test_a_file_row_a_new_torrent_would_adopt_is_found_by_the_cheap_check(cat):
    """File rows pointing above every torrent id would become the next torrent's: caught before
    any request; ones pointing at a deleted id in the middle are counted at each full listing."""
    q = FakeQbt()
    q.answers = [
        {"rid": 1, "full_update": True, "torrents": {H1: _raw("R1")}},
        {"rid": 1, "full_update": True, "torrents": {H1: _raw("R1")}},
        {"rid": 2, "full_update": True, "torrents": {H1: _raw("R1")}},
    ]
    sync_client(cat, q)
    top = cat.conn.execute("SELECT max(id) FROM torrents").fetchone()[0]
    cat.conn.execute("PRAGMA foreign_keys = OFF")
    cat.conn.execute(
        "INSERT INTO torrent_files(torrent, idx, rel, size, priority) VALUES (?, 0, 'x', 1, 1)", (top + 1,)
    )
    rep = sync_client(cat, q)
    assert rep.rebuilt and f"torrent id {top + 1}" in rep.rebuilt and q.rids == [0, 0]
    assert rep.mode == "full" and TorrentIndex(cat.conn).files("q", H1)[0][1] == "R1/a.bin"
    # an orphan below the top id: harmless to reads, dropped at the next full listing
    cat.conn.execute("INSERT INTO torrent_files(torrent, idx, rel, size, priority) VALUES (0, 0, 'x', 1, 1)")
    cat.conn.execute("UPDATE torrent_sync SET rid = 0")  # as after a qBittorrent restart: a full answer
    rep = sync_client(cat, q)
    assert rep.rebuilt and "belong to no torrent" in rep.rebuilt and q.rids == [0, 0, 0]  # that answer, rebuilt
    assert rep.added == 1 and TorrentIndex(cat.conn).files("q", H1)[0][1] == "R1/a.bin"
    assert cat.conn.execute("SELECT count(*) FROM torrent_files WHERE torrent = 0").fetchone()[0] == 0


def test_refresh_mark_moves_on_content_and_path_writes_only(cat, tmp_path):
    """What the refresh reads: paths -> inodes and hash validity. The mark is two counters (no
    table pass): the write generation and content_writes, which a partial write moves too (one
    refresh more than needed, never one less); a hash written with an older clock still moves
    it, a clock column alone does not."""
    from qbhook.catalog.indexer import refresh_mark

    f = tmp_path / "seed/a.bin"
    f.parent.mkdir()
    f.write_bytes(b"abc")
    m0 = refresh_mark(cat)
    inode = cat.record_path(str(f), "stash")
    m1 = refresh_mark(cat)
    assert m1 != m0
    st = os.lstat(f)
    cat.store_hash(inode, b"\x01" * 32, st)
    m2 = refresh_mark(cat)
    assert m2 != m1
    cat.conn.execute("UPDATE inodes SET hashed_at = 0")  # a clock step back
    assert refresh_mark(cat) == m2
    cat.conn.execute("UPDATE inodes SET sample = x'00'")  # a partial counts (the counter dupes shares)
    m3 = refresh_mark(cat)
    assert m3 != m2
    cat.conn.execute("UPDATE inodes SET hash = x'02'")  # anyone's hash write counts
    assert refresh_mark(cat) != m3


def test_a_re_plan_meeting_an_unreadable_record_lists_live_and_the_next_sync_rebuilds(cat):
    """The sweep's view types every stored record for a re-plan: an unreadable one makes it list
    live this time (no traceback) and the next sync ask for a full answer, which it rebuilds
    the index from (no further request: a full answer merges into nothing)."""
    from qbhook.catalog.indexer import snapshot_view

    q = FakeQbt()
    q.answers = [
        {"rid": 4, "full_update": True, "torrents": {H1: _raw("R1"), H2: _raw("R2")}},
        {"rid": 5, "full_update": True, "torrents": {H1: _raw("R1"), H2: _raw("R2")}},
    ]
    rep = sync_client(cat, q)
    cat.conn.execute("UPDATE torrents SET raw = '[1, 2]' WHERE hash = ?", (H2,))  # JSON, not a record
    assert snapshot_view(cat, [q], [rep]) is None
    rep = sync_client(cat, q)
    assert q.rids == [0, 0] and rep.mode == "full" and rep.rebuilt and "not readable" in rep.rebuilt
    assert snapshot_view(cat, [q], [rep]) is not None


def test_one_infohash_in_two_clients_keeps_its_own_group_and_decision(cat):
    """Two clients load H1 on two unlinked copies: two groups. The index names each by the planner's
    id (client and hash), and a decision is kept on the torrent of the group that took it: keyed by
    hash, the second group's decision overwrote the first's on both rows."""
    from qbhook.catalog.identity import group_id_of
    from qbhook.decide.plan import GroupPlan

    for name, save in (("q", "/client/one"), ("q2", "/client/two")):
        q = FakeQbt()
        q.name = name
        q.answers = [{"rid": 1, "full_update": True, "torrents": {H1: _raw("R1", save=save)}}]
        sync_client(cat, q)
    idx = TorrentIndex(cat.conn)
    groups = idx.groups()
    assert groups == {("q", H1): group_id_of([("q", H1)]), ("q2", H1): group_id_of([("q2", H1)])}
    plans = [
        GroupPlan(groups[(i, H1)], [H1], ["R1"], action, "", instances=[i])
        for i, action in (("q", "demote"), ("q2", "stay"))
    ]
    idx.record_decisions(plans)
    got = {(t.instance, t.group_id, t.decision) for t in idx.torrents()}
    assert got == {("q", groups[("q", H1)], "demote"), ("q2", groups[("q2", H1)], "stay")}


def test_a_full_update_of_no_torrent_is_refused_and_asks_for_a_full_one_again(cat):
    """qBittorrent answering before its session loaded: every torrent is not gone."""
    q = FakeQbt()
    q.answers = [
        {"rid": 3, "full_update": True, "torrents": {H1: _raw("R1"), H2: _raw("R2")}},
        {"rid": 1, "full_update": True, "torrents": {}},
        {"rid": 2, "full_update": True, "torrents": {H1: _raw("R1")}},
    ]
    sync_client(cat, q)
    rep = sync_client(cat, q)
    assert rep.refused and rep.refused.startswith("q: listed no torrent while the torrent index holds 2 of it")
    assert (rep.gone, rep.touched) == (0, set()) and all(t.gone_at is None for t in _rows(cat).values())
    rep = sync_client(cat, q)
    assert q.rids == [0, 3, 0] and rep.refused is None  # the next sync asked for a full listing
    assert rep.gone == 1 and _rows(cat)[H2].gone_at is not None  # one torrent listed: applied as today


def test_a_listing_of_no_torrent_is_refused_and_an_empty_index_takes_it(cat):
    c = FakeListing()
    assert sync_client(cat, c).refused is None  # nothing held: nothing to refuse
    c.infos = [TorrentInfo.from_api({"hash": H1, **_raw("A", save="/s")}, c.path_map, "rt")]
    sync_client(cat, c)
    c.infos = []
    rep = sync_client(cat, c)
    assert rep.refused and rep.refused.startswith("rt: listed no torrent") and _rows(cat)[H1].gone_at is None
