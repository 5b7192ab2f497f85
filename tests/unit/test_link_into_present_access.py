"""``link_into``'s access rule holds for a same-content file found at the destination too (R45).

The rule (``access.access_lost``) asked about the link source only (``_source_fits``); a file with
the same content put at the destination since planning was taken as it is (``present``), and the
torrent's name became that inode, its owner and mode never asked about: root:root 0600 took read
and write from the client's uid. Now the file found must give the owner of the torrent's own file
what that file gave, as a donor must (``_present_fits``, the same helper)."""

from __future__ import annotations

import os

import pytest

from qbhook.errors import UnsafeOperation
from tests.helpers import write
from tests.unit.test_fsops import fs2, tmpfs  # noqa: F401  (fixtures)
from tests.unit.test_move_access import QBT, ROOT_ONLY, _link, promote_fs  # noqa: F401  (fixture)


def _found_at(dst, owner, mode) -> os.stat_result:
    """A same-content file at the destination since planning, owned ``owner`` and moded ``mode``."""
    write(dst, b"film")
    os.chown(dst, *owner)
    os.chmod(dst, mode)
    return os.lstat(dst)


@ROOT_ONLY
def test_link_into_refuses_a_same_content_file_at_the_destination_that_takes_access(promote_fs):  # noqa: F811
    lib, dst, like, roots = promote_fs
    os.chmod(lib, 0o664)  # the donor gives uid 1000 what its file gave: it passes
    before = _found_at(dst, (0, 0), 0o600)
    with pytest.raises(
        UnsafeOperation,
        match=r"refusing to take .*film\.mkv as the torrent's file: the same content already there would take "
        r"read and write access from uid 1000 \(owner 0, group 0, mode 0600\), the owner of the torrent's file "
        r".*/movies/Film/film\.mkv",
    ):
        _link(lib, dst, like, roots, {})
    after = os.lstat(dst)
    assert (after.st_ino, after.st_uid, after.st_mode) == (before.st_ino, before.st_uid, before.st_mode)


@ROOT_ONLY
def test_link_into_takes_a_same_content_file_that_gives_what_the_torrents_file_gave(promote_fs):  # noqa: F811
    lib, dst, like, roots = promote_fs
    os.chmod(lib, 0o664)
    _found_at(dst, QBT, 0o644)  # the owner's own file: read and write, as its 0664 gave
    assert _link(lib, dst, like, roots, {})["status"] == "present"


@ROOT_ONLY
def test_link_into_without_client_groups_asks_nothing_of_a_present_file(promote_fs):  # noqa: F811
    """A repair's link passes None: its torrent's files are missing, nothing to compare with."""
    lib, dst, like, roots = promote_fs
    _found_at(dst, (0, 0), 0o600)
    assert _link(lib, dst, like, roots, None)["status"] == "present"
