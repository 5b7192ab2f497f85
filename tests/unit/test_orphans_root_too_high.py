"""R89: a seeding root set one level too high (TRaSH's layout: torrents/ and media/ side by side
below it). The library below it is not seeding (``orphans.seeding_folders``): its links keep their
data (a hard link like one outside the roots, a symlink like a library's outside them), and its
bytes are no pool's seeding data for the share guard."""

import os
from dataclasses import replace

import pytest

from qbhook.errors import OrphansRefused
from qbhook.move import orphans
from tests.helpers import write
from tests.unit.test_executor import H1, FakeTorrent
from tests.unit.test_fsops import tmpfs  # noqa: F401
from tests.unit.test_orphans_purge import expire, world  # noqa: F401


def layout(w) -> str:
    """torrents/movies (one torrent saved there) and media/ below the one seeding root."""
    del w.qbt.t[H1]  # (its files stay referenced by H2's hard links)
    mv = os.path.join(w.seed_s, "torrents/movies")
    write(os.path.join(mv, "Keep/k.bin"), b"k" * 10)
    w.qbt.add(FakeTorrent("f" * 40, "Keep", mv, [("Keep/k.bin", 10, 1)]))
    return mv


def _library_link_below_the_root(w, name: str, content: bytes, link) -> tuple[str, str, str]:
    """A torrent-side file no torrent lists and the library's link of it (``os.link`` or
    ``os.symlink``) in media/ below the same seeding root: (movies folder, data, library link)."""
    mv = layout(w)
    data = write(os.path.join(mv, f"Gone/{name}"), content)
    lib = os.path.join(w.seed_s, f"media/movies/Gone/{name}")
    os.makedirs(os.path.dirname(lib))
    link(data, lib)
    return mv, data, lib


def test_a_library_hard_link_below_the_root_keeps_its_data(world):  # noqa: F811
    w = world
    mv, data, lib = _library_link_below_the_root(w, "y.mkv", b"y" * 5000, os.link)

    rep = orphans.find_orphans(w.cfg, [w.qbt])

    kinds = {o.path: (o.kind, o.frees) for o in rep.orphans}
    assert kinds[data] == (orphans.LIBRARY, 0)  # the library keeps it: quarantining frees nothing
    assert kinds[lib] == (orphans.NOT_SEEDING, 0)
    assert rep.as_dict()["reclaimable"]["frees"] == 0
    # Its bytes are the pool's orphans (still used by a library), counted at the torrent-side link.
    assert rep.pools["stash"].orphan_bytes == rep.pools["stash"].library_bytes == 5000


def test_the_share_guard_leaves_a_not_seeding_library_out_of_the_seeding_data(world):  # noqa: F811
    w = world
    w.cfg = replace(w.cfg, policy=replace(w.cfg.policy, orphans_max_share=0.2))
    mv = layout(w)
    for i in range(10):  # a library below the root set too high: 10 MiB, never seeding
        write(os.path.join(w.seed_s, f"media/movies/F{i}/f.mkv"), os.urandom(1 << 20))
    # data of a client missing from the config (saved beside the configured one's): 2 MiB
    for i in range(2):
        write(os.path.join(mv, f"Other{i}/o.mkv"), os.urandom(1 << 20))

    with pytest.raises(OrphansRefused, match="policy.orphans_max_share"):
        orphans.quarantine(w.cfg, w.cat, [w.qbt])

    assert all(os.path.exists(os.path.join(mv, f"Other{i}/o.mkv")) for i in range(2))


def test_a_library_symlink_below_the_root_keeps_its_target(world):  # noqa: F811
    w = world
    mv, data, lib = _library_link_below_the_root(w, "x.mkv", b"library's only copy" * 100, os.symlink)

    rep = orphans.find_orphans(w.cfg, [w.qbt])
    res = orphans.quarantine(w.cfg, w.cat, [w.qbt])
    expire(w)
    orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])

    assert [(o.path, o.kind, o.frees) for o in rep.orphans] == [(data, orphans.LIBRARY, 0)]
    assert res.held == [] and os.path.exists(lib)
