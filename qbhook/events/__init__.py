"""Stage 4, events: what makes qbhook run without a person.

The webhook server (``server``, ``auth``, ``parse``) turns qBittorrent hooks, *arr webhooks and
cross-seed notifications into durable jobs (``queue``); the ``worker`` runs them and the
periodic sweep (scan, plan, apply); ``alerts`` reports what a sweep notices; ``status``,
``page``, ``metrics`` and ``views`` are the read-only status page and /metrics.
May import every stage below it.
"""
