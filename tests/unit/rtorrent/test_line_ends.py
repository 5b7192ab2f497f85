"""A carriage return in a name reaches us as a line feed (R104).

rTorrent 0.9.8 builds every string with xmlrpc-c's ``xmlrpc_string_new``, which turns CR and CRLF
into LF: ``a\\rb.mkv`` is reported ``a\\nb.mkv`` (``a\\r\\nb.mkv`` too, one character shorter). An
item holding ``a\\rb.mkv`` and ``a\\nb.mkv`` listed both as ``a\\nb.mkv``: the CR file, the item's
only copy of it, looked unreferenced and ``qbhook orphans`` called it reclaimable. A name with a
line feed is now read as one with ``?`` is (``_misspelled``): a name beside it that rTorrent would
send so, or two files reported under one such name, make the item unreadable."""

from __future__ import annotations

import os
import time

import pytest

from qbhook.errors import OrphansRefused, UnreadableRecord
from qbhook.pathmap import PathMap
from tests.unit.rtorrent.test_adapter import HM, HS, ROW_MULTI, ROW_SINGLE, _client, _row


def _write(path: bytes, data: bytes = b"x" * 10) -> bytes:
    with open(path, "wb") as fh:
        fh.write(data)
    return path


def _both_reported_as_lf(tmp_path):
    """One item whose files are b'a\\rb.mkv' and b'a\\nb.mkv', both reported 'a\\nb.mkv'."""
    d = os.fsencode(tmp_path) + b"/Show.X"
    os.makedirs(d)
    paths = [_write(d + b"/a\rb.mkv"), _write(d + b"/a\nb.mkv", b"y" * 10)]
    row = _row(ROW_MULTI, directory=os.fsdecode(d), completed_bytes=20, size_bytes=20, left_bytes=0)
    files = {HM.upper(): [["a\nb.mkv", 10, 1, 1, 1], ["a\nb.mkv", 10, 1, 1, 1]]}
    return _client([row], files, path_map=PathMap()), paths


def test_a_cr_file_beside_its_lf_twin_is_unreadable_and_orphans_refuses(tmp_path):
    from qbhook.move.orphans import references

    c, _paths = _both_reported_as_lf(tmp_path)
    with pytest.raises(UnreadableRecord, match=rf"item {HM}: file 0: .*f\.path = .*carriage return.*rename") as e:
        c.torrents_with_files()
    assert "\n" not in str(e.value)
    with pytest.raises(UnreadableRecord, match=r"f\.path"):
        c.files(HM)
    with pytest.raises(OrphansRefused, match=f"client rt cannot be listed.*{HM}"):
        references([c])


def test_the_orphans_decide_path_never_calls_the_cr_file_reclaimable(tmp_path):
    # R104's reproduction: taken as read, the LF file was referenced and the CR one was a
    # reclaimable orphan of 10 bytes. Now references refuses, so decide never sees it unreferenced.
    from qbhook.move.orphans import Entry, Walk, decide, references

    c, paths = _both_reported_as_lf(tmp_path)
    try:
        refs = references([c])
    except OrphansRefused:
        return
    now = time.time()
    old = int((now - 3600) * 1e9)
    ents = [
        Entry(os.fsdecode(p), "stash", str(tmp_path), s.st_dev, s.st_ino, s.st_size, s.st_nlink, old, old)
        for p in paths
        for s in [os.stat(p)]
    ]
    report = decide(Walk(tuple(ents)), refs, now=now, settle_seconds=60)
    assert not report.orphans, [(os.fsencode(o.path), o.kind) for o in report.orphans]


@pytest.mark.parametrize("real", [b"a\rb.mkv", b"a\r\nb.mkv"])
def test_a_single_files_name_with_a_cr_or_crlf_on_the_host_is_unreadable(tmp_path, real):
    _write(os.fsencode(tmp_path) + b"/" + real)
    row = _row(ROW_SINGLE, name="a\nb.mkv", directory=str(tmp_path), completed_bytes=10, size_bytes=10)
    c = _client([row], {HS.upper(): [["a\nb.mkv", 10, 1, 1, 1]]}, path_map=PathMap())
    with pytest.raises(UnreadableRecord, match=rf"item {HS}: unreadable record: d\.name = .*carriage return"):
        c.torrents()


def test_a_folder_with_a_cr_is_found_under_its_lf_spelling(tmp_path):
    os.makedirs(os.fsencode(tmp_path) + b"/Show\r\nX")
    row = _row(ROW_MULTI, name="Show\nX", directory=f"{tmp_path}/Show\nX")
    c = _client([row], {HM.upper(): [["a.mkv", 10, 1, 1, 1]]}, path_map=PathMap())
    with pytest.raises(UnreadableRecord, match=r"d\.directory = .*the host has 'Show\\r\\nX' there"):
        c.torrents()


