"""The user's demotion policy: which seed-only groups they allow qbhook to demote, and when.

Pure: a group of torrent facts and the ``policy:`` settings in, a reason (or None) out. Both
the planner (to decide) and the snapshot (to skip hashing groups the policy holds back) ask
here, so fact gathering never has to import the decider.

``import_grace``: an automatic plan (``after_event``: `serve`'s, made for an event's job or by
its sweeper, no person asking) does not demote a group with a torrent completed less than that
ago. qBittorrent's "finished" hook fires seconds after completion, and a sweep may come as
soon, while an *arr polls its download client about once a minute and then imports
(hardlinks) the files: a demotion then would copy a payload that is about to gain a library
link. The reason starts as ``min_seeding_age``'s does, so every sweep re-plans the group
(``worker._UNSETTLED_STAYS``) and demotes it once the *arr had its chance. A person's `qbhook
plan`/`apply`/`sweep` is not held back. The snapshot's hashing asks the same question with the
same flag, so it reads nothing for a demotion this holds back.
"""

from __future__ import annotations

from qbhook.config import PolicyConfig
from qbhook.decide.facts import TorrentFact


def policy_blocks_demote(
    group: list[TorrentFact], policy: PolicyConfig, now: float, *, after_event: bool = False
) -> str | None:
    # With tag_no_external_links qbhook computes that tag's meaning itself (this group has no
    # outside links, or we would not be here); requiring it would only delay by one sweep.
    if policy.demote_require_tag and not policy.tag_no_external_links:
        untagged = [t.name for t in group if policy.demote_require_tag not in t.tags]
        if untagged:
            return f"tag {policy.demote_require_tag!r} missing on {', '.join(untagged[:3])}"
    if policy.demote_categories:
        bad = [t.name for t in group if t.category not in policy.demote_categories]
        if bad:
            return f"category not in {list(policy.demote_categories)} for {', '.join(bad[:3])}"
    if policy.min_seeding_age:
        young = [t.name for t in group if not t.completion_on or now - t.completion_on < policy.min_seeding_age]
        if young:
            return f"completed less than {policy.min_seeding_age:.0f}s ago: {', '.join(young[:3])}"
    if after_event and policy.import_grace:
        # A torrent with no completion time (0) finished long ago or never: not what this waits for.
        fresh = [t.name for t in group if t.completion_on and now - t.completion_on < policy.import_grace]
        if fresh:
            return (
                f"completed less than {policy.import_grace:.0f}s ago, waiting for the *arr import "
                f"(policy.import_grace): {', '.join(fresh[:3])}"
            )
    return None
