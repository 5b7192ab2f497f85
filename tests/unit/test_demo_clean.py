"""`qbhook demo` re-runs over a sandbox whose mounts died (zfs-fuse restarted while it was up).

Found by running scripts/demo over the previous session's sandbox: a dead FUSE mount inside it
made the rebuild's mkdir raise a traceback ("File exists").
"""

from __future__ import annotations

import pytest

from qbhook.errors import QbhookError
from qbhook.sandbox import demo


def test_mounts_below_the_sandbox_are_listed_deepest_first_and_unescaped(tmp_path):
    base = tmp_path / "qbhook demo"
    mounts = tmp_path / "mounts"
    esc = str(base).replace(" ", "\\040")
    mounts.write_text(
        f"qbtstash {esc}/bed/stash fuse.zfs rw 0 0\n"
        f"qbtstash/lib {esc}/bed/stash/data/media/library fuse.zfs rw 0 0\n"
        f"tmpfs {esc}2/other tmpfs rw 0 0\n"  # a sibling folder that shares the prefix: not ours
        "/dev/sda1 / ext4 rw 0 0\n"
    )
    assert demo._mounts_below(base, str(mounts)) == [
        f"{base}/bed/stash/data/media/library",
        f"{base}/bed/stash",
    ]


def test_a_sandbox_that_cannot_be_removed_is_a_one_line_error_not_a_traceback(tmp_path, monkeypatch):
    base = tmp_path / "sandbox"
    base.mkdir()
    monkeypatch.setattr(demo.shutil, "rmtree", lambda *a, **k: None)  # as a dead mount makes it fail
    monkeypatch.setattr(demo, "_mounts_below", lambda b: [])
    with pytest.raises(QbhookError, match="cannot clear the demo sandbox"):
        demo.clean(base)


def test_clean_removes_a_plain_sandbox(tmp_path):
    base = tmp_path / "sandbox"
    (base / "bed").mkdir(parents=True)
    demo.clean(base)
    assert not base.exists()
