"""The catalog database: connection settings and forward-only migrations.

SQLite in WAL mode so readers (status, plan) never block the writer, and
``synchronous=FULL`` because the journal and the event queue must survive a
power cut between "recorded" and "acted on". One writer at a time is SQLite's
own rule; ``busy_timeout`` makes a second writer wait instead of failing.

Paths are stored as BLOBs of the raw bytes the kernel gave us (os.fsencode):
names with newlines or invalid UTF-8 are legal on ZFS and must round-trip.
"""

from __future__ import annotations

import errno
import os
import shlex
import sqlite3
import stat
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from qbhook.catalog.schema import FIRST_TABLES, MIGRATIONS
from qbhook.config import link_target, not_a_folder
from qbhook.errors import (
    CatalogDamaged,
    CatalogError,
    CatalogFolderMissing,
    CatalogLinkDangling,
    CatalogLinkLoop,
    CatalogMisplaced,
    CatalogMissing,
    CatalogUnwritable,
    CatalogUpgraded,
    LockBusy,
    NotACatalog,
    QbhookError,
)
from qbhook.users import named_user, user_name


def migrations() -> list[str]:
    """Forward-only: entry i migrates user_version i -> i+1 (the list lives in ``schema``)."""
    return list(MIGRATIONS)


_DAMAGE = ("malformed", "not a database", "disk i/o error", "disk is full", "corrupt")
# SQLITE_CANTOPEN and SQLITE_READONLY: the file or its folder may not be written (a read-only
# folder for the -wal and -shm files, a file owned by another user); nothing is damaged.
_UNWRITABLE = ("unable to open database file", "readonly database")


def sqlite_failure(e: BaseException, path: str | Path | None) -> QbhookError | None:
    """The user-facing error for a SQLite failure on the catalog, or None if it is a bug.

    A damaged page ("database disk image is malformed"), "file is not a database", a full
    disk or an I/O error describe the catalog file or its disk; a held lock means another
    qbhook is writing; a file or folder that may not be opened or written is the I/O exit code
    too, without a word of damage; other operational failures are plain catalog errors.
    Integrity and programming errors are bugs in qbhook: None, so the caller lets them keep
    their traceback.
    """
    if not (type(e) is sqlite3.DatabaseError or isinstance(e, (sqlite3.OperationalError, sqlite3.InternalError))):
        return None
    where = f"catalog {path}" if path is not None else "catalog"
    detail = " ".join(str(e).split()) or type(e).__name__
    low = detail.lower()
    if "locked" in low or "busy" in low:
        return LockBusy(f"{where}: {detail}", hint="another qbhook process is writing the catalog; try again later")
    if type(e) is sqlite3.DatabaseError or any(w in low for w in _DAMAGE):
        return CatalogDamaged(
            f"{where}: {detail}",
            hint="check the disk; if the file is damaged, restore it from a backup or move it "
            "aside ('qbhook scan' rebuilds a new catalog, but run history is lost)",
        )
    if "readonly database" in low and path is not None and (why := unwritable(path)):
        # SQLITE_READONLY says "readonly database" whichever file refused: name the one (a -shm
        # left read-only, the catalog itself), so the fix is one command, not a guess.
        return CatalogUnwritable(
            f"{where}: {detail} ({why})",
            hint=f"let {named_user(os.geteuid())} write it (chown, chmod u+w) or run qbhook as the user that owns it",
        )
    if any(w in low for w in _UNWRITABLE):
        return CatalogUnwritable(
            f"{where}: {detail}", hint="check that the catalog's folder exists and qbhook may write in it"
        )
    return CatalogError(f"{where}: {detail}")


# How long a connection waits for another's write lock before SQLite says "database is locked".
BUSY_S = 60.0


