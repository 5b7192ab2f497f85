"""One error hierarchy, with messages written for the person running qbhook.

Every error qbhook raises on purpose derives from QbhookError and carries a
message that says what is wrong and, where possible, what to do about it. The
CLI prints ``str(err)`` and exits with ``err.exit_code``; anything else is a bug
and gets a traceback.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Every exit status qbhook uses, named once (sysexits.h numbers where one fits)."""

    OK = 0
    FAILURE = 1
    BAD_INPUT = 2  # usage / malformed event or argument
    GUARD_REFUSED = 3  # a safety guard refused (e.g. mass delete)
    QBT_UNREACHABLE = 4
    UNSAFE = 5  # an operation that could lose data was refused (a group failed safely)
    STALE = 6  # `apply --plan`: some saved groups were refused as stale (the others ran)
    ACTIONABLE = 10  # `plan`: there are groups to act on
    DATA_ERROR = 65  # EX_DATAERR: a saved plan file is not a usable plan
    # EX_NOINPUT: what a command only reads does not exist: the catalog, for a command that only
    # reads it (status, history, plan...), which creates none. Not 74: nothing is failing, and a
    # monitor can tell "not set up yet (or `catalog:` names the wrong file)" from a damaged disk.
    NO_INPUT = 66
    # EX_IOERR: something qbhook must read or write cannot be: the catalog (damaged, its disk
    # failing), the lock folder, standard output (a full disk behind `>file`).
    IO_ERROR = 74
    # EX_TEMPFAIL: a lock is held; or `serve` ended for a restart (a newer qbhook migrated its
    # catalog: CatalogUpgraded), which systemd's Restart=on-failure and docker's restart policy do.
    BUSY = 75
    CONFIG = 78  # EX_CONFIG
    INTERRUPTED = 130  # 128 + SIGINT: a shell's status for a command stopped by Ctrl-C


# The logger of transient failures a client adapter retries (qBittorrent, rTorrent). A one-shot
# command ends in one error line that says what the retries came to, so there they are heard
# only with -v (cli.app.main); `serve` logs them, since a daemon should say it is retrying
# (cli.events.serve). A name, not a logger: this module is imported by every command at start-up.
RETRY_LOG = "qbhook.retry"


class QbhookError(Exception):
    """Base class: an expected failure with a user-facing message."""

    exit_code: int = ExitCode.FAILURE

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def lines(self) -> list[str]:
        """The message, then the hint on a line of its own: the one layout of an error a person
        reads (``__str__``; ``qbhook.cli.app.echo_error``, which prints each line escaped). Text
        that quotes an error in a line of its own uses ``message``: ``str()`` would put the hint
        inside it, where a printer escapes its line break (``\x0a  hint:``)."""
        return [self.message, *([hint_line(self.hint)] if self.hint else [])]

    def __str__(self) -> str:
        return "\n".join(self.lines())


def hint_line(hint: str) -> str:
    """A hint as it is printed, below the line it is about."""
    return f"  hint: {hint}"


class ConfigError(QbhookError):
    """The configuration file is missing, malformed or inconsistent."""

    exit_code = ExitCode.CONFIG

    def __init__(self, key: str | None, message: str, *, hint: str | None = None):
        self.key = key
        prefix = f"config: {key}: " if key else "config: "
        # One line whatever the file holds: a key or value with a newline or other control
        # character (YAML allows them) is shown escaped, never split across lines.
        super().__init__(_one_line(prefix + message), hint=hint)


def _one_line(text: str) -> str:
    return "".join(c if c.isprintable() or c == " " else _escaped(c) for c in text)


def _escaped(c: str) -> str:
    # Every character str.isprintable refuses, as repr spells it (stricter than paths.shown: an
    # invisible character in a key is why it is unknown); a lone surrogate as paths.shown does.
    return shown_surrogate(c) if "\ud800" <= c <= "\udfff" else repr(c)[1:-1]


