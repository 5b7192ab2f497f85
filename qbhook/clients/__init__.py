"""Torrent clients behind one port (``port.ClientPort``), beside the pipeline.

One adapter per client: ``qbt`` (qBittorrent's Web API, one module per remote namespace in
``qbt.client``) and ``rtorrent`` (XML-RPC over ``scgi``); ``registry.Clients`` finds a
client by instance name. The planner and executor are written against the port alone and its
records (``model``: ``TorrentInfo``, ``TorrentFile``, the hash and tag rules); only the registry
imports an adapter (``tests/unit/test_layers.py``).
May import: the house modules only (errors, paths, pathmap, config).
"""
