"""A user named in a message, from a uid: the one home of that wording.

A refusal that is about who may write (the catalog, the direct hook) names the user a person
must run qbhook as, or let write: by the passwd name a person knows and by the uid, which is
what chown takes and what a container's user maps to when the host calls it another name
(``user qbittorrent (uid 999)``). A uid with no passwd entry (a container's own, a deleted
user's) is named by its number alone (``uid 64123``), never an error: the message is already
about something else going wrong.
"""

from __future__ import annotations


def user_name(uid: int) -> str | None:
    """The passwd name of ``uid``, or None where it has none."""
    import pwd  # here: only a refusal names a user

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def named_user(uid: int) -> str:
    """``uid`` as a message names a user: ``user NAME (uid N)``, or ``uid N`` with no name."""
    name = user_name(uid)
    return f"user {name} (uid {uid})" if name else f"uid {uid}"
