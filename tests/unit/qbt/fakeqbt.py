"""A qBittorrent Web API stand-in on top of ``responses``.

It answers the endpoints qbittorrent-api calls with the recorded bodies, and
filters ``torrents/info`` the way qBittorrent does (on the torrent id only, case
insensitive), so the adapter's hybrid-hash fallback is exercised for real.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import responses

from tests.unit.qbt import recorded as rec


def form(request) -> dict[str, str]:
    body = request.body or ""
    if isinstance(body, bytes):
        body = body.decode()
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


class FakeQbt:
    def __init__(
        self,
        rsps: responses.RequestsMock,
        base: str = "http://qbt.test:8080",
        api: str = rec.V4_API,
        version: str = rec.V4_VERSION,
        torrents: list[dict] | None = None,
        files: dict[str, list[dict]] | None = None,
        categories: dict | None = None,
        default_save_path: str = "/data/downloads",
        login_body: str = "Ok.",
        login_status: int = 200,
        preferences: dict | None = None,
    ):
        self.rsps = rsps
        self.base = base.rstrip("/")
        self.torrents = list(torrents if torrents is not None else [rec.V4_SHOW, rec.V4_HYBRID])
        self.files = files if files is not None else {rec.SHOW_ID: rec.V4_SHOW_FILES}
        self.categories = categories if categories is not None else rec.V4_CATEGORIES
        rsps.add(responses.POST, self.url("auth/login"), body=login_body, status=login_status)
        rsps.add(responses.POST, self.url("auth/logout"), body="")
        rsps.add(responses.GET, self.url("app/webapiVersion"), body=api)
        rsps.add(responses.GET, self.url("app/version"), body=version)
        rsps.add(responses.GET, self.url("app/defaultSavePath"), body=default_save_path)
        rsps.add(
            responses.GET, self.url("app/preferences"), json={"save_path": default_save_path, **(preferences or {})}
        )
        rsps.add(responses.POST, self.url("app/setPreferences"), body="")
        rsps.add_callback(responses.GET, self.url("torrents/categories"), callback=self._categories)
        rsps.add_callback(responses.POST, self.url("torrents/info"), callback=self._info)
        rsps.add_callback(responses.POST, self.url("torrents/files"), callback=self._files)
        for action in (
            "setLocation",
            "setDownloadPath",
            "setAutoManagement",
            "recheck",
            "setForceStart",
            "addTags",
            "removeTags",
        ):
            rsps.add(responses.POST, self.url(f"torrents/{action}"), body="")
        v5 = tuple(int(p) for p in api.split(".")[:2]) >= (2, 11)
        # the routes that do not exist in a version answer 404, as recorded on 4.5.2
        for name, exists in (("stop", v5), ("start", v5), ("pause", not v5), ("resume", not v5)):
            rsps.add(
                responses.POST,
                self.url(f"torrents/{name}"),
                body="" if exists else "Not Found",
                status=200 if exists else 404,
            )

    def url(self, endpoint: str) -> str:
        return f"{self.base}/api/v2/{endpoint}"

    def _categories(self, request):
        return 200, {}, json.dumps(self.categories)

    def _info(self, request):
        f = form(request)
        rows = self.torrents
        if "hashes" in f:
            ids = {h.lower() for h in f["hashes"].split("|")}
            rows = [t for t in rows if t["hash"].lower() in ids]
        if "category" in f:
            rows = [t for t in rows if t["category"] == f["category"]]
        if "tag" in f:
            rows = [t for t in rows if f["tag"] in {x.strip() for x in t["tags"].split(",")}]
        return 200, {}, json.dumps(rows)

    def _files(self, request):
        h = form(request).get("hash", "").lower()
        if not any(t["hash"] == h for t in self.torrents):
            return 404, {}, "Not Found"
        return 200, {}, json.dumps(self.files.get(h, []))

    # -- inspection -----------------------------------------------------

    def calls(self, endpoint: str) -> list[dict[str, str]]:
        """Form bodies of the requests made to one endpoint of this server."""
        target = self.url(endpoint)
        return [form(c.request) for c in self.rsps.calls if c.request.url.split("?")[0] == target]
