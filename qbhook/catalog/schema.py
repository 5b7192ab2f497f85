"""Every table of the catalog database, as forward-only migrations.

Entry i of ``MIGRATIONS`` migrates ``user_version`` i -> i+1. Never edit a released entry,
never reorder; append (tests/unit/catalog/test_db_migrate.py pins each shipped entry's text:
migration 8, edited three times, left catalogs in three shapes). The DDL lives here, beside
its order, so the connection code (``catalog.db``) needs no module above it: the journal,
queue, state and torrent index modules import their table's DDL from here, never the other
way round.
"""

import re

SCHEMA_V1 = """
CREATE TABLE filesystems (
    id          INTEGER PRIMARY KEY,
    fsid        TEXT NOT NULL UNIQUE,      -- stable key: zfs:<guid> | uuid:<uuid> | marker:<uuid> | mount:<...>
    kind        TEXT NOT NULL,             -- how fsid was derived: zfs | uuid | marker | mount
    fstype      TEXT,
    source      TEXT,                      -- dataset name / device, informational
    mountpoint  BLOB,
    dev         INTEGER,                   -- current st_dev only: a mapping, never an identity
    first_seen  REAL NOT NULL,
    last_seen   REAL NOT NULL
);

CREATE TABLE inodes (
    id          INTEGER PRIMARY KEY,
    fs          INTEGER NOT NULL REFERENCES filesystems(id),
    ino         INTEGER NOT NULL,
    size        INTEGER NOT NULL,
    mtime_ns    INTEGER NOT NULL,
    ctime_ns    INTEGER NOT NULL,
    nlink       INTEGER NOT NULL,
    -- content hash and the stat it was taken under; valid only while all match
    hash        BLOB,
    hash_size   INTEGER,
    hash_mtime_ns INTEGER,
    hash_ctime_ns INTEGER,
    hashed_at   REAL,
    -- cheap sample (size + head + tail) used to split size collisions before full hashing
    sample      BLOB,
    sample_mtime_ns INTEGER,
    sample_ctime_ns INTEGER,
    seen_scan   INTEGER,
    UNIQUE (fs, ino)
);
CREATE INDEX inodes_size ON inodes(size);
CREATE INDEX inodes_hash ON inodes(hash) WHERE hash IS NOT NULL;

CREATE TABLE paths (
    id          INTEGER PRIMARY KEY,
    path        BLOB NOT NULL UNIQUE,
    inode       INTEGER NOT NULL REFERENCES inodes(id),
    pool        TEXT NOT NULL,
    seen_scan   INTEGER
);
CREATE INDEX paths_inode ON paths(inode);

CREATE TABLE scans (
    id          INTEGER PRIMARY KEY,
    pool        TEXT NOT NULL,
    root        BLOB NOT NULL,
    started_at  REAL NOT NULL,
    finished_at REAL,
    status      TEXT NOT NULL DEFAULT 'running',   -- running | ok | refused | failed
    files_seen  INTEGER DEFAULT 0,
    added       INTEGER DEFAULT 0,
    changed     INTEGER DEFAULT 0,
    removed     INTEGER DEFAULT 0,
    message     TEXT
);
"""

QUEUE_DDL = """
CREATE TABLE IF NOT EXISTS event_jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: ids are shown to senders
    coalesce_key  TEXT    NOT NULL,
    state         TEXT    NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'running', 'done', 'dead')),
    hashes        TEXT    NOT NULL DEFAULT '[]',      -- JSON lists, merged on coalescing
    paths         TEXT    NOT NULL DEFAULT '[]',
    kinds         TEXT    NOT NULL DEFAULT '[]',
    sources       TEXT    NOT NULL DEFAULT '[]',
    events        TEXT    NOT NULL DEFAULT '[]',      -- the first MAX_KEPT_EVENTS events
    event_count   INTEGER NOT NULL DEFAULT 1,
    truncated     INTEGER NOT NULL DEFAULT 0,         -- 1: lists were capped, look wider
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL,
    not_before    REAL    NOT NULL,
    created_at    REAL    NOT NULL,
    updated_at    REAL    NOT NULL,
    claimed_at    REAL,
    heartbeat_at  REAL,
    worker_id     TEXT,
    finished_at   REAL,
    result        TEXT,
    last_error    TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS event_jobs_one_pending_per_key
    ON event_jobs (coalesce_key) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS event_jobs_ready ON event_jobs (state, not_before, created_at);
"""

