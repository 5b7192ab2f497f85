"""Issue 9, the race proof: folders swapped for symlinks while fsops works must never take an act outside the roots.

Two swapper processes exchange, in a tight loop with renameat2(RENAME_EXCHANGE) (atomic: both
names always exist), a working folder of the seeding root and qbhook's holding folder with
symlinks that lead to folders outside the root. Meanwhile this process runs safe_unlink
(plain and into holding), purge_holding, link_into, make_empty and prune_empty_dirs on entries below the
swapped folders, over and over. The outside folders hold sentinel files with exactly the
names those operations target: a single redirected act would delete, replace or add one.
Afterwards every sentinel must be there, unchanged, and nothing else.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import multiprocessing as mp
import os
import time
from pathlib import Path

import pytest

from qbhook.catalog.store import Catalog
from qbhook.errors import UnsafeOperation, VerificationFailed
from qbhook.move import fsops
from tests.unit import test_fsops as _fx

tmpfs = _fx.tmpfs  # pytest fixture: a fresh tmpfs per call, unmounted afterwards

ATTEMPTS = 100_000
BUDGET_S = 55.0
# The least that counts as having raced: how many attempts fit the budget is the machine's load, not
# a property of the code (a CI beside the integration tier made ~80,000; a timed test is no test of
# speed here: benchmarks are). Each attempt still has to stay inside the roots.
MIN_ATTEMPTS = 20_000
NAMES = [f"f{i}.bin" for i in range(8)]
RENAME_EXCHANGE = 2
AT_FDCWD = -100
# What a refusal in this race may say; anything else is a bug and fails the test.
REFUSALS = (
    "is a symlink",
    "is changing",
    "changed during",
    "no longer the planned file",
    "links but only",
    "already holds another file",
    "keeps changing",
)


def _renameat2():
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is not None:
        fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        return fn

    def syscall(olddirfd, old, newdirfd, new, flags):  # glibc < 2.28: the raw syscall (316 on x86_64)
        return libc.syscall(316, olddirfd, old, newdirfd, new, flags)

    return syscall


def _swapper(a: bytes, b: bytes, stop, counter) -> None:
    exchange = _renameat2()
    n = 0
    while not stop.is_set():
        for _ in range(200):
            if exchange(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) == 0:
                n += 1
        with counter.get_lock():
            counter.value += n
        n = 0


def _tree(path) -> dict[str, bytes]:
    out = {}
    for dirpath, dirs, files in os.walk(path):
        for n in dirs:
            out[os.path.join(dirpath, n)] = b"<dir>"
        for n in files:
            p = os.path.join(dirpath, n)
            out[p] = b"<link>" if os.path.islink(p) else Path(p).read_bytes()
    return out


@pytest.mark.slow
def test_swapping_folders_for_symlinks_never_lets_an_act_escape_the_roots(tmpfs, tmp_path):
    base = tmpfs("race", size="64M")
    seed, keep_root, outside = base / "seed", base / "keep", base / "outside"
    for d in (seed / "D", seed / "K", outside / "D", outside / "H" / "1" / "D"):
        d.mkdir(parents=True)
    # Sentinels: every name any operation below could reach if it were redirected.
    for d in (outside / "D", outside / "H" / "1" / "D"):
        for n in [*NAMES, *(f"v{n}" for n in NAMES), *(f"e{n}" for n in NAMES)]:
            (d / n).write_bytes(b"sentinel " + n.encode())
            (d / f"p{n}" / "q").mkdir(parents=True)  # empty folders prune_empty_dirs could reach
    before = _tree(outside)
    keep_root.mkdir()
    for n in NAMES:
        (seed / "K" / n).write_bytes(b"")  # the verified copies to keep
    os.symlink(outside / "D", seed / "L")  # swapped with seed/D
    hold = seed / fsops.HOLDING_DIR
    hold.mkdir(mode=0o700)
    os.symlink(outside / "H", seed / "HL")  # swapped with seed/.qbhook-holding
    cat = Catalog.open(tmp_path / "cat.sqlite")
    fsid = cat.fsid(cat.fs_for_path(seed))
    roots = [seed]
    # The real D, however it is named at the moment: files are replenished through this descriptor.
    real_d = os.open(seed / "D", os.O_RDONLY | os.O_DIRECTORY)

    ctx = mp.get_context("fork")
    stop, swaps = ctx.Event(), ctx.Value("q", 0)
    procs = [
        ctx.Process(target=_swapper, args=(os.fsencode(seed / "D"), os.fsencode(seed / "L"), stop, swaps)),
        ctx.Process(target=_swapper, args=(os.fsencode(hold), os.fsencode(seed / "HL"), stop, swaps)),
    ]
    for p in procs:
        p.start()
    counts = {"done": 0, "refused": 0, "missing": 0, "pruned": 0}
    attempts = 0
    held: list[fsops.HeldLink] = []
    t0 = time.monotonic()
    try:
        while attempts < ATTEMPTS and time.monotonic() - t0 < BUDGET_S:
            i = attempts
            n = NAMES[i % len(NAMES)]
            op = (i // len(NAMES)) % 6
            attempts += 1
            try:
                if op in (0, 1):
                    # (Re)create the doomed file inside the real D, then try to delete it via the path.
                    try:
                        os.close(os.open(n, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=real_d))
                    except FileExistsError:
                        pass
                    ino = os.stat(n, dir_fd=real_d).st_ino
                    res = fsops.safe_unlink(
                        f"{seed}/D/{n}",
                        fsid=fsid,
                        ino=ino,
                        size=0,
                        keep_path=f"{seed}/K/{n}",
                        seeding_links=[f"{seed}/D/{n}"],
                        seeding_roots=roots,
                        catalog=cat,
                        hold_run="1" if op == 1 else None,
                    )
                    if res.get("held_at"):
                        held.append(fsops.HeldLink(res["held_at"], 0.0, ino, keep_path=f"{seed}/K/{n}", size=0))
                elif op == 2:
                    # As the executor does with the journal: an entry once purged is forgotten.
                    fsops.purge_holding(roots, 0, held=list(held), now=1.0, on_purged=held.remove)
                elif op == 3:
                    fsops.link_into(f"{seed}/K/{n}", f"{seed}/D/v{n}", roots=roots, size=0)
                    os.unlink(f"v{n}", dir_fd=real_d)  # ready for the next round
                elif op == 4:
                    fsops.make_empty(f"{seed}/D/e{n}", roots=roots)
                    os.unlink(f"e{n}", dir_fd=real_d)
                else:
                    os.makedirs(f"/proc/self/fd/{real_d}/p{n}/q", exist_ok=True)
                    counts["pruned"] += bool(fsops.prune_empty_dirs(f"{seed}/D/p{n}/q", f"{seed}/D", roots=roots))
                counts["done"] += 1
            except UnsafeOperation as e:
                counts["refused"] += 1
                if not any(w in str(e) for w in REFUSALS):
                    raise
            except (FileNotFoundError, VerificationFailed):
                counts["missing"] += 1
            except OSError as e:
                if e.errno not in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                    raise
                counts["missing"] += 1
    finally:
        stop.set()
        for p in procs:
            p.join(10)
        os.close(real_d)
        cat.close()
    elapsed = time.monotonic() - t0

    print(f"race: {attempts} attempts in {elapsed:.1f} s, {swaps.value} swaps, {counts}")
    assert _tree(outside) == before, "an operation reached outside the roots"
    assert attempts >= MIN_ATTEMPTS, f"only {attempts} attempts in {elapsed:.0f} s"
    # The race was live (some acts met a symlink) and the operations did real work.
    assert swaps.value > 1000 and counts["refused"] > 100 and counts["done"] > 100 and counts["pruned"] > 10, counts