def connect(
    path: str | Path,
    *,
    readonly: bool = False,
    create: bool = True,
    check_same_thread: bool = True,
    busy_s: float = BUSY_S,
) -> sqlite3.Connection:
    """The catalog at ``path``, migrated to the newest schema unless ``readonly``. ``busy_s``: how
    long each statement (the migration's too) waits for another connection's write lock.

    ``create``: a missing catalog is made (with its tables); else, and always when ``readonly``,
    it is ``CatalogMissing`` and nothing is made, neither the file nor its folder. SQLite is
    then told not to create it either (``mode=rw``/``ro``): a file removed after the stat below
    is still not made anew. A missing folder is ``CatalogFolderMissing`` whatever ``create``
    is: no command makes it. A catalog this process may not write is opened only while its
    ``-wal`` and ``-shm`` exist, so that opening it makes nothing (``_leaves_nothing``)."""
    path = Path(path)
    create = create and not readonly
    if create:
        _need_folder(path.parent)
    st = _looked_at(path, create)
    if st is not None:
        _leaves_nothing(path, st)
    try:
        if create:
            conn = sqlite3.connect(path, timeout=busy_s, isolation_level=None, check_same_thread=check_same_thread)
        else:
            # A URI names the file percent-encoded: a '?', '#' or '%' in the path is part of it.
            uri = f"file:{quote(os.fsencode(path))}?mode={'ro' if readonly else 'rw'}"
            conn = sqlite3.connect(
                uri, uri=True, timeout=busy_s, isolation_level=None, check_same_thread=check_same_thread
            )
        conn.execute(f"PRAGMA busy_timeout = {int(busy_s * 1000)}")
        if _foreign(conn):  # asked before the first write: WAL mode is one
            conn.close()
            raise NotACatalog(path, "a SQLite file but not a qbhook catalog")
        if not readonly:
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.Error as e:
        if type(e) is sqlite3.DatabaseError and not _sqlite_header(path):
            raise NotACatalog(path, _NOT_SQLITE) from None
        raise sqlite_failure(e, path) or CatalogError(f"cannot open catalog {path}: {e}") from None
    if not readonly:
        migrate(conn)
    return conn


_MAGIC = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file
_SMALLEST_DATABASE = 512  # a database file is whole pages (or none), of 512 bytes at least
_NOT_SQLITE = "not a SQLite file, so not a qbhook catalog"


def _looked_at(path: Path, create: bool) -> os.stat_result | None:
    """``connect``'s checks of what ``path`` names before SQLite opens it (None: no file yet, to
    be created); each refusal is its own error class."""
    # SQLite opens whatever the path names: a folder was "unable to open database file", a FIFO
    # "damaged" (exit 74), /dev/null a ROLLBACK error that hid the real one. stat, not open: a
    # FIFO's stat never blocks.
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        # No folder to hold it (or a file where it would be) is the config's fault (78) in every
        # command, not "no catalog yet" (66), whose advice, `qbhook scan`, would then fail on that
        # folder, nor "Not a directory" (74), nor a `mkdir -p` of a file's name.
        _need_folder(path.parent)
        if os.path.islink(path):  # to nothing: the same two answers, 66 then 74, otherwise
            if create and os.path.isdir(os.path.dirname(os.path.realpath(path))):
                return None  # a new catalog, made where the link points (a scan did so, R87)
            raise CatalogLinkDangling(path, link_target(path)) from None
        if not create:
            raise CatalogMissing(path) from None
        return None  # a new catalog: SQLite creates it
    except OSError as e:  # a folder on the way this user may not enter, a name too long
        if e.errno == errno.ELOOP:  # the links' own, or a folder's on the way (R98: named as `scan` names it)
            _need_folder(path.parent)
            raise CatalogLinkLoop(path) from None
        raise CatalogUnwritable(f"cannot open catalog {path}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise CatalogMisplaced(
            f"catalog {path} is not a regular file", hint="point 'catalog:' in the config at a file (qbhook creates it)"
        )
    if st.st_size == 0 and not create:
        # An empty file (`touch`) is no catalog yet: migrating it would make one, from a command
        # that only reads (``status``), answering "nothing" as if it were the real one.
        raise CatalogMissing(path)
    if 0 < st.st_size < _SMALLEST_DATABASE:
        # SQLite took a one-byte file for an empty database, which `scan` then overwrote.
        raise NotACatalog(path, _NOT_SQLITE)
    return st