JOURNAL_DDL = """
CREATE TABLE IF NOT EXISTS runs (
    id          INTEGER PRIMARY KEY,
    started_at  REAL NOT NULL,
    finished_at REAL,
    status      TEXT NOT NULL,           -- running | done | failed | interrupted
    trigger     TEXT,                    -- cli | worker | sweeper | resume
    pid         INTEGER,
    host        TEXT,
    plan        TEXT NOT NULL,           -- the plan (JSON) this run executes
    summary     TEXT                     -- JSON counters once finished
);
CREATE TABLE IF NOT EXISTS steps (
    id          INTEGER PRIMARY KEY,
    run         INTEGER NOT NULL REFERENCES runs(id),
    seq         INTEGER NOT NULL,
    group_id    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    args        TEXT NOT NULL,           -- JSON
    status      TEXT NOT NULL,           -- intended | done | failed | undone
    started_at  REAL NOT NULL,
    finished_at REAL,
    result      TEXT,
    error       TEXT,
    UNIQUE (run, seq)
);
CREATE INDEX IF NOT EXISTS steps_run ON steps(run, seq);
CREATE TABLE IF NOT EXISTS group_state (
    group_id    TEXT PRIMARY KEY,
    run         INTEGER REFERENCES runs(id),
    status      TEXT NOT NULL,           -- running | done | failed | rolled_back
    reason      TEXT,
    updated_at  REAL NOT NULL
);
"""

STATE_DDL = """
CREATE TABLE IF NOT EXISTS state (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at REAL NOT NULL
);
"""

TORRENTS_DDL = """
CREATE TABLE torrent_sync (
    instance    TEXT PRIMARY KEY,
    rid         INTEGER NOT NULL DEFAULT 0,     -- qBittorrent sync/maindata response id (0: none yet)
    mode        TEXT,                           -- how the last sync listed: full | incremental | listing
    synced_at   REAL,                           -- last sync that completed
    full_at     REAL                            -- last complete listing
);

CREATE TABLE torrents (
    id          INTEGER PRIMARY KEY,
    instance    TEXT NOT NULL,
    hash        TEXT NOT NULL,                  -- the id the client reports (v1, or truncated v2)
    infohash_v1 TEXT,
    infohash_v2 TEXT,
    name        TEXT NOT NULL DEFAULT '',
    category    TEXT NOT NULL DEFAULT '',
    tags        TEXT NOT NULL DEFAULT '[]',     -- JSON list, sorted
    save_path   TEXT,                           -- host spelling (NULL when unmappable)
    client_save_path TEXT,
    content_path TEXT,
    client_content_path TEXT,
    download_path TEXT,
    state       TEXT,
    progress    REAL,
    auto_tmm    INTEGER,
    size        INTEGER,
    total_size  INTEGER,
    has_metadata INTEGER,
    added_on    INTEGER,
    completion_on INTEGER,
    map_error   TEXT,
    raw         TEXT NOT NULL DEFAULT '{}',
    files_key   TEXT,
    first_seen  REAL NOT NULL,
    last_seen   REAL NOT NULL,
    gone_at     REAL,
    content_id  TEXT,
    tree_id     TEXT,
    files_hashed INTEGER NOT NULL DEFAULT 0,
    ids_complete INTEGER NOT NULL DEFAULT 0,
    ids_at      REAL,
    group_id    TEXT,
    decision    TEXT,
    decision_reason TEXT,
    decided_at  REAL,
    UNIQUE (instance, hash)
);
CREATE INDEX torrents_v1 ON torrents(infohash_v1) WHERE infohash_v1 IS NOT NULL;
CREATE INDEX torrents_v2 ON torrents(infohash_v2) WHERE infohash_v2 IS NOT NULL;
CREATE INDEX torrents_content ON torrents(content_id) WHERE content_id IS NOT NULL;

CREATE TABLE torrent_files (
    torrent     INTEGER NOT NULL REFERENCES torrents(id) ON DELETE CASCADE,
    idx         INTEGER NOT NULL,
    rel         TEXT NOT NULL,                  -- relative to save_path, '/'-separated
    size        INTEGER NOT NULL,
    priority    INTEGER NOT NULL,
    path        BLOB,                           -- host path, same bytes as paths.path (NULL: unmappable)
    inode       INTEGER,                        -- inodes.id the path resolved to (no FK: scans drop inodes)
    PRIMARY KEY (torrent, idx)
) WITHOUT ROWID;
CREATE INDEX torrent_files_path ON torrent_files(path);
CREATE INDEX torrent_files_inode ON torrent_files(inode);
"""

