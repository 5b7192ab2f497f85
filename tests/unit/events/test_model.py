from __future__ import annotations

import hashlib

import pytest

from qbhook.events.model import Event

H1 = "a" * 40
H2 = "b" * 64


def test_one_hash_keys_on_the_torrent():
    assert Event("qbittorrent", "torrent_added", hashes=(H1,)).coalesce_key() == f"torrent:{H1}"


def test_subject_is_the_first_hash():
    assert Event("cross-seed", "cross_seed_injected", hashes=(H1, H2)).coalesce_key() == f"torrent:{H1}"


def test_paths_key_ignores_order_and_duplicates():
    a = Event("sonarr", "file_deleted", paths=("/b", "/a"))
    b = Event("radarr", "rename", paths=("/a", "/b", "/a"))
    digest = hashlib.sha256(b"/a\0/b").hexdigest()[:32]
    assert a.coalesce_key() == b.coalesce_key() == f"path:{digest}"


def test_no_hash_no_path_is_a_sweep_per_source():
    assert Event("radarr", "media_deleted").coalesce_key() == "sweep:radarr"


def test_round_trip_through_dict():
    event = Event("sonarr", "upgrade", (H1,), ("/x/ä b",), "Sonarr", 12.5, "Download", "", "qBittorrent")
    assert Event.from_dict(event.to_dict()) == event
    assert isinstance(Event("sonarr", "import", hashes=[H1]).hashes, tuple)


@pytest.mark.parametrize("field,value", [("source", "transmission"), ("kind", "grab")])
def test_unknown_source_or_kind_is_a_bug(field, value):
    kwargs = {"source": "sonarr", "kind": "import", field: value}
    with pytest.raises(ValueError):
        Event(**kwargs)


def test_frozen():
    with pytest.raises(AttributeError):
        Event("manual", "import").kind = "rename"  # type: ignore[misc]
