"""``qbhook serve`` as a library: the intake server, the queue worker and the sweeper in one process.

Order matters and is the model of this module:

1. **The port opens first** (``listen``): intake answers, and queues durably, at once. A busy
   or unusable address is a one-line error (``PortBusy``, ``ConfigError``), never a traceback.
2. **The worker thread** then requeues jobs a killed process left running, finishes runs it
   left unfinished (this may wait for the executor lock), and only then takes new work. Any
   error while starting is retried with backoff (1 s doubling to 60 s): the thread never ends
   while the service runs, and ``/healthz`` says why it is not healthy meanwhile. A run that
   resume cannot finish yet (qBittorrent not up after a reboot, a rollback needing attention)
   blocks the executor: the worker resumes it again with the same backoff before it takes a
   job, and ``/healthz`` names it meanwhile (``worker.RunsGate``).
3. **The sweeper thread** reconciles every ``server.sweep_interval``; a failed sweep is
   logged and retried at the next interval. It is the safety net for events intake missed,
   so its failing is not only logged: the first failure in a row and the recovery are
   notified, and ``/healthz`` says so until a sweep succeeds. While the gate knows of a run that blocks the
   executor, the sweep scans and plans but applies nothing (the worker resumes the run).
   A **watch thread** tells the worker's own trouble (failing, stalled, stopped) once it has
   lasted ten minutes, and its end: a stalled worker cannot tell it (``alerts.WorkerWatch``).
4. **SIGTERM / SIGINT** stop intake (``serve``: the port closes, requests being answered get
   ``DRAIN_S``, every connection left is closed, idle keep-alive ones at once), let the
   worker's current step finish, and join the threads. So does a newer qbhook migrating the
   catalog, which the worker and the sweeper check before each job and each sweep
   (``db.still_current``): ``run`` then raises ``CatalogUpgraded`` (exit 75, for a restart).
"""

from __future__ import annotations

import errno
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable

from qbhook import notify
from qbhook.catalog.db import connect, still_current
from qbhook.catalog.store import Catalog
from qbhook.clients.port import ClientPort
from qbhook.config import Config
from qbhook.errors import BadAddress, CatalogUpgraded, ConfigError, PortBusy, QbhookError, UnfinishedRuns
from qbhook.events import alerts
from qbhook.events.auth import AuthConfig
from qbhook.events.queue import intake_queue
from qbhook.events.server import create_app, waitress_options
from qbhook.events.views import views
from qbhook.events.worker import RunsGate, Worker, WorkerHealth, sweep

log = logging.getLogger("qbhook.serve")

BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 60.0
JOIN_TIMEOUT_S = 600
JOIN_SLICE_S = 0.5  # how often a join without a deadline looks whether a signal came
WATCH_S = 30.0  # how often the worker's health is looked at for a notice (``watch_main``)
DRAIN_S = 5.0  # after a stop signal: how long requests already being answered get to finish