# A torrent's content as last known, kept after its files vanish (``qbhook repair`` finds a copy
# by it): each file's last valid BLAKE3 and the torrent's last complete content id. Written by
# ``TorrentIndex.refresh`` whenever the files are hashed; never cleared by a file going missing.
KEPT_HASHES_DDL = """
ALTER TABLE torrent_files ADD COLUMN last_blake3 BLOB;
ALTER TABLE torrents ADD COLUMN last_content_id TEXT;
"""

# The catalog's write generation: one counter that every write to a row a rescan compares moves,
# by any connection in any process (permanent triggers; a rolled-back write rolls its bump back).
# The conditions on UPDATE are the compared columns only, so a hash, a sample or last_seen
# written leaves it alone. ``scan_memos`` holds, per scanned (pool, root), what the last rescan
# established: at generation ``generation`` the catalog's rows were exactly what find printed,
# a find output of ``size`` bytes and ``lines`` lines with BLAKE3 ``digest``
# (catalog/scan.py). A memo whose generation is not the current one describes another catalog.
# The nine triggers are spelled out, not generated from a table list: a migration's text is
# frozen once shipped, and generating it from live code would let a later edit change it.
WRITE_GENERATION_DDL = """
CREATE TABLE catalog_writes (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    n           INTEGER NOT NULL
);
INSERT INTO catalog_writes(id, n) VALUES (1, 0);
CREATE TRIGGER catalog_writes_paths_insert AFTER INSERT ON paths
BEGIN UPDATE catalog_writes SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER catalog_writes_paths_delete AFTER DELETE ON paths
BEGIN UPDATE catalog_writes SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER catalog_writes_paths_update AFTER UPDATE ON paths
WHEN old.path IS NOT new.path OR old.inode IS NOT new.inode OR old.pool IS NOT new.pool
BEGIN UPDATE catalog_writes SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER catalog_writes_inodes_insert AFTER INSERT ON inodes
BEGIN UPDATE catalog_writes SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER catalog_writes_inodes_delete AFTER DELETE ON inodes
BEGIN UPDATE catalog_writes SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER catalog_writes_inodes_update AFTER UPDATE ON inodes
WHEN old.id IS NOT new.id OR old.fs IS NOT new.fs OR old.ino IS NOT new.ino OR old.size IS NOT new.size
    OR old.mtime_ns IS NOT new.mtime_ns OR old.ctime_ns IS NOT new.ctime_ns OR old.nlink IS NOT new.nlink
BEGIN UPDATE catalog_writes SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER catalog_writes_filesystems_insert AFTER INSERT ON filesystems
BEGIN UPDATE catalog_writes SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER catalog_writes_filesystems_delete AFTER DELETE ON filesystems
BEGIN UPDATE catalog_writes SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER catalog_writes_filesystems_update AFTER UPDATE ON filesystems
WHEN old.id IS NOT new.id OR old.dev IS NOT new.dev
BEGIN UPDATE catalog_writes SET n = n + 1 WHERE id = 1; END;

CREATE TABLE scan_memos (
    key         BLOB PRIMARY KEY,               -- pool name, NUL, the subtree scanned ('' = the whole pool)
    memo        BLOB NOT NULL                   -- catalog/scan.py's encoding, with its own version and checksum
);
"""

