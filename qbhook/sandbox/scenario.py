"""A realistic home-server layout on two real pools with real torrents in a real qBittorrent.

Used by the integration tests and by ``qbhook demo``. Each case is small (a few
MiB) so the whole thing builds in seconds, but shaped like the real thing:
libraries hardlinked into seed data, cross-seed siblings under other root
names, a payload already duplicated on the cold pool, an *arr-style copy of a
cold-pool file into the library. ``rtorrent_cases`` adds a real rTorrent beside
qBittorrent: one payload seeded by both clients (a mixed group) and one seeded
by rTorrent alone.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from qbhook.sandbox.torrents import (
    add_and_wait_seeding,
    infohash,
    make_torrent,
    write_payload,
)

SEEDING = "data/media/torrents/seeding"
MOVIES = "data/media/movies"
NOHL = "~noHL"
MiB = 1024 * 1024


@dataclass
class Scenario:
    stash: Path
    pool: Path
    torrent_dir: Path
    hashes: dict[str, list[str]] = field(default_factory=dict)  # case -> torrent hashes
    library: dict[str, Path] = field(default_factory=dict)  # case -> library file

    @property
    def stash_seed(self) -> Path:
        return self.stash / SEEDING

    @property
    def pool_seed(self) -> Path:
        return self.pool / SEEDING

    def config_dict(self, catalog: Path, qbt_url: str, password: str = "adminadmin", **policy) -> dict:
        return {
            "catalog": str(catalog),
            "pools": {
                "stash": {"path": str(self.stash), "role": "primary"},
                "pool": {"path": str(self.pool), "role": "cold"},
            },
            "seeding_roots": {"stash": str(self.stash_seed), "pool": str(self.pool_seed)},
            "qbittorrent": {"url": qbt_url, "username": "admin", "password": password},
            "scan": {"settle_seconds": 0},
            # No *arr polls these fabricated torrents, seeding seconds after they are added: an
            # event's plan need not wait for an import (policy.import_grace).
            "policy": {"demote_require_tag": NOHL, "import_grace": 0, **policy},
        }

    def _add(self, client, case: str, path: Path, save: Path, *, tags=(NOHL,), category=None, name=None) -> str:
        data = make_torrent(
            path,
            self.torrent_dir / f"{case}-{len(self.hashes.get(case, []))}.torrent",
            name=name,
            piece_size=256 * 1024,
        )
        h = add_and_wait_seeding(client, data, save, category=category, tags=list(tags))
        self.hashes.setdefault(case, []).append(h)
        return h

    # ------------------------------------------------------------------ cases
    def movie_in_library(self, client) -> None:
        """Seeded movie hardlinked into the library: must stay on stash."""
        save = self.stash_seed / "movies"
        write_payload(save, {"Movie.A.2020.1080p/movie.a.mkv": 3 * MiB, "Movie.A.2020.1080p/movie.a.nfo": 2000}, seed=1)
        lib = self.stash / MOVIES / "Movie A (2020)" / "Movie A (2020).mkv"
        lib.parent.mkdir(parents=True, exist_ok=True)
        os.link(save / "Movie.A.2020.1080p/movie.a.mkv", lib)
        self.library["movie_in_library"] = lib
        self._add(client, "movie_in_library", save / "Movie.A.2020.1080p", save, tags=())

    def seed_only_with_cross_seeds(self, client) -> None:
        """A seed-only season plus two cross-seed siblings under other root names: one group, one copy."""
        save = self.stash_seed / "tv"
        files = {"Show.S01.1080p/Show.S01E01.mkv": 2 * MiB, "Show.S01.1080p/Show.S01E02.mkv": 2 * MiB}
        write_payload(save, files, seed=2)
        self._add(client, "siblings", save / "Show.S01.1080p", save)
        for tracker, root in (("TrackerA", "Show.S01.REPACK.1080p"), ("TrackerB", "Show Season 1 (1080p)")):
            xs = self.stash_seed / "cross-seed" / tracker
            for rel in files:
                dst = xs / root / Path(rel).name
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.link(save / rel, dst)
            self._add(client, "siblings", xs / root, xs, category="cross-seed")

    def already_on_pool(self, client) -> None:
        """Seed-only on stash, identical content already on pool (other name): demote, zero copy."""
        save = self.stash_seed / "movies"
        write_payload(save, {"Doc.B.2019/doc.b.mkv": 3 * MiB}, seed=3)
        self._add(client, "already_on_pool", save / "Doc.B.2019", save)
        other = self.pool_seed / "movies" / "Doc.B.2019.PROPER"
        other.mkdir(parents=True, exist_ok=True)
        shutil.copy2(save / "Doc.B.2019/doc.b.mkv", other / "doc.b.proper.mkv")
        self._add(client, "already_on_pool_other", other, self.pool_seed / "movies", tags=())

    def arr_copied_into_library(self, client) -> None:
        """A pool torrent whose file an *arr import copied into the stash library: promote, zero copy."""
        save = self.pool_seed / "movies"
        write_payload(save, {"Film.C.2021/film.c.mkv": 3 * MiB}, seed=4)
        self._add(client, "arr_copy", save / "Film.C.2021", save, tags=())
        lib = self.stash / MOVIES / "Film C (2021)" / "Film C (2021).mkv"
        lib.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(save / "Film.C.2021/film.c.mkv", lib)
        self.library["arr_copy"] = lib

    def conflict_at_destination(self, client) -> None:
        """Seed-only on stash, but different data already sits at its pool path: blocked."""
        save = self.stash_seed / "movies"
        write_payload(save, {"Clash.D/clash.mkv": 1 * MiB}, seed=5)
        self._add(client, "conflict", save / "Clash.D", save)
        write_payload(self.pool_seed / "movies", {"Clash.D/clash.mkv": 1 * MiB}, seed=99)

    def outside_seeding_root(self, client) -> None:
        save = self.stash / "data/media/torrents/downloads"
        write_payload(save, {"Odd.E/odd.bin": 512 * 1024}, seed=6)
        self._add(client, "outside", save / "Odd.E", save)

    # ------------------------------------------------------------------ rTorrent beside qBittorrent
    def rtorrent_cases(self, client, rt) -> None:
        """``rt``: a running ``qbhook.sandbox.rtorrent.RtorrentInstance`` (host paths, no path_map).

        * mixed: a seed-only season seeded by qBittorrent, its cross-seed (another root
          name, hardlinks) seeded by rTorrent: one group, both clients relocated;
        * rt_only: a seed-only movie seeded by rTorrent alone.
        Both carry ``~noHL`` and demote.
        """
        save = self.stash_seed / "tv"
        files = {"Mixed.S02.720p/Mixed.S02E01.mkv": 2 * MiB, "Mixed.S02.720p/Mixed.S02E02.mkv": 1 * MiB}
        write_payload(save, files, seed=7)
        self._add(client, "mixed", save / "Mixed.S02.720p", save)
        xs = self.stash_seed / "cross-seed" / "TrackerR"
        for rel in files:
            dst = xs / "Mixed S02 (WEB)" / Path(rel).name
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.link(save / rel, dst)
        self._add_rt(rt, "mixed", xs / "Mixed S02 (WEB)", xs)
        movies = self.stash_seed / "movies"
        write_payload(movies, {"Indie.F.2018/indie.f.mkv": 2 * MiB, "Indie.F.2018/indie.f.nfo": 900}, seed=8)
        self._add_rt(rt, "rt_only", movies / "Indie.F.2018", movies)

    def _add_rt(self, rt, case: str, path: Path, save: Path, *, tags=(NOHL,), timeout: float = 60) -> str:
        import time

        from qbhook.clients.rtorrent import RtorrentClient
        from qbhook.sandbox.rtorrent import load_torrent

        data = make_torrent(
            path, self.torrent_dir / f"{case}-rt-{len(self.hashes.get(case, []))}.torrent", piece_size=256 * 1024
        )
        h = infohash(data)
        load_torrent(rt.rpc(), data, str(save))  # rTorrent hashes the data on load
        c = RtorrentClient("rt", rt.address)
        deadline = time.monotonic() + timeout
        # load.raw_start returns before rTorrent lists the item on a loaded machine, so
        # "not listed yet" is waited out like "still hashing", up to the same deadline.
        while not ((t := c.find(h)) is not None and t.is_complete and not t.is_checking):
            if time.monotonic() > deadline:
                seen = "not listed" if t is None else f"{t.state} {t.progress:.0%}"
                raise TimeoutError(f"rTorrent item {h} not complete after {timeout}s: {seen}")
            time.sleep(0.1)
        if tags:
            c.add_tags(h, list(tags))
        self.hashes.setdefault(case, []).append(h)
        return h

    def build_all(self, client) -> Scenario:
        for d in (self.stash_seed, self.pool_seed, self.stash / MOVIES):
            d.mkdir(parents=True, exist_ok=True)
        self.movie_in_library(client)
        self.seed_only_with_cross_seeds(client)
        self.already_on_pool(client)
        self.arr_copied_into_library(client)
        self.conflict_at_destination(client)
        self.outside_seeding_root(client)
        return self