def shown_surrogate(c: str) -> str:
    """The one rule for a lone surrogate in text a person reads (``paths.shown``, a config
    error): U+DC80-U+DCFF is a byte that is not UTF-8, held so by ``os.fsdecode``, and is shown
    as that byte, ``\\xNN``, not as ``\\udcNN``, a code nobody typed; any other surrogate stands
    for no byte (a client's JSON may hold one: ``"\\ud800"`` is valid JSON) and is ``\\uNNNN``.
    Any other character is returned as it is. Here, below ``qbhook.paths``, so both use it."""
    o = ord(c)
    if 0xDC80 <= o <= 0xDCFF:
        return f"\\x{o - 0xDC00:02x}"
    return f"\\u{o:04x}" if 0xD800 <= o <= 0xDFFF else c


class CatalogError(QbhookError):
    """The catalog database cannot be opened, migrated or trusted."""


class CatalogMissing(CatalogError):
    """A command that only reads the catalog found none at its path: it makes none (an empty
    catalog there would answer "nothing" for pools that may simply not be mounted, or at a
    path mistyped in ``catalog:``); ``qbhook scan`` makes one."""

    exit_code = ExitCode.NO_INPUT

    def __init__(self, path):
        super().__init__(f"there is no catalog yet at {path} (`qbhook scan` makes one)")


class CatalogDamaged(CatalogError):
    """SQLite reported the catalog file unreadable or unwritable (corrupt page, full disk)."""

    exit_code = ExitCode.IO_ERROR


class CatalogUnwritable(CatalogError):
    """SQLite cannot open or write the catalog where it is (a read-only or full folder, a file
    the process may not write): the I/O exit code, 74, with no word of damage."""

    exit_code = ExitCode.IO_ERROR


class CatalogMisplaced(CatalogError):
    """``catalog:`` names what cannot be a catalog (a folder, a FIFO, /dev/null), or a catalog of a
    newer schema than this qbhook knows: the config, or the qbhook installed, must change (78)."""

    exit_code = ExitCode.CONFIG


class CatalogFolderMissing(CatalogMisplaced):
    """The folder ``catalog:`` puts the catalog in does not exist: the config names the wrong place,
    or a disk is not mounted, and qbhook makes no folder; or it cannot exist, a file being in the
    way (``why``: ``config.not_a_folder``'s words). A config problem (78) in every command, one
    line, the same as `config check`'s (``FIX``); it was a plain CatalogError, exit 1, and a file
    in the way 74 ("Not a directory") in a command that only reads."""

    FIX = "(create it: mkdir -p {})"

    def __init__(self, folder, why: str | None = None):
        super().__init__(f"catalog: folder {why or f'{folder} does not exist {self.FIX.format(folder)}'}")
        self.folder = folder


class CatalogLinkDangling(CatalogMisplaced):
    """``catalog:`` names a symbolic link to nothing: a command that only reads said "no catalog
    yet" (66), whose advice, `qbhook scan`, then failed to open it (74). The config, or the link,
    names the wrong place (78), in every command, in one line naming both."""

    def __init__(self, path, target: str):
        super().__init__(
            f"catalog {path} is a symbolic link to {target}, which does not exist "
            "(point 'catalog:' at the file itself, or fix the link)"
        )
        self.path = path


class CatalogLinkLoop(CatalogMisplaced):
    """``catalog:`` names a symbolic link that leads back to itself (a loop, or more links than
    the kernel follows): every command said "cannot open catalog: Too many levels of symbolic
    links" (74, a failure). The config, or the links, name the wrong place (78), one line."""

    def __init__(self, path):
        super().__init__(
            f"catalog {path} is a loop of symbolic links, or more than the kernel follows "
            "(point 'catalog:' at the file itself, or fix the links)"
        )
        self.path = path


class NotACatalog(CatalogMisplaced):
    """``catalog:`` names a file that is not a qbhook catalog: another program's SQLite database
    (a browser's history), or no SQLite file at all (no SQLite header). Refused before anything is
    written to it; the config names the wrong file (78), not a damaged catalog (74) nor a failure
    (1), which is what the two were. One line naming the file and what it is."""

    HINT = "point 'catalog:' in the config at a qbhook catalog or at a path where none exists yet"

    def __init__(self, path, what: str):
        super().__init__(f"catalog {path} is {what}", hint=self.HINT)
        self.path = path