# What moves content_writes on an inode: migration 8 makes it, migration 14 makes it again.
_CONTENT_WRITES_INODES_TRIGGER = """\
CREATE TRIGGER content_writes_inodes_update AFTER UPDATE ON inodes
WHEN old.hash IS NOT new.hash OR old.hash_size IS NOT new.hash_size
    OR old.hash_mtime_ns IS NOT new.hash_mtime_ns OR old.hash_ctime_ns IS NOT new.hash_ctime_ns
    OR old.sample IS NOT new.sample OR old.sample_mtime_ns IS NOT new.sample_mtime_ns
    OR old.sample_ctime_ns IS NOT new.sample_ctime_ns
BEGIN UPDATE content_writes SET n = n + 1 WHERE id = 1; END;
"""

# Lookups that grew with the catalog or with time, for the sweep, explain and dupes (issues 11,
# 13). ``content_writes`` counts writes to what a file's content is known by: an inode's hash or
# partial (sample) and the stat each was taken under, and a filesystem's fsid. A trigger moves
# it, like the write generation's, so any connection's write in any process moves it; it is
# kept apart from the write generation so that storing hashes does not void the rescan memo.
# With the write generation it tells the torrent index whether payload ids can have changed
# without a pass over the inodes (catalog/indexer.py ``refresh_mark``) and tells a kept dupes
# report that it is stale (migration 9, catalog/dupes.py). The indexes: the last full scan of
# a pool and the oldest unfinished scan (``scans`` gains two rows per sweep, forever); torrents
# by content and save path (explain's folder rule); inodes recorded or hashed since a mark (the
# sweep's "did anything change" question, catalog-wide). The hashed_at index holds hashed
# inodes only: a first scan inserts every inode unhashed, and indexing those NULLs made it ~60%
# slower (measured at 50,000 files; ~10% with the partial index).
LOOKUP_INDEXES_DDL = (
    """
CREATE TABLE content_writes (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    n           INTEGER NOT NULL
);
INSERT INTO content_writes(id, n) VALUES (1, 0);
"""
    + _CONTENT_WRITES_INODES_TRIGGER
    + """CREATE TRIGGER content_writes_filesystems_update AFTER UPDATE ON filesystems
WHEN old.fsid IS NOT new.fsid
BEGIN UPDATE content_writes SET n = n + 1 WHERE id = 1; END;
CREATE INDEX scans_ok_pool_root ON scans(pool, root, finished_at) WHERE status = 'ok';
CREATE INDEX scans_unfinished ON scans(started_at) WHERE finished_at IS NULL;
CREATE INDEX torrents_content_path ON torrents(content_path);
CREATE INDEX torrents_save_path ON torrents(save_path);
CREATE INDEX inodes_seen_scan ON inodes(seen_scan);
CREATE INDEX inodes_hashed_at ON inodes(hashed_at) WHERE hashed_at IS NOT NULL;
"""
)

