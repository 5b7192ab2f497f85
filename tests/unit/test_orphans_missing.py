"""A file that may be the data of a torrent missing its files is never an orphan to quarantine nor
to purge (``qbhook.move.orphans.may_be_missing_data``).

Review finding (test_G): a torrent in ``missingFiles`` at 100 % whose folder a person renamed no
longer names its data; one torrent among many does not trip the per-client guard, so the renamed
folder was reclaimable, quarantined, and the purge deleted the only copy ``qbhook repair`` would
rebuild the torrent from. Names and layout may differ, so the size of a file of such a torrent is
what protects; rTorrent has no such state, so a complete torrent whose file is absent counts too.
"""

from __future__ import annotations

import json
import os

import pytest
import yaml
from click.testing import CliRunner

from qbhook.errors import OrphansRefused
from qbhook.move import orphans
from qbhook.move.orphans import PROTECTED, RECLAIMABLE, Entry, MissingData, References, Walk, decide
from tests.helpers import config_data, write
from tests.unit.test_executor import FakeTorrent
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)
from tests.unit.test_orphans_purge import (  # noqa: F401  (world: fixture)
    NOW,
    client,
    expire,
    held,
    other_torrent,
    quarantine_one,
    screen,
    world,
)

H5 = "e" * 40
EPISODE = b"episode" * 1000  # 7000 bytes: the size the missing torrent lists
STRAY = b"stray bytes" * 100  # another size: an ordinary orphan


SHOW_FILES = (("Show/e1.mkv", len(EPISODE), 1),)


def missing_show(w, *, state: str | None = "missingFiles", files=SHOW_FILES) -> None:
    """Torrent "Show", complete in old/Show, whose folder a person renamed: its client says
    ``state`` (None: nothing yet, as rTorrent until a hash check; only its absent file says it)."""
    t = FakeTorrent(H5, "Show", os.path.join(w.seed_s, "old"), list(files))
    t.transient = state
    w.qbt.add(t)


# --------------------------------------------------------------------------- the decision (pure)


def test_decide_protects_a_file_of_a_missing_torrents_size_with_its_reason_and_keeps_the_rest_orphaned():
    root = "/stash/seed"
    entries = [
        Entry(f"{root}/old/Show.renamed/e1.mkv", "stash", root, 1, 1, 7000, 1, 0, 0),
        Entry(f"{root}/old/stray.bin", "stash", root, 1, 2, 1100, 1, 0, 0),
        Entry(f"{root}/old/empty", "stash", root, 1, 3, 0, 1, 0, 0),
    ]
    refs = References(frozenset(), (), 1, missing=(MissingData("Show", "missingFiles", frozenset({7000, 0})),))
    rep = decide(Walk(tuple(entries)), refs, now=NOW, settle_seconds=0)
    assert [(o.path, o.kind) for o in rep.orphans] == [
        (f"{root}/old/empty", RECLAIMABLE),
        (entries[1].path, RECLAIMABLE),
    ]
    assert rep.counts[PROTECTED] == 1
    (p,) = json.loads(json.dumps(rep.as_dict()))["protected"]
    assert p == {
        "path": entries[0].path,
        "pool": "stash",
        "bytes": 7000,
        "reason": "may be the data of Show (missingFiles): repair or remove that torrent first",
    }
    assert rep.pools["stash"].orphan_bytes == 1100  # the share guard counts only the orphans


# --------------------------------------------------------------------------- quarantine and purge, real files


@pytest.mark.parametrize("state", ["missingFiles", None], ids=["missingFiles", "file-absent"])
def test_quarantine_keeps_a_missing_torrents_renamed_data_and_holds_an_unrelated_orphan(world, state):  # noqa: F811
    w = world
    data = write(os.path.join(w.seed_s, "old/Show.renamed/e1.mkv"), EPISODE)
    stray = write(os.path.join(w.seed_s, "old/stray.bin"), STRAY)
    missing_show(w, state=state)

    report = orphans.find_orphans(w.cfg, [w.qbt])
    (p,) = report.protected
    why = "missingFiles" if state else "1 of its 1 file(s) not where its client keeps them"
    assert p.path == data and p.reason == f"may be the data of Show ({why}): repair or remove that torrent first"
    res = orphans.quarantine(w.cfg, w.cat, [w.qbt])

    assert res.held == [stray] and res.failed == {}
    assert os.path.exists(data) and [h.origin for h in w.journal.held_links() if h.orphan] == [stray]
    expire(w)
    out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])
    assert out.kept == [] and out.refused is None and out.error is None
    assert w.journal.held_links() == [] and os.path.exists(data)  # the stray went, the data stayed