def listen(wsgi, host: str, port: int, max_body: int | None = None, *, given: str | None = None):
    """Bind the server socket now, or fail with one line naming the cause. ``max_body``: the
    longest request body waitress reads (``server.max_body``; ``waitress_options``). ``given``:
    the option that named ``host`` on the command line (``--listen``), blamed instead of the
    configuration's ``server.listen``, which then was not read."""
    import waitress

    def unusable(key: str, message: str, hint: str | None = None) -> QbhookError:
        if given is not None and key == "server.listen":
            return BadAddress(f"{given}: {message}", hint=hint and f"{given} must be {hint}")
        return ConfigError(key, message, hint=hint and f"server.listen (or --listen) must be {hint}")

    try:
        server = waitress.create_server(wsgi, host=host, port=port, **waitress_options(max_body=max_body))
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise PortBusy(
                f"cannot listen on {host}:{port}: the address is already in use",
                hint="another `qbhook serve`, or another program, holds it; stop it or set server.port / --port",
            ) from None
        raise unusable("server.listen", f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    except ValueError as e:
        # waitress's "Invalid host/port specified": the port is checked (1-65535) before it gets
        # here, from the file and from --port alike, so the host did not resolve.
        raise unusable(
            "server.listen",
            f"cannot listen on {host}:{port}: {e}",
            hint="an address or name of this machine, e.g. 127.0.0.1",
        ) from None
    except OverflowError as e:
        raise ConfigError("server.port", f"cannot listen on {host}:{port}: {e}") from None
    if not hasattr(server, "effective_port"):
        # A name of several addresses ("localhost": 127.0.0.1 and ::1): waitress binds each and
        # returns a server of servers, which ``serve`` and ``Service.port`` cannot run or stop.
        server.close()
        addresses = ", ".join(h for h, _ in server.effective_listen)
        raise unusable(
            "server.listen",
            f"cannot listen on {host}:{port}: {host} is {len(server.effective_listen)} addresses ({addresses}); "
            "bind to one address",
            hint="one address of this machine, e.g. " + server.effective_listen[0][0],
        )
    return server


def serve(server, stop: threading.Event, *, drain_s: float = DRAIN_S) -> None:
    """Run waitress's loop for ``server`` (``listen``'s) until ``stop`` is set; then close the
    port, give the requests being answered at most ``drain_s``, and close every connection left.

    Not waitress's ``run`` and ``close``: for one address its ``close`` closes only the listening
    socket, so its loop went on while any keep-alive connection stayed open (a metrics scraper,
    an *arr), and its idle-connection cleanup, run from the listening socket's ``readable``, never
    ran again: ``serve`` outlived SIGTERM until systemd's SIGKILL, in the middle of a step."""
    from waitress import wasyncore

    conns, adj = server._map, server.adj

    def turn(timeout: float) -> None:
        wasyncore.loop(timeout=timeout, map=conns, use_poll=adj.asyncore_use_poll, count=1)

    while not stop.is_set() and conns:
        turn(adj.asyncore_loop_timeout)  # 1 s: a stop is seen within it (a signal's handler only sets it)
    try:
        wasyncore.dispatcher.close(server)  # the port; the trigger stays (the task threads pull it)
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline and any(map(_answering, list(conns.values()))):
            turn(0.1)
    finally:
        for channel in list(conns.values()):
            if channel is not server.trigger:
                channel.close()
        server.task_dispatcher.shutdown(timeout=drain_s)
        # A task thread still running past that would pull the trigger: closing it then could
        # make that write land on whatever descriptor took its number.
        if not server.task_dispatcher.threads:
            wasyncore.close_all(conns, ignore_all=True)


def _answering(channel) -> bool:
    """A connection with a request queued, in the app, or its answer not yet sent."""
    return bool(getattr(channel, "requests", None) or getattr(channel, "total_outbufs_len", 0))


class Service:
    """One running ``serve``: built by ``open`` (port bound), run by ``run`` until a signal."""

    def __init__(
        self,
        cfg: Config,
        clients: Iterable[ClientPort],
        executor_for: Callable,
        *,
        host: str,
        port: int,
        sweeper: bool,
        host_given: str | None = None,
    ):
        self.cfg, self.clients, self.executor_for = cfg, clients, executor_for
        srv = cfg.server
        auth = AuthConfig.of_server(srv)
        self.health = WorkerHealth()
        self.gate = RunsGate(self.health, base_s=BACKOFF_START_S, cap_s=BACKOFF_MAX_S)  # worker's and sweeper's
        intake = intake_queue(cfg.catalog, max_pending=srv.max_pending)
        wsgi = create_app(
            enqueue=intake.enqueue,
            auth=auth,
            max_body=srv.max_body,
            health=self.health.report,
            views=views(cfg, self.health.report),
        )
        self.host = host
        self.server = listen(wsgi, host, port, srv.max_body, given=host_given)
        self.stop = threading.Event()
        self.upgraded: CatalogUpgraded | None = None  # set: ``run`` raises it once the threads end
        self.hurry = False  # a stop signal came: the threads get JOIN_TIMEOUT_S (``_join``)
        self.roots = [p.path for p in cfg.pools]  # .qbhook-fsid markers are written only at these
        self.sweeper = sweeper

    @property
    def port(self) -> int:
        return self.server.effective_port

    def _open_catalog(self) -> Catalog:
        # Opening migrates, which refuses a catalog newer than this code as a plain error (retried
        # for ever): one a newer qbhook migrated since serve started ends serve here too.
        probe = connect(self.cfg.catalog, readonly=True)
        try:
            still_current(probe)
        finally:
            probe.close()
        return Catalog.open(self.cfg.catalog, marker_roots=self.roots)

    def worker_main(self) -> None:
        delay = BACKOFF_START_S
        while not self.stop.is_set():
            cat = None
            try:
                cat = self._open_catalog()
                ex = self.executor_for(self.cfg, cat, self.clients)
                wk = Worker(self.cfg, cat, self.clients, executor=ex, health=self.health, gate=self.gate)
                # Jobs a killed server left running: back to pending now, not after resume's lock wait.
                self.health.beat("requeueing jobs of dead workers")
                wk.requeue_orphans()
                # Finish what a previous process left in flight before taking new work; what
                # resume cannot finish yet, the loop resumes again before it takes a job.
                self.health.busy("finishing runs a previous process left unfinished")
                self.gate.ready(ex, force=True)
                wk.loop(self.stop)
                return
            except CatalogUpgraded as e:
                self._upgraded(e)
                return
            except Exception as e:  # a full disk at start must not end the worker for good
                self.health.failed(f"starting the worker: {type(e).__name__}: {e}")
                log.exception("worker could not start; retrying in %.0f s", delay)
                if cat is not None:
                    cat.close()
                self.stop.wait(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)

    def sweeper_main(self) -> None:
        cat = None
        self.health.sweeper_started(self.cfg.server.sweep_interval)
        while not self.stop.wait(self.cfg.server.sweep_interval):
            try:
                cat = cat or self._open_catalog()
                still_current(cat.conn)
                # A known unfinished run would refuse the apply: plan only, the worker resumes it.
                ex = None if self.gate.runs else self.executor_for(self.cfg, cat, self.clients)
                if ex is None:
                    log.warning("sweep applies nothing: run(s) %s did not finish", ", ".join(map(str, self.gate.runs)))
                sweep(self.cfg, cat, self.clients, executor=ex, automatic=True)  # no one asked: import_grace
            except CatalogUpgraded as e:
                self._upgraded(e)
                return
            except UnfinishedRuns as e:  # the gate's to report (health names the runs), not a failing sweeper
                self.gate.refused(e)
                log.error("sweep failed: %s", e.message)
            except QbhookError as e:
                log.error("sweep failed: %s", e.message)
                self._sweep_failed(e.message)
            except Exception as e:  # a bug: its traceback is the log's
                log.exception("sweep failed")
                self._sweep_failed(f"{type(e).__name__}: {e}")
            else:
                failed = self.health.sweep_succeeded()
                if failed:
                    log.warning("sweep succeeded after %d failed sweep(s)", failed)
                    notify.emit("sweep_recovered", f"the sweeper works again, after {failed} failed sweep(s)")

    def watch_main(self) -> None:
        """Tell the worker's own trouble (failing, stalled, stopped) once it lasts, and its end
        (``alerts.WorkerWatch``): a stalled worker tells nothing itself, and /healthz is not watched
        unattended."""
        watch = alerts.WorkerWatch()
        while not self.stop.wait(WATCH_S):
            try:
                watch.check(self.health.report(), time.time())
            except Exception:  # a bug here must not end serve's watch for good
                log.exception("watching the worker's health failed")

    def _upgraded(self, e: CatalogUpgraded) -> None:
        # A newer qbhook migrated the catalog: this code must take no more work. The SIGTERM path
        # (intake closes, a job in progress finishes its step, the threads end); ``run`` then
        # raises it, so serve exits 75 and systemd or docker start the new code.
        if self.upgraded is None:
            self.upgraded = e
            log.error("%s; stopping", e.message)
        self.stop.set()

    def _sweep_failed(self, error: str) -> None:
        # Once when the sweeps start failing, not at every sweep; health says so until one succeeds.
        if self.health.sweep_failed(error) == 1:
            notify.emit(
                "sweep_failing",
                f"the sweep failed: {error} - it is tried again every {self.cfg.server.sweep_interval:.0f} s; "
                "changes the events missed are not caught meanwhile",
                "failure",
            )

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT, or until a newer qbhook migrates the catalog (then raise
        ``CatalogUpgraded``); either way let the current step finish and join the threads."""
        worker = threading.Thread(target=self.worker_main, name="worker", daemon=True)
        self.health.attach(worker)
        threads = [worker, threading.Thread(target=self.watch_main, name="watch", daemon=True)]
        if self.sweeper:
            threads.append(threading.Thread(target=self.sweeper_main, name="sweeper", daemon=True))
        for t in threads:
            t.start()

        def shutdown(signum, _frame):
            # Only the flags: the server's loop, in this thread, notices it and closes its sockets.
            log.warning("signal %s: finishing the current step, then stopping", signum)
            self.hurry = True
            self.stop.set()

        signal.signal(signal.SIGTERM, shutdown)
        signal.signal(signal.SIGINT, shutdown)
        try:
            serve(self.server, self.stop)
        finally:
            self.stop.set()
        self._join(threads)
        if self.upgraded is not None:
            raise self.upgraded

    def _join(self, threads: list[threading.Thread]) -> None:
        """Wait for the threads: JOIN_TIMEOUT_S after a signal. Stopped for an upgrade, nothing
        outside asks serve to hurry, so the job under way ends by itself rather than being cut
        off mid-step by this process's own exit (R20), until a signal comes after all (a
        ``systemctl restart``, Ctrl-C: R22), which starts the usual JOIN_TIMEOUT_S."""
        deadline = None
        for t in threads:
            while t.is_alive():
                if deadline is None and (self.hurry or self.upgraded is None):
                    deadline = time.monotonic() + JOIN_TIMEOUT_S
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return
                t.join(timeout=JOIN_SLICE_S if left is None else min(JOIN_SLICE_S, left))