def test_two_files_reported_under_one_name_with_a_line_feed_are_unreadable(tmp_path):
    # Not on disk yet (nothing beside them to tell): b'a\rb.mkv' and b'a\nb.mkv' both read 'a\nb.mkv'.
    (tmp_path / "Show.X").mkdir()
    row = _row(ROW_MULTI, directory=f"{tmp_path}/Show.X")
    c = _client([row], {HM.upper(): [["a\nb.mkv", 10, 1, 0, 1], ["a\nb.mkv", 10, 1, 0, 1]]}, path_map=PathMap())
    with pytest.raises(UnreadableRecord, match=r"file 1: .*another file of the item .*carriage return"):
        c.torrents_with_files()
    with pytest.raises(UnreadableRecord, match="another file"):
        c.files(HM)


def test_a_line_feed_with_no_cr_twin_reads_and_ordinary_names_list_no_folder(tmp_path, monkeypatch):
    from qbhook.clients import rtorrent

    d = tmp_path / "Show.X"
    d.mkdir()
    _write(os.fsencode(d) + b"/a\nb.mkv")
    _write(os.fsencode(d) + b"/a\tb.mkv")  # another control character is not a line end
    row = _row(ROW_MULTI, directory=str(d))
    c = _client([row], {HM.upper(): [["a\nb.mkv", 10, 1, 1, 1], ["ok.mkv", 10, 1, 1, 1]]}, path_map=PathMap())
    ((_, files),) = c.torrents_with_files()
    assert [f.name for f in files] == ["Show.X/a\nb.mkv", "Show.X/ok.mkv"]
    listings = []
    real = os.listdir
    monkeypatch.setattr(rtorrent.os, "listdir", lambda p: (listings.append(p), real(p))[1])
    plain = _client([row], {HM.upper(): [["ok.mkv", 10, 1, 1, 1]]}, path_map=PathMap())
    assert [f.name for _, fs in plain.torrents_with_files() for f in fs] == ["Show.X/ok.mkv"]
    assert listings == []


def test_what_rtorrent_sends_as_a_line_feed():
    from qbhook.clients.rtorrent import _line_ended, _spells

    names = {7: [b"a\nb.mkv", b"a\rb.mkv"], 8: [b"a\r\nb.mkv"], 9: [b"a\r\r\nb.mkv"]}
    assert _line_ended("a\nb.mkv", names) == b"a\rb.mkv"
    assert _line_ended("a\nb.mkv", {7: [b"a\nb.mkv"], 8: [b"a\r\nb.mkv"]}) == b"a\r\nb.mkv"
    assert _line_ended("a\nb.mkv", {7: [b"a\nb.mkv", b"a?b.mkv"], 9: [b"a\r\r\nb.mkv"]}) is None
    assert _spells("a\n?", b"a\r\xff")  # mangled, its CR kept as a line feed


def test_a_crlf_name_that_is_not_utf8_beside_its_reported_spelling_is_unreadable(tmp_path):
    """R107: b'caf\\xe9\\r\\n.mkv' is not UTF-8, so rTorrent sends 'caf?\\r\\n.mkv' and xmlrpc-c then
    'caf?\\n.mkv', one byte shorter; with a real 'caf?\\n.mkv' beside it (another item's), the item
    read as that file and its own only copy was called a reclaimable orphan."""
    hb = "cccc7120a1a0ddef230d4b7e263e64f62614aa9b"
    folder = os.fsencode(tmp_path)
    _write(folder + b"/caf\xe9\r\n.mkv")
    _write(folder + b"/caf?\n.mkv", b"B" * 7)
    done = {"completed_bytes": 10, "size_bytes": 10, "left_bytes": 0}
    ra = _row(ROW_SINGLE, name="caf?\n.mkv", directory=str(tmp_path), **done)
    rb = _row(ROW_SINGLE, hash=hb.upper(), name="caf?\n.mkv", directory=str(tmp_path), **done)
    files = {HS.upper(): [["caf?\n.mkv", 10, 1, 1, 1]], hb.upper(): [["caf?\n.mkv", 7, 1, 1, 1]]}
    c = _client([ra, rb], files, path_map=PathMap())
    with pytest.raises(UnreadableRecord):
        c.torrents_with_files()


def test_a_utf8_crlf_name_beside_a_real_question_mark_name_is_not_its_spelling(tmp_path):
    """R108: 'aé\\r\\nb.m' is UTF-8, so rTorrent sends it as 'aé\\nb.m', never as 'a??\\nb.m': an
    item of that ASCII name (real '?' and a real line feed) beside it was refused."""
    folder = os.fsencode(tmp_path)
    _write(folder + "/aé\r\nb.m".encode())
    _write(folder + b"/a??\nb.m")
    row = _row(ROW_SINGLE, name="a??\nb.m", directory=str(tmp_path), completed_bytes=10, size_bytes=10, left_bytes=0)
    c = _client([row], {HS.upper(): [["a??\nb.m", 10, 1, 1, 1]]}, path_map=PathMap())
    ((info, files),) = c.torrents_with_files()
    assert [f.name for f in files] == ["a??\nb.m"]