class CatalogUpgraded(CatalogError):
    """A newer qbhook migrated the catalog under a running ``serve``, whose code would go on writing
    the old schema's way (R17: records moved to a table by a migration, written where no one reads
    them any more). ``serve`` takes no more work and exits, for its restart with the new code."""

    exit_code = ExitCode.BUSY

    def __init__(self, version: int):
        super().__init__(
            f"the catalog was upgraded to schema {version} by a newer qbhook; restart qbhook serve to run the new code"
        )
        self.version = version


class NotRegularFile(QbhookError):
    """A path names a FIFO, device, socket or folder where a regular file was needed."""

    exit_code = ExitCode.BAD_INPUT


class MassDeleteRefused(CatalogError):
    """A scan would mark too many paths deleted at once (pool not mounted?)."""

    exit_code = ExitCode.GUARD_REFUSED


class OutOfDescriptors(QbhookError):
    """The process ran out of file descriptors: a file it could not open would be left out
    of an answer that must be whole (a duplicate set missing a copy), so it stops instead."""


class FilesystemIdError(QbhookError):
    """A filesystem's stable identity cannot be determined."""


class PathMapError(QbhookError):
    """A path has no mapping between qBittorrent's view and the host's view."""


class PathOutsideRoots(QbhookError):
    """A path lies outside every configured pool / seeding root (``qbhook find /etc/passwd``,
    or a symlink in a pool that leads out of it): bad input, as a path that does not exist."""

    exit_code = ExitCode.BAD_INPUT


class QbtError(QbhookError):
    """qBittorrent could not be reached or refused a request.

    ``client`` names the client that failed for a person (``qBittorrent 'main'``, no URL), when
    the adapter that raised it says: serve's health names a client that does not answer by it
    (``events.worker.WorkerHealth``), and /healthz, which answers anyone, shows no URL."""

    exit_code = ExitCode.QBT_UNREACHABLE

    def __init__(self, message: str, *, hint: str | None = None, client: str | None = None):
        super().__init__(message, hint=hint)
        self.client = client


class QbtUnreachable(QbtError):
    """qBittorrent did not answer: not running, not up yet after a reboot, the network. A later
    try may pass, unlike a refusal (HTTP 403, a login failed), which it answered."""


class UnknownTorrent(QbtError):
    """No torrent with that hash exists in any configured qBittorrent.

    A QbtError, so the executor and worker handle it with other client answers, but the
    client did answer: a hash a user named that no client has is bad input (exit 2), not
    an unreachable client (exit 4)."""

    exit_code = ExitCode.BAD_INPUT


class UnknownGroup(QbhookError):
    """No payload group, or more than one, has the id (or the start of it) a person named with
    ``plan``/``apply --group``: bad input (exit 2), never an empty plan that exits 0."""

    exit_code = ExitCode.BAD_INPUT


class UnknownRun(QbhookError, KeyError):
    """The journal has no run with the id a person named (``resume --run``, ``history --run``):
    bad input (exit 2). Also a KeyError, what a lookup by id raises.

    The message is the one home of its wording; str() is the message, not KeyError's repr."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, run_id: int):
        super().__init__(f"there is no run {run_id} in the journal")

    def __str__(self) -> str:
        return self.message


class UnreadableRecord(QbtError):
    """A client reported a torrent or file record qbhook cannot read: a field of the wrong kind
    (``"size": null``), a hash that is not one, a name that is a path. One line naming the
    torrent and the field; what it means for a listing is the reader's to decide
    (``qbhook.clients.model``, ``qbhook.catalog.indexer``). The client answered: not exit 4."""

    exit_code = ExitCode.FAILURE


class UnreadableItems(UnreadableRecord):
    """A listing in which some items do not read (``UnreadableRecord`` each) and the rest do.

    Its message is the first item's one line (and how many more); ``rest`` is the listing of
    the items that read, ``items`` each unreadable item's id -> (its message, what of it reads:
    ``name``, ``save_path`` as the client spelled them). A reader that can keep one item as not
    known and go on with the others (the torrent index) takes them apart; every other reader
    refuses on it as on any unreadable record, so no item's files are left out unseen."""

    def __init__(self, client: str, rest: list, items: dict[str, tuple[str, dict[str, str]]]):
        first = next(iter(items.values()))[0]
        more = f" (and {len(items) - 1} more unreadable item(s))" if len(items) > 1 else ""
        super().__init__(first + more, client=client)
        self.rest = rest
        self.items = items