def test_a_torrent_rechecked_to_0_percent_after_its_folder_was_renamed_still_protects_its_data(world):  # noqa: F811
    """Review r4: the usual reaction to missingFiles is a force recheck, after which qBittorrent
    shows the torrent at 0 % stoppedDL (rTorrent after a hash check alike): no longer missing by
    its state nor complete, so its renamed data was reclaimable, quarantined and purged, while
    ``qbhook repair`` (any wanted file absent) still calls it missing and needs that copy."""
    w = world
    data = write(os.path.join(w.seed_s, "old/Show.renamed/e1.mkv"), EPISODE)
    stray = write(os.path.join(w.seed_s, "old/stray.bin"), STRAY)
    w.qbt.add(FakeTorrent(H5, "Show", os.path.join(w.seed_s, "old"), list(SHOW_FILES), progress=0.0, stopped=True))
    assert w.qbt.find(H5).state == "stoppedDL"

    (p,) = orphans.find_orphans(w.cfg, [w.qbt]).protected
    why = "Show/e1.mkv (of its 1 wanted file(s)) not where its client keeps it"
    assert p.path == data and p.reason == f"may be the data of Show ({why}): repair or remove that torrent first"
    res = orphans.quarantine(w.cfg, w.cat, [w.qbt])
    assert res.held == [stray] and res.failed == {} and os.path.exists(data)
    expire(w)
    out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])
    assert out.refused is None and out.error is None
    assert w.journal.held_links() == [] and os.path.exists(data)  # the stray went, the data stayed


def test_an_incomplete_torrent_whose_files_are_there_protects_no_file_by_its_size(world):  # noqa: F811
    """The rule above stats a wanted file of an incomplete torrent in its save path or download
    path: one there (a download under way) makes it not missing, and a same-size file elsewhere
    stays reclaimable."""
    w = world
    write(os.path.join(w.seed_s, "old/Show/e1.mkv"), EPISODE)
    same_size = write(os.path.join(w.seed_s, "old/Other/x.mkv"), EPISODE)
    w.qbt.add(FakeTorrent(H5, "Show", os.path.join(w.seed_s, "old"), list(SHOW_FILES), progress=0.5, stopped=True))
    report = orphans.find_orphans(w.cfg, [w.qbt])
    assert [(o.path, o.kind) for o in report.orphans] == [(same_size, RECLAIMABLE)]


@pytest.mark.parametrize("state", [None, "queuedDL", "stalledDL", "checkingDL"])
def test_a_torrent_its_client_is_still_downloading_protects_no_file_by_its_size(world, state):  # noqa: F811
    """Review r5: a torrent downloading (or queued, stalled, checking) at 0 % has written nothing
    yet; its files not being there is the download, not a loss: an unrelated orphan of the same
    size stays reclaimable."""
    w = world
    same_size = write(os.path.join(w.seed_s, "old/Other/x.mkv"), EPISODE)
    t = FakeTorrent(H5, "Show", os.path.join(w.seed_s, "old"), list(SHOW_FILES), progress=0.0)
    t.transient = state
    w.qbt.add(t)
    assert w.qbt.find(H5).state == (state or "downloading")
    report = orphans.find_orphans(w.cfg, [w.qbt])
    assert [(o.path, o.kind) for o in report.orphans] == [(same_size, RECLAIMABLE)]


def test_a_stopped_torrents_file_written_as_name_dot_qb_is_there(world):  # noqa: F811
    """Review r5: with qBittorrent's "append .!qB" on, an incomplete torrent's file is on disk as
    ``e1.mkv.!qB``: it is there, so a stopped torrent so is not missing its files."""
    w = world
    write(os.path.join(w.seed_s, "old/Show/e1.mkv.!qB"), b"x" * 10)
    same_size = write(os.path.join(w.seed_s, "old/Other/x.mkv"), EPISODE)
    w.qbt.add(FakeTorrent(H5, "Show", os.path.join(w.seed_s, "old"), list(SHOW_FILES), progress=0.5, stopped=True))
    assert w.qbt.find(H5).state == "stoppedDL"
    report = orphans.find_orphans(w.cfg, [w.qbt])
    assert [(o.path, o.kind) for o in report.orphans] == [(same_size, RECLAIMABLE)]


