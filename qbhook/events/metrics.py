"""``/metrics`` for Prometheus, read from the catalog at scrape time.

A custom collector, not process-global counters: the journal, the queue and the state
table already hold every number, so a restart neither resets nor double-counts anything,
and several qbhook processes (serve, cron sweeps, CLI applies) all show up. Whole-history
sums are exposed as counters (they only grow while the journal keeps its runs); numbers
that go both ways (queue depth, runs by status, the last sweep's decisions) as gauges.

Served on the same port and behind the same authentication as the webhooks.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from qbhook.errors import QbhookError
from qbhook.events.page import unavailable
from qbhook.events.queue import STATES
from qbhook.events.status import StatusSource

RUN_STATUSES = ("running", "done", "failed", "interrupted")
GROUP_STATES = ("running", "done", "failed", "rolled_back")
DECISIONS = ("stay", "demote", "promote", "blocked", "skip")


class QbhookCollector(Collector):
    def __init__(self, source: StatusSource, redact: Callable[[str], str]):
        self.source = source
        self.redact = redact

    def collect(self) -> Iterator[Metric]:
        # Secrets are blanked in the label values (pool names, roles: the only free text), not
        # in the finished exposition: a numeric password "1000" made "1000.0" "********.0",
        # and Prometheus refused the whole scrape.
        for m in self._collect():
            m.samples = [s._replace(labels={k: self.redact(v) for k, v in s.labels.items()}) for s in m.samples]
            yield m

    def _collect(self) -> Iterator[Metric]:
        st = self.source.light()
        tot = self.source.totals()

        queue = GaugeMetricFamily("qbhook_queue_jobs", "Event jobs by state (dead = dead letters).", labels=["state"])
        for state in STATES:
            queue.add_metric([state], st.queue.get(state, 0))
        yield queue

        runs = GaugeMetricFamily("qbhook_runs", "Journaled runs by status.", labels=["status"])
        for status in sorted(set(RUN_STATUSES) | set(tot.runs_by_status)):
            runs.add_metric([status], tot.runs_by_status.get(status, 0))
        yield runs

        groups = GaugeMetricFamily("qbhook_groups", "Groups by their last journaled outcome.", labels=["state"])
        for state in sorted(set(GROUP_STATES) | set(tot.groups_by_state)):
            groups.add_metric([state], tot.groups_by_state.get(state, 0))
        yield groups

        yield CounterMetricFamily(
            "qbhook_copied_bytes", "Bytes copied between pools by all journaled runs.", value=tot.bytes_copied
        )
        yield CounterMetricFamily("qbhook_freed_bytes", "Bytes freed by all journaled runs.", value=tot.bytes_freed)
        yield GaugeMetricFamily(
            "qbhook_hashed_bytes", "Bytes of catalogued content with a valid BLAKE3 hash.", value=tot.hashed_bytes
        )
        yield GaugeMetricFamily(
            "qbhook_hashed_files", "Catalogued files with a valid BLAKE3 hash.", value=tot.hashed_files
        )
        yield GaugeMetricFamily(
            "qbhook_catalog_bytes", "Bytes of all catalogued files (each inode once).", value=tot.catalog_bytes
        )

        decisions = GaugeMetricFamily(
            "qbhook_last_sweep_groups", "Groups by decision in the last sweep's plan.", labels=["decision"]
        )
        sweep_at = GaugeMetricFamily("qbhook_last_sweep_timestamp_seconds", "When the last sweep started.")
        sweep_s = GaugeMetricFamily("qbhook_last_sweep_duration_seconds", "How long the last sweep took.")
        if st.sweep is not None:
            for d in sorted(set(DECISIONS) | set(st.sweep.decisions)):
                decisions.add_metric([d], st.sweep.decisions.get(d, 0))
            sweep_at.add_metric([], st.sweep.at)
            if st.sweep.seconds is not None:
                sweep_s.add_metric([], st.sweep.seconds)
        yield decisions
        yield sweep_at
        yield sweep_s

        size = GaugeMetricFamily("qbhook_pool_size_bytes", "Pool size (statvfs).", labels=["pool", "role"])
        free = GaugeMetricFamily("qbhook_pool_free_bytes", "Pool space available (statvfs).", labels=["pool", "role"])
        for p in st.pools:
            if p.size is not None and p.free is not None:
                size.add_metric([p.name, p.role], p.size)
                free.add_metric([p.name, p.role], p.free)
        yield size
        yield free


def blueprint(source: StatusSource, redact) -> Blueprint:
    bp = Blueprint("metrics", __name__)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QbhookCollector(source, redact))

    @bp.get("/metrics")
    def metrics() -> Response:
        try:
            text = generate_latest(registry).decode("utf-8")
        except (QbhookError, sqlite3.Error) as e:
            return unavailable(e, redact)
        return Response(text, status=200, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})

    return bp