# What `qbhook dupes` reports is a function of the catalog's rows alone whenever it had nothing
# to read: the paths, the inodes' stat columns (the write generation above), their hash and
# partial columns, and each filesystem's fsid (content_writes, migration 8). ``dupes_memos``
# holds the last report per --min-size, valid only while both counters are the ones stored with
# it (catalog/dupes.py; the report's text follows its BLAKE3, so a damaged one fails the check
# and is recomputed). IF NOT EXISTS, the one edit of a shipped migration, harmless to every
# catalog it already ran on: a catalog made by 22fb3d9, whose migration 8 made this table, failed
# here ("already exists"; migration 14 repairs the rest).
DUPES_MEMO_DDL = """
CREATE TABLE IF NOT EXISTS dupes_memos (
    min_size    INTEGER PRIMARY KEY,
    writes      INTEGER NOT NULL,               -- catalog_writes.n the report was computed at
    content     INTEGER NOT NULL,               -- content_writes.n the report was computed at
    format      TEXT NOT NULL,                  -- catalog/dupes.py's MEMO_FORMAT
    report      BLOB NOT NULL                   -- BLAKE3 (32 bytes) of the report's JSON text, then the text
);
"""

# Gone torrents are pruned after every sweep (``TorrentIndex.prune_gone``): this index holds the
# few gone rows only, so finding them reads no present row (a scan of 5,000 rows cost 7 ms of
# CPU per sweep, most of an unchanged one's index work).
GONE_INDEX_DDL = """
CREATE INDEX torrents_gone ON torrents(instance, gone_at) WHERE gone_at IS NOT NULL;
"""

# Older versions catalogued the files of a torrent saved outside every pool, with pool '?' (the
# snapshot recorded whatever it lstat-ed by its string); such a file is now a snapshot fact only,
# never catalogued (docs/design.md, r11), but the rows already written still fed ``find`` and
# ``dupes``, which could read and hash them. Removed once here, with every inode left without a
# path (the catalog holds no such inode otherwise: ``Catalog.forget_path`` and the scans drop
# them the same way). Each DELETE fires the write generation's triggers (migration 7): the scan
# and dupes memos computed over those rows no longer match, and the torrent index, whose inode
# column keeps no foreign key, looks its files up again. The rows are a cache of the disk: were
# a pool configured under the name '?', its next scan would record its files again.
OUTSIDE_ROWS_DDL = """
DELETE FROM paths WHERE pool = '?';
DELETE FROM inodes WHERE NOT EXISTS (SELECT 1 FROM paths WHERE paths.inode = inodes.id);
"""

# A sharer a relocation stopped and could not start again (``Executor._start_sharers``), by
# (client instance, lower-case hash): it ran (``forced``: force-started) before qbhook stopped
# it, so its own relocation starts it again (``Journal.stopped_by_us``). One row per torrent, read
# and dropped by key: kept before in the stopping step's args, every look read the whole steps
# table. A row goes once qbhook starts that torrent, or sees it running: the executor's look, or
# the torrent index's sync (the two triggers below: a running state written to its row). Seen
# running, a person may stop it later on purpose, and that stop is theirs to keep. The states
# are qBittorrent's started ones (clients/model.py ``TorrentInfo.is_running``), spelled out: a
# migration's text is frozen once shipped (tests/unit/catalog/test_db_migrate.py
# ``test_migration_12s_running_states_are_the_python_rules`` fails when the two differ: a change
# to the rule then needs a migration replacing both triggers). The records older versions kept in
# step args move here.
LEFT_STOPPED_DDL = """
CREATE TABLE left_stopped (
    instance    TEXT NOT NULL,
    hash        TEXT NOT NULL,                  -- lower case, as the client reports it
    forced      INTEGER NOT NULL,               -- 1: it ran force-started
    step_id     INTEGER NOT NULL,               -- the relocate step that stopped it (steps.id)
    at          REAL NOT NULL,
    PRIMARY KEY (instance, hash)
) WITHOUT ROWID;
INSERT OR REPLACE INTO left_stopped(instance, hash, forced, step_id, at)
    SELECT json_extract(s.args, '$.instance'), lower(j.key), j.value IS 1, s.id, s.started_at
    FROM steps s, json_each(s.args, '$._left_stopped') j
    WHERE s.kind = 'relocate' AND json_type(s.args, '$._left_stopped') = 'object'
        AND json_type(s.args, '$.instance') = 'text'
    ORDER BY s.id;
CREATE TRIGGER left_stopped_seen_running_insert AFTER INSERT ON torrents
WHEN new.state IN ('uploading', 'stalledUP', 'queuedUP', 'forcedUP', 'downloading', 'stalledDL', 'queuedDL', 'forcedDL')
BEGIN DELETE FROM left_stopped WHERE instance = new.instance AND hash = lower(new.hash); END;
CREATE TRIGGER left_stopped_seen_running_update AFTER UPDATE OF state ON torrents
WHEN new.state IN ('uploading', 'stalledUP', 'queuedUP', 'forcedUP', 'downloading', 'stalledDL', 'queuedDL', 'forcedDL')
BEGIN DELETE FROM left_stopped WHERE instance = new.instance AND hash = lower(new.hash); END;
"""