def _leaves_nothing(path: Path, st: os.stat_result) -> None:
    """Refuse to open a catalog this process may not write while its ``-wal`` or ``-shm`` is
    missing: SQLite would make them, and a writer could not use them after.

    Opening a WAL database makes both beside it wherever the folder lets it, a read-only
    connection's too, with the database file's mode (SQLite's rule): a reader of a mode-444
    catalog left a 444 ``-shm`` that refused every writer ("attempt to write a readonly
    database") once the catalog was writable again, until root opened it; another user's
    reader leaves ones the catalog's owner may not write. While a writer has the catalog open
    both exist, and a reader makes nothing. Where the folder may not be written either, SQLite
    failed anyway ("attempt to write a readonly database", for a read). A last writer closing
    (and removing both) between this look and SQLite's open is the one window left.
    """
    if os.access(path, os.W_OK, effective_ids=True):
        return
    # SQLite follows a link to the catalog and keeps both beside the file it names (R87).
    real = Path(os.path.realpath(path))
    missing = [s for s in ("-wal", "-shm") if not os.path.lexists(real.with_name(real.name + s))]
    if not missing:
        return
    made = " and ".join(real.name + s for s in missing)
    if _read_only_fs(real):  # nothing can be made there: SQLite fails to open it, for a read too
        raise CatalogUnwritable(
            f"catalog {path} is on a read-only filesystem, and reading it would need {made} made beside it",
            hint="read it where it is mounted read-write, or while a qbhook that writes it has it open",
        )
    if st.st_uid != os.geteuid():  # another user's catalog: theirs to run qbhook as, not to give away
        fix = f"run qbhook as {named_user(st.st_uid)}, its owner"
    else:
        fix = f"chmod u+w {shlex.quote(os.fspath(real))}"
    raise CatalogUnwritable(
        f"catalog {path} is {_owned(st)}, which {named_user(os.geteuid())} may not write: opening it now "
        f"would leave {made} beside it, read-only for every writer after",
        hint=f"{fix} (while a qbhook that may write it has it open, it can be read as it is)",
    )


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _sqlite_header(path: Path) -> bool:
    """Whether the file begins as every SQLite database does; asked only once SQLite said "file
    is not a database". Without the header it is some other file (a YAML, a log), named by
    ``catalog:`` by mistake: a config problem (``NotACatalog``), not damage (74). With it, what
    SQLite cannot read is damage inside a SQLite file: ``CatalogDamaged``. A file this cannot
    read is left to SQLite's words.

    Only then, never before every open: closing any descriptor of a file drops every POSIX lock
    this process holds on it, SQLite's connections' included (sqlite.org's "How To Corrupt An
    SQLite Database File", 2.2); with a look before every open, `serve`'s worker claimed no job
    (test_serve_startup). O_NONBLOCK: a FIFO swapped in since the stat does not hang the open."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return True
    try:
        return os.read(fd, len(_MAGIC)) == _MAGIC
    except OSError:
        return True
    finally:
        os.close(fd)


def _need_folder(folder: Path) -> None:
    """``CatalogFolderMissing`` unless ``folder`` is one, in `config check`'s words: missing, or a
    file in the way, which no `mkdir -p` the advice for a missing one names can make."""
    if not _is_folder(folder):
        raise CatalogFolderMissing(folder, not_a_folder(folder, CatalogFolderMissing.FIX))


def _is_folder(folder: Path) -> bool:
    """Whether ``folder`` is one, as ``Path.is_dir`` says, except that what stops the look (a folder
    above this user may not enter, a name too long) is ``CatalogUnwritable`` naming it: Python
    3.11's ``is_dir`` raises PermissionError there, a traceback where one line was promised."""
    try:
        return stat.S_ISDIR(os.stat(folder).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as e:
        raise CatalogUnwritable(f"cannot look in catalog folder {folder}: {e.strerror}") from None


def unwritable(path: str | Path) -> str | None:
    """Why this process could not write the catalog at ``path``, or None; asked of access(2)
    (as the effective user) before anything is opened, so nothing is made or changed.

    A writer in WAL mode writes the file and its ``-wal`` and ``-shm`` beside it, and makes
    those (or a missing catalog) in the folder: each must be writable, or the folder where
    one is missing. A missing folder is None here: ``connect`` names it.
    """
    path = Path(path)
    folder = path.parent
    try:
        if not _is_folder(folder):
            return None
    except CatalogUnwritable as e:
        return e.message
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            st = os.stat(p)
        except FileNotFoundError:
            if not os.access(folder, os.W_OK | os.X_OK, effective_ids=True):
                return f"{p.name} would have to be made in {folder}, which is {_owned(os.stat(folder))}"
            continue
        except OSError as e:
            if e.errno == errno.ELOOP and p == path:  # as ``connect`` names it (R98: the hook said 74)
                raise CatalogLinkLoop(path) from None
            return f"{p}: {e.strerror}"
        if not os.access(p, os.R_OK | os.W_OK, effective_ids=True):
            return f"{p} is {_owned(st)}"
    return None


def _owned(st: os.stat_result) -> str:
    name = user_name(st.st_uid)
    return f"owned by {name or f'uid {st.st_uid}'}, mode {stat.S_IMODE(st.st_mode):o}"


def _foreign(conn: sqlite3.Connection) -> bool:
    """Whether the open file is another program's database, asked before anything is written.

    SQLite opens any database file, and migrating one whose user_version is 0 added our tables
    to it (a browser's history, say) after switching it to WAL. A qbhook catalog at version 0
    has nothing in it (each migration step and its version are one transaction, ever since the
    first release); at any later version it has the first step's tables (``FIRST_TABLES``; no
    step drops one). A missing or zero-byte file has neither: a new catalog.
    """
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    return bool(names) if version == 0 else not FIRST_TABLES.issubset(names)


def still_current(conn: sqlite3.Connection) -> None:
    """Raise ``CatalogUpgraded`` if a newer qbhook migrated the catalog since this process opened
    it. One PRAGMA, no table read: ``serve``'s worker asks before each job and its sweeper before
    each sweep, since a process that lives for months outlives a package upgrade."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(migrations()):
        raise CatalogUpgraded(version)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to the newest version: every pending step in one transaction, so a new
    catalog costs one commit (one fsync at ``synchronous=FULL``) instead of one per step, and a
    crash mid-way leaves the version it started from, never a step half-applied."""
    steps = migrations()
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current > len(steps):
        raise CatalogMisplaced(
            f"catalog schema version {current} is newer than this qbhook understands ({len(steps)})",
            hint="upgrade qbhook, or point 'catalog:' at a new file",
        )
    if current == len(steps):
        return current
    with Tx(conn):  # keeps a failed step's own error (see Tx and rollback)
        # Re-read inside the write lock: another process may have migrated meanwhile.
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        for version in range(current, len(steps)):
            for stmt in _statements(steps[version]):
                conn.execute(stmt)
        if current < len(steps):
            conn.execute(f"PRAGMA user_version = {len(steps)}")
    return len(steps)


def _statements(script: str) -> list[str]:
    # executescript() would COMMIT our transaction; split on complete statements instead.
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf)
            buf = ""
    if buf.strip():
        out.append(buf)
    return out


