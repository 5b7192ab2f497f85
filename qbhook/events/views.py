"""The read-only views of ``qbhook serve``: the status page (``page``) and /metrics (``metrics``)."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint

from qbhook.config import Config
from qbhook.events import metrics, page
from qbhook.events.status import StatusSource, redactor, secrets_of


def views(cfg: Config, health: Callable | None = None) -> list[Blueprint]:
    """Both blueprints over one status source, with the config's secrets blanked in every answer.
    ``health``: the serving worker's report (``worker.WorkerHealth.report``), for the page."""
    source = StatusSource(cfg, health=health)
    redact = redactor(secrets_of(cfg))
    return [page.blueprint(source, redact), metrics.blueprint(source, redact)]
