"""What a torrent client accepts as a tag or a category name: one home for each rule.

Tags: qBittorrent sends a torrent's tags joined by ", " and splits the tags it is given on
','; it trims the spaces around each (``Session::isValidTag``, 5.x ``Tag::isValid``).
rTorrent's ``d.custom=qbhook_tags`` is written and read the same way (``clients.model``).
So a tag holding ',' is two tags, and one with spaces around it is another tag once the
client has it: the settings naming a tag (``policy.relocated_tag``, ``demote_require_tag``)
would never match a torrent's tags, and the adapters' ``check_tags`` refuse to send one.
A control character is refused too: no client shows it, no person can type it in a tag.

Categories: qBittorrent refuses a name with '\\', one starting or ending with '/' and one
holding '//' (``Session::isValidCategoryName``: the '/' separates subcategories). Only that:
ruTorrent's labels (rTorrent's categories) have no such rule, so the caller decides whether
the name is one only qBittorrent would hold.
"""

from __future__ import annotations

import unicodedata

__all__ = ["category_problem", "tag_problem"]


def tag_problem(tag: str) -> str | None:
    """Why ``tag`` is no tag as written (a clause for a message), or None."""
    if not tag.strip():
        return "a tag cannot be empty"
    if "," in tag:
        return "a tag cannot contain ',' (the clients split tags on it)"
    if any(unicodedata.category(c) == "Cc" for c in tag):
        return "a tag cannot contain a control character"
    if tag != tag.strip():
        return "a tag cannot start or end with spaces (the clients trim them)"
    return None


def category_problem(name: str) -> str | None:
    """Why qBittorrent would refuse ``name`` as a category (a clause for a message), or None."""
    if "\\" in name:
        return "a qBittorrent category cannot contain '\\'"
    if name.startswith("/") or name.endswith("/"):
        return "a qBittorrent category cannot start or end with '/'"
    if "//" in name:
        return "a qBittorrent category cannot contain '//'"
    return None
