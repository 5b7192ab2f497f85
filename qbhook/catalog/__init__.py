"""Stage 1, the catalog: what is on the pools and what the clients hold, remembered in SQLite.

Owns the database (``db``, ``schema``), filesystem identity (``fsid``: ZFS GUID / UUID, never
st_dev), the incremental scan (``scan``), content hashes (``hashing``) and payload identity
(``identity``), the torrent index (``torrents``, kept current by ``indexer``), duplicate and
copy lookups (``dupes``, ``locate``) and small remembered facts (``state``).
May import: the house modules and ``clients`` (the indexer reads them). Never decides, never moves.
"""