class RtorrentError(QbtError):
    """rTorrent refused a request (an XML-RPC fault other than an unknown hash).

    A QbtError for now: the executor and worker catch QbtError around client
    calls, so an rTorrent failure is handled exactly like a qBittorrent one.
    """


class RtorrentUnreachable(RtorrentError):
    """No answer from rTorrent's SCGI socket: not running, killed mid-call, wrong address."""


class RtorrentTimedOut(RtorrentUnreachable):
    """rTorrent did not answer a call in full within its deadline. Most often it is busy:
    single-threaded, its XML-RPC stalls while it hash-checks a large item or waits on a loaded
    disk. No answer, as the socket gone is: a later try may pass (the executor pauses a group
    on it and resumes later), and nothing may read it as "no torrents"."""


class LockBusy(QbhookError):
    """Another qbhook process holds the lock we need."""

    exit_code = ExitCode.BUSY


class LockFileError(QbhookError):
    """The lock folder or a lock file in it cannot be made, opened or written (a read-only or
    immutable folder, a regular file where the folder should be): the I/O exit code, 74."""

    exit_code = ExitCode.IO_ERROR


class LockFolderUnsafe(LockFileError):
    """The lock folder is another user's, or other users can write it: one could rename a lock
    file away and put their own at its name (two executors would then lock two files and run at
    once), or hold the locks and stop every qbhook. A setup problem, the config exit code (78):
    the folder (or ``lock_dir``) must change. One line naming the folder and why."""

    exit_code = ExitCode.CONFIG
    HINT = "the lock folder must be owned by qbhook's user (or root) and writable by no one else (chmod go-w it)"

    WHAT = "lock folder"

    def __init__(self, path, why: str, hint: str | None = None):
        super().__init__(f"refusing {self.WHAT} {path}: {why}", hint=hint or self.HINT)
        self.path = path


class CatalogFolderUnsafe(LockFolderUnsafe):
    """The catalog's folder holds qbhook's own lock folder (``<catalog>.locks``, no ``lock_dir``)
    and is another user's, or other users can write it: one could rename the lock folder away
    while an executor holds its lock, and the next executor would make a new one and run beside
    the first. The lock folder's rule and exit code (78), one line naming the folder and why."""

    WHAT = "catalog folder"
    HINT = (
        "the catalog's folder holds the lock folder: it must be owned by qbhook's user (or root) and "
        "writable by no one else (chmod go-w it), or set lock_dir to such a folder"
    )


class OutputError(QbhookError):
    """Standard output cannot be written (a full disk behind ``>file``, an I/O error); a reader
    that went away (EPIPE) is not one: the command ends quietly, as click does."""

    exit_code = ExitCode.IO_ERROR


class PortBusy(QbhookError):
    """The address ``serve`` should listen on is taken (another serve, another program)."""

    exit_code = ExitCode.BUSY


class UnsafeOperation(QbhookError):
    """A safety check refused an operation that could lose data.

    These are never retried blindly: the plan is stale or the world changed.
    """

    exit_code = ExitCode.UNSAFE


class UnfinishedRuns(UnsafeOperation):
    """The executor refuses to lay a new plan over runs it journaled that did not finish (a
    half-done group must be finished or rolled back by its own journal first). ``runs``: their ids."""

    def __init__(self, runs, why: str | None = None):
        self.runs = tuple(runs)
        super().__init__(
            f"run(s) {', '.join(map(str, self.runs))} did not finish" + (f": {why}" if why else ""),
            hint="run `qbhook resume` first (it finishes or rolls back what was in flight)",
        )


class VerificationFailed(UnsafeOperation):
    """Content, size or torrent state did not verify; nothing was deleted."""


class LastCopyKept(UnsafeOperation):
    """A held link is the last link of its inode and its copy to keep no longer verifies: it was not
    purged, and needs a person (it may be the only copy left of that content)."""


class HoldingGone(UnsafeOperation):
    """The holding folder a journaled link was held in is gone from its place, or another folder
    stands there (a writer of the folder above can rename it away, root's 0700 notwithstanding):
    the held link cannot be reached, so it is neither purged nor put back, and stays journaled."""

    def __init__(self, folder: str, why: str, *, links: int = 1):
        self.folder, self.why, self.links = folder, why, links
        super().__init__(
            f"holding folder gone or replaced: {folder}, {links} held link(s) not reached ({why})",
            hint="find the renamed folder (0700, owned by qbhook) and move it back; nothing was deleted",
        )


