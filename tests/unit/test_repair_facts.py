"""The repair gatherer's copies (``qbhook.decide.repair_facts``): a stale stored hash is a candidate.

A torrent's own link vanishing moves the ctime of the library copy that remains, and the next
scan stores that ctime: the stored hash is then stale (``inodes_with_content`` no longer finds
the inode), yet the copy is exactly the lost content. The gatherer asks the catalog for every
inode whose stored hash matches, valid or not, and confirms a stale one by hashing the file
again; a file whose bytes changed is not a copy.
"""

from __future__ import annotations

import os

import blake3
import pytest

from qbhook.catalog.scan import scan_pool
from qbhook.catalog.store import Catalog
from qbhook.decide.repair_facts import _copies
from qbhook.dirfd import FolderReader
from tests.helpers import make_config, write
from tests.swap import swap_after_first_look

DATA = b"the lost content" * 64


@pytest.fixture
def env(tmp_path):
    stash, pool = tmp_path / "stash", tmp_path / "pool"
    for p in (stash, pool):
        (p / "data/media/torrents/seeding").mkdir(parents=True)
    lib = stash / "data/media/movies/m.mkv"
    lib.parent.mkdir(parents=True)
    write(lib, DATA)
    cfg = make_config(tmp_path / "cat.sqlite", stash, pool)
    cat = Catalog.open(cfg.catalog)
    scan_pool(cat, cfg.primary, cfg.scan)
    row = cat.inode_by_path(str(lib))
    cat.store_hash(row.id, blake3.blake3(DATA).digest(), os.lstat(lib))
    yield cfg, cat, lib
    cat.close()


def _key() -> tuple[int, str]:
    return (len(DATA), blake3.blake3(DATA).hexdigest())


def copies(cfg, cat) -> tuple:
    with FolderReader(str(p.path) for p in cfg.pools) as reader:
        return _copies(cat, reader, {_key()})[_key()]


def test_a_copy_with_a_valid_hash_is_found(env):
    cfg, cat, lib = env
    assert [c.path for c in copies(cfg, cat)] == [str(lib)]


def test_a_copy_whose_hash_went_stale_by_a_link_change_is_confirmed_by_hashing_again(env):
    cfg, cat, lib = env
    link = lib.parent / "gone.mkv"
    os.link(lib, link)
    os.unlink(link)  # the torrent's link vanished: the copy's ctime moved
    scan_pool(cat, cfg.primary, cfg.scan)
    size, digest = _key()
    assert cat.inodes_with_content(size, bytes.fromhex(digest)) == []  # stale: not "valid"
    assert [c.path for c in copies(cfg, cat)] == [str(lib)]


def test_a_file_whose_bytes_changed_is_not_a_copy(env):
    cfg, cat, lib = env
    lib.write_bytes(DATA[:-1] + b"!")  # same size, other content
    scan_pool(cat, cfg.primary, cfg.scan)
    assert copies(cfg, cat) == ()


def test_a_folder_swapped_for_a_symlink_after_the_lstat_is_not_hashed_through(env, tmp_path, monkeypatch):
    """The library file's bytes changed (its stored hash is stale, so it is hashed again); right
    after its lstat, its folder is swapped for a symlink to an outside folder holding the lost
    content. Hashed by path, the outside file made the changed file "a copy"; hashed through the
    folder the lstat was taken in, it is the changed file, and no copy."""
    cfg, cat, lib = env
    lib.write_bytes(DATA[:-1] + b"!")  # same size, other content: the stored hash is stale
    scan_pool(cat, cfg.primary, cfg.scan)
    write(tmp_path / "outside" / lib.name, DATA)
    looked = swap_after_first_look(monkeypatch, lib, lib.parent, tmp_path / "outside")
    assert copies(cfg, cat) == ()
    assert looked  # the swap did happen between the lstat and the hash


# -- qbhook repair HASH: one hash in several clients


def test_a_hash_fine_in_one_client_is_repaired_where_it_misses_files(env, tmp_path):
    # The same torrent seeding fine in qBittorrent while its copy in rTorrent lost its files: the
    # first (fine) copy refused `qbhook repair HASH` as "nothing to repair", the rTorrent one unseen.
    from types import SimpleNamespace

    from qbhook.clients.model import TorrentFile
    from qbhook.decide.repair_facts import RepairInputError, gather

    cfg, cat, _lib = env
    h = "cd" * 20
    fine, lost = tmp_path / "stash/data/media/torrents/seeding", tmp_path / "pool/data/media/torrents/seeding"
    write(fine / "Movie/m.mkv", DATA)

    def info(instance, state, save):
        return SimpleNamespace(
            hash=h, name="Movie", instance=instance, state=state, has_metadata=True, save_path=str(save)
        )

    client = SimpleNamespace(files=lambda _h: [TorrentFile(0, "Movie/m.mkv", len(DATA), 1.0, 1)])

    class Clients:  # the registry's surface gather uses
        def find_all(self, _h):
            return found

        def describe(self):
            return "qBittorrent 'qbt', rTorrent 'rt'"

        def __getitem__(self, _name):
            return client

    clients = Clients()

    found = [info("qbt", "stalledUP", fine), info("rt", "missingFiles", lost)]
    (t,) = gather(cfg, cat, clients, h).torrents
    assert (t.instance, t.save_path) == ("rt", str(lost))
    found = [info("qbt", "stalledUP", fine), info("rt", "stalledUP", fine)]
    with pytest.raises(RepairInputError, match=r"not missing any file \(state stalledUP in qbt, stalledUP in rt\)"):
        gather(cfg, cat, clients, h)


# -- a partial torrent's part file (libtorrent's .<infohash>.parts)


@pytest.mark.parametrize(
    ("part", "client_part_file", "missing"),
    [
        (None, None, True),  # qBittorrent (a client that does not say): no part file, refused later
        ("v1", None, False),
        ("v2cut", True, False),  # a hybrid torrent's part file is named by its v2 hash cut to 40 digits
        (None, False, False),  # rTorrent keeps shared chunks in the skipped file itself: none needed
    ],
)
def test_a_partial_torrents_part_file_is_looked_for_in_its_save_path(env, tmp_path, part, client_part_file, missing):
    from types import SimpleNamespace

    from qbhook.clients.model import TorrentFile
    from qbhook.decide.repair_facts import gather

    cfg, cat, _lib = env
    h, v2 = "cd" * 20, "ef" * 32
    save = tmp_path / "stash/data/media/torrents/seeding"
    if part is not None:
        write(save / f".{h if part == 'v1' else v2[:40]}.parts", b"x")
    info = SimpleNamespace(
        hash=h,
        infohash_v1=h,
        infohash_v2=v2,
        name="Movie",
        instance="qbt",
        state="missingFiles",
        has_metadata=True,
        save_path=str(save),
    )
    files = [TorrentFile(0, "Movie/m.mkv", len(DATA), 0.0, 1), TorrentFile(1, "Movie/x.bin", 9, 0.0, 0)]
    client = SimpleNamespace(files=lambda _h: files)
    if client_part_file is not None:
        client.part_file = client_part_file

    class Clients:
        def find_all(self, _h):
            return [info]

        def __getitem__(self, _name):
            return client

    (t,) = gather(cfg, cat, Clients(), h).torrents
    assert t.part_file_missing is missing