# Which process a run's pid named (``procs.identity``: boot, start tick, pid namespace), so a
# resume tells a dead run's pid handed to another process (after a reboot: a daemon's) from
# the run's own live process. NULL for the runs journaled before: judged by the pid alone.
RUN_PROCESS_DDL = """
ALTER TABLE runs ADD COLUMN process TEXT;
"""

# Migration 8's text was edited after it shipped (22fb3d9, 0750fe6, ada4fce), so a catalog at 8
# or later may hold another migration 8 than LOOKUP_INDEXES_DDL: 22fb3d9's (content_writes and
# dupes_memos, no lookup index) or 0750fe6's and ada4fce's (``catalog_hash_writes`` instead of
# content_writes: every dupes and torrent-index query on it failed). Made the shape of today's
# migration 8 here: the old counter and its trigger dropped (the trigger first: an inode update
# would fail on its missing table), content_writes and its triggers and the indexes made where
# missing, inodes_hashed_at rebuilt partial (0750fe6 indexed every unhashed NULL). What either
# counter kept is void, not trusted: the torrent index's refresh mark and the dupes reports go
# (one refresh and one recomputation each, then kept again), but only on a catalog of an edited
# migration 8 (its content_writes_filesystems_update is missing): on any other this step changes
# no row (R20: it dropped both on every catalog, a needless full index refresh at 180,000 files).
# The inodes trigger is made again whatever it was: 22fb3d9's fired on a hash write only.
MIGRATION_8_REPAIR_DDL = (
    """
DELETE FROM state WHERE key = 'index.refresh_mark' AND NOT EXISTS (
    SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = 'content_writes_filesystems_update');
DELETE FROM dupes_memos WHERE NOT EXISTS (
    SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = 'content_writes_filesystems_update');
DROP TRIGGER IF EXISTS catalog_hash_writes_update;
DROP TABLE IF EXISTS catalog_hash_writes;
CREATE TABLE IF NOT EXISTS content_writes (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    n           INTEGER NOT NULL
);
INSERT OR IGNORE INTO content_writes(id, n) VALUES (1, 0);
DROP TRIGGER IF EXISTS content_writes_inodes_update;
"""
    + _CONTENT_WRITES_INODES_TRIGGER
    + """CREATE TRIGGER IF NOT EXISTS content_writes_filesystems_update AFTER UPDATE ON filesystems
WHEN old.fsid IS NOT new.fsid
BEGIN UPDATE content_writes SET n = n + 1 WHERE id = 1; END;
CREATE INDEX IF NOT EXISTS scans_ok_pool_root ON scans(pool, root, finished_at) WHERE status = 'ok';
CREATE INDEX IF NOT EXISTS scans_unfinished ON scans(started_at) WHERE finished_at IS NULL;
CREATE INDEX IF NOT EXISTS torrents_content_path ON torrents(content_path);
CREATE INDEX IF NOT EXISTS torrents_save_path ON torrents(save_path);
CREATE INDEX IF NOT EXISTS inodes_seen_scan ON inodes(seen_scan);
DROP INDEX IF EXISTS inodes_hashed_at;
CREATE INDEX inodes_hashed_at ON inodes(hashed_at) WHERE hashed_at IS NOT NULL;
"""
)