def test_purge_keeps_an_entry_held_before_its_torrent_went_missing_and_purges_the_others(world):  # noqa: F811
    """Quarantined while no torrent said anything of it; in the grace period the torrent whose data
    it is shows up missing its files: the held file is the copy a repair needs."""
    w = world
    data, at = quarantine_one(w, "old/Show.renamed/e1.mkv", EPISODE)
    stray = write(os.path.join(w.seed_s, "old/stray.bin"), STRAY)
    assert orphans.quarantine(w.cfg, w.cat, [w.qbt]).held == [stray]
    missing_show(w)
    expire(w)

    out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])

    reason = "may be the data of Show (missingFiles): repair or remove that torrent first"
    assert [k.as_dict() for k in out.kept] == [{"held": at, "origin": data, "leftover_view": False, "reason": reason}]
    assert out.kept[0].line() == f"kept {at} in holding (quarantined from {data}): {reason}"
    assert out.refused is None and out.error is None
    assert os.path.exists(at) and [h.path for h in w.journal.held_links()] == [at]  # the stray's link purged


def test_a_missing_torrent_the_listing_gives_no_file_sizes_of_refuses_quarantine_and_purge(world):  # noqa: F811
    w = world
    _data, at = quarantine_one(w, "old/Show.renamed/e1.mkv", EPISODE)
    missing_show(w, files=())
    with pytest.raises(OrphansRefused) as e:
        orphans.quarantine(w.cfg, w.cat, [w.qbt])
    assert "miss their files" in e.value.message and "(Show)" in e.value.message and "\n" not in e.value.message
    expire(w)
    out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])
    assert out.refused is not None and "(Show)" in out.refused.message and os.path.exists(at)


def test_a_held_file_that_cannot_be_stat_ed_is_not_kept_for_a_missing_torrent():
    """Nothing there to lose (the purge has nothing to unlink either): only a size found keeps it."""
    gone = held("gone", "/stash/seed/old/gone.mkv")  # its held path does not exist
    show = FakeTorrent(H5, "Show", "/nowhere", [("Show/e1.mkv", 7000, 1)], transient="missingFiles")
    out = screen([gone], client(show, other_torrent()))
    assert [h.key for h in out.purgeable] == ["gone"] and out.kept == ()


def test_cli_orphans_json_names_the_missing_torrent(world, tmp_path, monkeypatch):  # noqa: F811
    from qbhook.cli import main
    from qbhook.cli.app import App

    w = world
    write(os.path.join(w.seed_s, "old/Show.renamed/e1.mkv"), EPISODE)
    missing_show(w)
    cfg = tmp_path / "config.yaml"
    data = config_data(w.cfg.catalog, w.stash, w.pool, seeding="torrents/seeding", policy={"orphans_max_share": 1.0})
    cfg.write_text(yaml.safe_dump(data))
    monkeypatch.setattr(App, "clients", property(lambda self: [w.qbt]))

    r = CliRunner().invoke(main, ["--config", str(cfg), "--json", "orphans"])
    assert r.exit_code == 0, (r.output, r.exception)
    (p,) = json.loads(r.stdout)["protected"]
    assert p["reason"] == "may be the data of Show (missingFiles): repair or remove that torrent first"
    r = CliRunner().invoke(main, ["--config", str(cfg), "orphans"])
    assert "protected (not orphans):" in r.stdout and "may be the data of Show (missingFiles)" in r.stdout


def test_cli_orphans_names_a_drop_name_left_by_a_killed_delete(world, tmp_path, monkeypatch):  # noqa: F811
    from qbhook.cli import main
    from qbhook.cli.app import App

    w = world
    drop = os.path.join(w.seed_s, "old/.qbhook-relink.drop.1f.0123456789abcdef")
    write(drop, EPISODE)
    cfg = tmp_path / "config.yaml"
    data = config_data(w.cfg.catalog, w.stash, w.pool, seeding="torrents/seeding", policy={"orphans_max_share": 1.0})
    cfg.write_text(yaml.safe_dump(data))
    monkeypatch.setattr(App, "clients", property(lambda self: [w.qbt]))

    r = CliRunner().invoke(main, ["--config", str(cfg), "--json", "orphans"])
    assert r.exit_code == 0, (r.output, r.exception)
    d = json.loads(r.stdout)
    assert d["drop_names"] == [drop] and not [i for i in d["items"] if "drop" in i["path"]]
    r = CliRunner().invoke(main, ["--config", str(cfg), "orphans"])
    assert f"warning: {drop}: a link a killed qbhook delete left" in r.stderr, (r.stdout, r.stderr)
