"""How a message names a user from a uid (``qbhook.users``): one wording for the catalog's refusals
and the direct hook's, by name and uid, or by uid alone where passwd has no name."""

from __future__ import annotations

import os
import pwd
import sqlite3

from qbhook.catalog import db
from qbhook.users import named_user, user_name


def _unnamed_uid() -> int:
    """A uid passwd has no entry for, on whatever machine runs the test."""
    known = {u.pw_uid for u in pwd.getpwall()}
    return next(uid for uid in range(64123, 2**31) if uid not in known)


def test_a_uid_passwd_names_is_named_by_name_and_uid():
    uid = os.getuid()
    name = pwd.getpwuid(uid).pw_name
    assert user_name(uid) == name
    assert named_user(uid) == f"user {name} (uid {uid})"


def test_a_uid_with_no_passwd_entry_is_named_by_its_number_alone():
    uid = _unnamed_uid()
    assert user_name(uid) is None
    assert named_user(uid) == f"uid {uid}"


def test_the_catalogs_refusal_names_the_user_as_the_hooks_does(tmp_path, monkeypatch):
    """The catalog said ``user root`` where the hook said ``user root (uid 0)``: one wording now."""
    monkeypatch.setattr(db, "unwritable", lambda path: "its -shm is owned by someone else")
    err = db.sqlite_failure(sqlite3.OperationalError("attempt to write a readonly database"), tmp_path / "c.sqlite")
    assert err is not None
    assert err.hint == (
        f"let {named_user(os.geteuid())} write it (chown, chmod u+w) or run qbhook as the user that owns it"
    )
    assert f"(uid {os.geteuid()})" in err.hint