# Each inode's owner and mode as the last stat that wrote its row saw them (st_mode, st_uid,
# st_gid), for the converge pass's access rule (``decide.converge_pass``, ``access.access_lost``):
# a seeding file linked onto an inode that would take read or write from its owner is kept apart
# in the plan, as the planner's lstat-ed snapshot keeps it, instead of being promised and then
# refused by the executor at every run. NULL: not known (rows written before this migration, or
# whose ctime a hash or stat write moved: ``Catalog.store_stats``); the pass then leaves it to the
# executor, as before. A rescan compares them (find's line, the Python walk's signature), so the
# write generation must move when they change, like the six stat columns (migration 7).
OWNER_DDL = """
ALTER TABLE inodes ADD COLUMN mode INTEGER;
ALTER TABLE inodes ADD COLUMN uid INTEGER;
ALTER TABLE inodes ADD COLUMN gid INTEGER;
CREATE TRIGGER catalog_writes_inodes_owner_update AFTER UPDATE ON inodes
WHEN old.mode IS NOT new.mode OR old.uid IS NOT new.uid OR old.gid IS NOT new.gid
BEGIN UPDATE catalog_writes SET n = n + 1 WHERE id = 1; END;
"""

# The newest (wall clock, CLOCK_BOOTTIME) pair qbhook read in each boot (``Journal.note_clock``,
# at every run's start and end and every purge): what dates a hold of an earlier boot stamped
# under a wall clock wrong at the time (restored from the last shutdown, before NTP synced), by
# the same boot's later reading (``fsops.HeldLink.start``). One row per boot, replaced in place.
BOOT_CLOCKS_DDL = """
CREATE TABLE IF NOT EXISTS boot_clocks (
    boot        TEXT PRIMARY KEY,        -- /proc/sys/kernel/random/boot_id
    wall        REAL NOT NULL,           -- the wall clock at that reading
    boottime    REAL NOT NULL            -- CLOCK_BOOTTIME at that reading, in that boot
);
"""

# A run's plan (its JSON, ``Journal.start_run``), in a table of its own: SQLite writes a row again
# whole on any change, and ``runs`` changes at every run's end (its status, ``finish_run``) and at
# each resume (``adopt_run``). With the plan in that row, each of those wrote the plan's text again:
# 8.7 MB per 10,000 converge groups, ~0.04 CPU-s and as many pages more through the WAL and its
# checkpoint at the end of every large run. ``runs.plan`` is '' for the runs journaled since; the
# runs journaled before keep theirs there (``Journal`` reads either).
RUN_PLANS_DDL = """
CREATE TABLE IF NOT EXISTS run_plans (
    run         INTEGER PRIMARY KEY REFERENCES runs(id),
    plan        TEXT NOT NULL            -- the plan (JSON) this run executes
);
"""

# The tables every qbhook catalog has held since its first migration, and no later step drops:
# how ``catalog.db`` tells a qbhook catalog from another program's SQLite file before it writes.
FIRST_TABLES: frozenset[str] = frozenset(re.findall(r"^CREATE TABLE (\w+)", SCHEMA_V1, re.MULTILINE))

MIGRATIONS: tuple[str, ...] = (
    SCHEMA_V1,
    QUEUE_DDL,
    JOURNAL_DDL,
    STATE_DDL,
    TORRENTS_DDL,
    KEPT_HASHES_DDL,
    WRITE_GENERATION_DDL,
    LOOKUP_INDEXES_DDL,
    DUPES_MEMO_DDL,
    GONE_INDEX_DDL,
    OUTSIDE_ROWS_DDL,
    LEFT_STOPPED_DDL,
    RUN_PROCESS_DDL,
    MIGRATION_8_REPAIR_DDL,
    OWNER_DDL,
    BOOT_CLOCKS_DDL,
    RUN_PLANS_DDL,
)