class Tx:
    """``with Tx(conn):`` = BEGIN IMMEDIATE ... COMMIT, and ``rollback`` on any error, the
    COMMIT's own included: the connection always leaves the block outside a transaction.

    A refused COMMIT (a deferred foreign key, a full disk, an I/O error) leaves SQLite inside
    the transaction; left there, the connection's next BEGIN fails, and ``serve``'s worker,
    whose job queue shares the connection and refuses to start inside a transaction, failed
    every later pass until a restart, its job left 'running'. Costs no statement on success.
    """

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            rollback(self.conn)
            return False
        try:
            self.conn.execute("COMMIT")
        except BaseException:
            rollback(self.conn)
            raise
        return False


def rollback(conn: sqlite3.Connection) -> None:
    """End a failed transaction without hiding why it failed: the one home of that rule.

    After SQLITE_FULL or an I/O error SQLite may already have rolled the transaction back
    itself; a ROLLBACK then raises "cannot rollback - no transaction is active", which would
    replace "database or disk is full" (exit 74) with a plain catalog error (exit 1). So:
    only when a transaction is still open (``in_transaction`` asks SQLite, no statement), and
    a ROLLBACK that fails anyway gives way to the error the caller is handling.
    """
    if not conn.in_transaction:
        return
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass


@contextmanager
def reading(path):
    """SQLite errors while reading the catalog become one line naming the file."""
    try:
        yield
    except sqlite3.DatabaseError as e:
        raise catalog_problem(path, e) from None


def catalog_problem(path, err: sqlite3.DatabaseError, table: str | None = None) -> CatalogError:
    """One line naming the file (and table); which class and exit code is sqlite_failure's call."""
    if table:
        err = type(err)(f"{err} (table {table})")
    return sqlite_failure(err, path) or CatalogError(f"cannot read catalog {path}: {err}")


def check_tables(conn: sqlite3.Connection, path, tables: Iterable[str]) -> None:
    """``PRAGMA quick_check`` of each table; the first problem found is one line naming the file and table."""
    for table in tables:
        try:
            rows = conn.execute(f"PRAGMA quick_check({table})").fetchall()
        except sqlite3.DatabaseError as e:
            raise catalog_problem(path, e, table) from None
        if rows != [("ok",)]:
            # quick_check lists every problem, after a "*** in database main ***" banner: the first says enough.
            lines = [ln for r in rows for ln in str(r[0]).splitlines() if ln.strip() and not ln.startswith("***")]
            first = lines[0] if lines else "integrity check failed"
            more = f" (and {len(lines) - 1} more problem(s))" if len(lines) > 1 else ""
            raise catalog_problem(path, sqlite3.DatabaseError(first + more), table)
