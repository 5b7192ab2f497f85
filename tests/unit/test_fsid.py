import os

from qbhook.fsid import identify, parse_mountinfo

SAMPLE = (
    "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
    "40 22 0:45 / /stash rw shared:20 - fuse.zfs stash rw,user_id=0\n"
    "41 40 0:46 / /stash/data/media/library rw shared:21 - fuse.zfs stash/library rw\n"
    "42 22 0:47 / /mnt/with\\040space rw - tmpfs tmpfs rw\n"
    "43 22 0:45 /data/media /data/media rw - fuse.zfs stash rw\n"
)


def test_parse_mountinfo_unescapes_and_reads_fields():
    ms = parse_mountinfo(SAMPLE)
    assert [m.mountpoint for m in ms][3] == "/mnt/with space"
    assert ms[1].fstype == "fuse.zfs" and ms[1].source == "stash" and ms[1].dev == os.makedev(0, 45)
    assert ms[4].root == "/data/media"


def test_marker_fallback_is_stable(tmp_path):
    # tmp_path sits on the root fs here; whatever kind it gets, asking twice gives the same id.
    a = identify(tmp_path)
    b = identify(tmp_path / ".")
    assert a.fsid == b.fsid and a.dev == os.stat(tmp_path).st_dev
