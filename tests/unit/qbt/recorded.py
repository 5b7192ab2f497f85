"""Responses recorded from a real qbittorrent-nox 4.5.2 (Web API 2.8.19), and 5.x-shaped ones.

The 4.5.2 bodies are verbatim apart from paths, rewritten to a container's view under
/data. Note what 4.5.2 does NOT send: ``has_metadata`` and ``root_path``. The 5.x bodies
(Web API 2.11.4, qBittorrent 5.1) add the fields 5.x serializes and use ``stopped*``.
Also recorded from 4.5.2: ``torrents/info?hashes=<v1 of a hybrid>`` returns ``[]`` (it
filters on the torrent id only); ``torrents/files`` for an unknown hash is 404
"Not Found"; setLocation/addTags/recheck for an unknown hash are 200 with an empty body;
setLocation to an uncreatable folder is 409 "Cannot make save path"; ``torrents/stop`` is
404 on 4.5.2; setDownloadPath on an ATM torrent is 200 and silently ignored.
"""

# fmt: off
V4_API = "2.8.19"
V4_VERSION = "v4.5.2"
V5_API = "2.11.4"
V5_VERSION = "v5.1.0"
V515_API = "2.15.1"

V4_HYBRID = {   'added_on': 1795496976,
    'amount_left': 0,
    'auto_tmm': False,
    'availability': -1,
    'category': '',
    'completed': 5000,
    'completion_on': 1795496977,
    'content_path': '/data/torrents/single/one.bin',
    'dl_limit': 0,
    'dlspeed': 0,
    'download_path': '',
    'downloaded': 0,
    'downloaded_session': 0,
    'eta': 8640000,
    'f_l_piece_prio': False,
    'force_start': False,
    'hash': '82d4430cc3c134bb1ef4cb809ce40f1e23515096',
    'infohash_v1': 'd7d4f207e23f957e369039b02b214a0c7dafcb76',
    'infohash_v2': '82d4430cc3c134bb1ef4cb809ce40f1e23515096008b33e1cada4ec842055e5d',
    'last_activity': 1795496976,
    'magnet_uri': 'magnet:?xt=urn:btih:d7d4f207e23f957e369039b02b214a0c7dafcb76&xt=urn:btmh:122082d4430cc3c134bb1ef4cb809ce40f1e23515096008b33e1cada4ec842055e5d&dn=one.bin&tr=http%3a%2f%2f127.0.0.1%3a1%2fannounce',
    'max_ratio': -1,
    'max_seeding_time': -1,
    'name': 'one.bin',
    'num_complete': 0,
    'num_incomplete': 0,
    'num_leechs': 0,
    'num_seeds': 0,
    'priority': 0,
    'progress': 1,
    'ratio': 0,
    'ratio_limit': -2,
    'save_path': '/data/torrents/single',
    'seeding_time': 1,
    'seeding_time_limit': -2,
    'seen_complete': 0,
    'seq_dl': False,
    'size': 5000,
    'state': 'stalledUP',
    'super_seeding': False,
    'tags': '',
    'time_active': 0,
    'total_size': 5000,
    'tracker': '',
    'trackers_count': 1,
    'up_limit': 0,
    'uploaded': 0,
    'uploaded_session': 0,
    'upspeed': 0}

V4_SHOW = {   'added_on': 1795496974,
    'amount_left': 0,
    'auto_tmm': False,
    'availability': -1,
    'category': 'tv',
    'completed': 70100,
    'completion_on': 1795496975,
    'content_path': '/data/torrents/Show.S01',
    'dl_limit': 0,
    'dlspeed': 0,
    'download_path': '',
    'downloaded': 0,
    'downloaded_session': 0,
    'eta': 8640000,
    'f_l_piece_prio': False,
    'force_start': False,
    'hash': '9100374dcd411e4149ca7548b3af7c2dcf444b42',
    'infohash_v1': '9100374dcd411e4149ca7548b3af7c2dcf444b42',
    'infohash_v2': '',
    'last_activity': 1795496974,
    'magnet_uri': 'magnet:?xt=urn:btih:9100374dcd411e4149ca7548b3af7c2dcf444b42&dn=Show.S01&tr=http%3a%2f%2f127.0.0.1%3a1%2fannounce',
    'max_ratio': -1,
    'max_seeding_time': -1,
    'name': 'Show.S01',
    'num_complete': 0,
    'num_incomplete': 0,
    'num_leechs': 0,
    'num_seeds': 0,
    'priority': 0,
    'progress': 1,
    'ratio': 0,
    'ratio_limit': -2,
    'save_path': '/data/torrents',
    'seeding_time': 1,
    'seeding_time_limit': -2,
    'seen_complete': 0,
    'seq_dl': False,
    'size': 70100,
    'state': 'stalledUP',
    'super_seeding': False,
    'tags': 'cross-seed, qbhook',
    'time_active': 0,
    'total_size': 70100,
    'tracker': '',
    'trackers_count': 1,
    'up_limit': 0,
    'uploaded': 0,
    'uploaded_session': 0,
    'upspeed': 0}

V4_SHOW_FILES = [   {   'availability': -1,
        'index': 0,
        'is_seed': True,
        'name': 'Show.S01/e01.mkv',
        'piece_range': [0, 2],
        'priority': 1,
        'progress': 1,
        'size': 40000},
    {   'availability': -1,
        'index': 1,
        'name': 'Show.S01/e02.mkv',
        'piece_range': [2, 4],
        'priority': 1,
        'progress': 1,
        'size': 30000},
    {   'availability': -1,
        'index': 2,
        'name': 'Show.S01/sub/e01.srt',
        'piece_range': [4, 4],
        'priority': 1,
        'progress': 1,
        'size': 100}]

V4_CATEGORIES = {   'movies': {'name': 'movies', 'savePath': ''},
    'rel': {'name': 'rel', 'savePath': 'relsub'},
    'tv': {'name': 'tv', 'savePath': '/data/torrents'}}

HYBRID_V1 = V4_HYBRID["infohash_v1"]
HYBRID_V2 = V4_HYBRID["infohash_v2"]
HYBRID_ID = V4_HYBRID["hash"]
SHOW_ID = V4_SHOW["hash"]

# Fields qBittorrent 5.1 adds to torrents/info entries.
_V5_EXTRA = {
    "comment": "",
    "has_metadata": True,
    "inactive_seeding_time_limit": -2,
    "max_inactive_seeding_time": -1,
    "popularity": 0,
    "private": False,
    "reannounce": 0,
}


def v5(entry: dict, **changes) -> dict:
    """A 4.5.2 entry as qBittorrent 5.1 would serialize it."""
    out = {**entry, **_V5_EXTRA}
    out["root_path"] = entry["content_path"] if entry["name"] == "Show.S01" else ""
    out["state"] = {"pausedUP": "stoppedUP", "pausedDL": "stoppedDL"}.get(
        entry["state"], entry["state"]
    )
    out.update(changes)
    return out


V5_SHOW = v5(V4_SHOW, state="stoppedUP")
V5_HYBRID = v5(V4_HYBRID)
# fmt: on