class ViewReleased(UnsafeOperation):
    """A leftover view is no longer the file qbhook made and left (another inode, linked since, its
    content changed): it is kept and no longer tracked. Any other refusal keeps it for the next run."""


class ViewUnproven(UnsafeOperation):
    """A leftover view's source (the copy whose content it repeats) is gone or no longer verifies:
    nothing proves the content lives elsewhere, so the view may be its last copy. Never removed;
    the view waits for a person (``move.leftovers``). ``source``: what the source was when
    refused (``fsops.source_seen``), None if gone."""

    def __init__(self, message: str, source: list[int] | None = None):
        super().__init__(message)
        self.source = source


class DirectHookRefused(QbhookError):
    """``setup qbittorrent --mode direct`` refused: qBittorrent would run ``qbhook hook`` as a
    user who cannot write the catalog (or which user cannot be told), and it ignores the hook's
    failure, so every event would be lost without a word."""

    exit_code = ExitCode.GUARD_REFUSED


class OrphansRefused(QbhookError):
    """``orphans`` refused: a client unreachable or empty, or far too much looks unreferenced."""

    exit_code = ExitCode.GUARD_REFUSED


class LibraryLinksUnseen(QbhookError):
    """The walk for the libraries' symbolic links (``catalog.library_links``) could not finish (an
    unreadable folder, or folders that kept being renamed under it): a library not seen is data
    deleted, so what reads the walk does not act on it. ``orphans`` refuses (``OrphansRefused``,
    the same line); a plan withholds its moves, each blocked naming this line
    (``planner.library_blockers``); the executor's walk before and during a group's deletes stops
    them (``Executor._check_no_library_symlink``)."""

    exit_code = ExitCode.GUARD_REFUSED


class BadRequest(QbhookError):
    """An incoming event (webhook, hook call) is malformed or unusable."""

    exit_code = ExitCode.BAD_INPUT


class BadAddress(QbhookError):
    """The address given on the command line (``serve --listen``) cannot be listened on."""

    exit_code = ExitCode.BAD_INPUT


class QueueError(QbhookError):
    """The event job queue refused an operation (unknown job, wrong state)."""


class QueueBusy(LockBusy):
    """The queue could not take the catalog's write lock within its deadline (another process's
    scan or sweep holds it): intake answers 503 at once rather than wait out the sender's timeout."""


class UnreadableJob(QueueError):
    """A queued row this qbhook cannot read (a new event kind written by another version's
    ``qbhook hook``, or a damaged row): the queue marks it dead and goes on (``JobQueue.claim``)."""


class NotADeadJob(QueueError):
    """``queue retry JOB_ID`` named a job that is unknown or not dead: bad input (exit 2), as an
    unknown run of ``history --run`` / ``resume --run`` is, not a failure of the queue."""

    exit_code = ExitCode.BAD_INPUT


class PlanFileError(QbhookError):
    """A saved plan file is unreadable, malformed, edited, of another version or for other pools."""

    exit_code = ExitCode.DATA_ERROR


class PlanFileUnwritable(QbhookError):
    """``plan --save`` cannot write its file (no such folder, no permission, a full disk): an
    I/O error (exit 74), as ExitCode says, not a plan file that is no usable plan (65)."""

    exit_code = ExitCode.IO_ERROR


class DemoUnavailable(QbhookError):
    """``qbhook demo`` cannot run here: qbhook was installed without its demo extra (a setup
    problem, 78). Its line was click's ("Error: ...", exit 1), unlike every other command's."""

    exit_code = ExitCode.CONFIG


class DemoNeedsRoot(QbhookError):
    """``qbhook demo`` run by another user than root (it mounts pools): run the wrong way, as a
    usage error is (2), and fixed on the command line (sudo), not in a config."""

    exit_code = ExitCode.BAD_INPUT


class ChildFailed(QbhookError):
    """The work in another process (a forked child, ``qbhook.forked``) failed; the run stops as a crash would."""

    exit_code = ExitCode.FAILURE
