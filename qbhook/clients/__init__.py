"""Torrent clients behind one port (``port.ClientPort``).

``qbhook.qbt`` holds the qBittorrent adapter (it predates this package and is
left where it is); adapters for other clients live here, next to the port they
implement, so the planner and executor can be written against the port alone.
"""
