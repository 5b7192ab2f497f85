"""What every fake rTorrent of these tests shares: XML-RPC's ``system.multicall`` answered call by
call, and a RtorrentClient wired to a fake instead of a socket (imported, like tests/unit/events')."""

from __future__ import annotations

import xmlrpc.client

from qbhook.clients.rtorrent import RtorrentClient
from qbhook.pathmap import PathMap


class FakeRtorrent:
    """A ``system.multicall`` is answered call by call through ``_one`` (a fault answers that call
    alone, as rTorrent does); any other method is ``_one``'s. Subclasses keep the items."""

    def call(self, method, *params):
        if method == "system.multicall":
            out = []
            for c in params[0]:
                try:
                    out.append([self._one(c["methodName"], *c["params"])])
                except xmlrpc.client.Fault as f:
                    out.append({"faultCode": f.faultCode, "faultString": f.faultString})
            return out
        return self._one(method, *params)

    def _one(self, method, *params):
        raise NotImplementedError


def wired(rpc, path_map: PathMap | None = None, *, name: str = "rt", **kw) -> RtorrentClient:
    """A RtorrentClient talking to the fake ``rpc``, never sleeping (``kw``: its other arguments)."""
    c = RtorrentClient(name, "/run/rt.sock", PathMap() if path_map is None else path_map, sleep=lambda s: None, **kw)
    c._rpc = rpc
    return c
