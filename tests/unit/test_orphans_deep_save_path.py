"""R89: a magnet's save path through a folder deeper than PATH_MAX. ``realpath`` cannot spell its
real place (its lstat fails with ENAMETOOLONG and it takes the link for a plain folder), so the
data there was quarantined and purged. Protected by identity (``References.protected_ids``) and by
the place a descriptor walk resolves (``orphans._resolved_by_fds``)."""

import os

from qbhook.move import orphans
from tests.helpers import write
from tests.unit.test_executor import FakeTorrent
from tests.unit.test_fsops import tmpfs  # noqa: F401
from tests.unit.test_orphans_purge import expire, quarantine_one, world  # noqa: F401

H3 = "c" * 40


def deep_link(seed: str, real: str) -> str:
    """A save path that reaches ``real`` through 20 folders of 250 characters below ``seed``
    (deeper than PATH_MAX as a string; each link's body under 4 KiB, so the kernel follows it)."""
    names = [f"n{i:02d}" + "x" * 247 for i in range(20)]
    fd = os.open(seed, os.O_DIRECTORY)
    for n in names:
        os.mkdir(n, dir_fd=fd)
        nfd = os.open(n, os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    os.symlink(real, "M", dir_fd=fd)
    os.close(fd)
    os.symlink("/".join(names[:15]), os.path.join(seed, "L1"))
    os.symlink("L1/" + "/".join(names[15:]) + "/M", os.path.join(seed, "L2"))
    return os.path.join(seed, "L2")


def test_a_magnets_data_through_a_deep_folder_is_not_quarantined(world):  # noqa: F811
    w = world
    real = os.path.join(w.seed_s, "incoming")
    data = write(os.path.join(real, "Some.Name/a.mkv"), b"magnet's old data" * 100)
    save = deep_link(w.seed_s, real)
    assert os.path.samefile(save, real)  # the kernel follows it
    w.qbt.add(FakeTorrent(H3, H3, save, [], progress=0.0, has_metadata=False))

    res = orphans.quarantine(w.cfg, w.cat, [w.qbt])

    assert data not in res.held and os.path.exists(data)


def test_the_purge_keeps_what_a_deep_linked_magnet_names(world):  # noqa: F811
    w = world
    _path, at = quarantine_one(w, rel="incoming/Gone.2019/gone.mkv")
    # The quarantine pruned incoming/: the save path dangles, only its place says what it wants.
    w.qbt.add(
        FakeTorrent(
            H3, H3, deep_link(w.seed_s, os.path.join(w.seed_s, "incoming")), [], progress=0.0, has_metadata=False
        )
    )
    expire(w)

    orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])

    assert os.path.exists(at)


def test_resolved_by_fds_spells_the_real_place_of_a_deep_dangling_link(tmp_path):
    gone = str(tmp_path / "gone")
    save = deep_link(str(tmp_path), gone)
    assert len(os.path.realpath(save)) > 4096  # realpath's spelling: the deep folders, unresolved
    assert orphans._real(save) == gone
    assert orphans._real(save + "/a/../b") == gone + "/b"
