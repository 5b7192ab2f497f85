"""The sandbox: real zfs-fuse pools and real torrent clients for ``qbhook demo`` and the tests.

Beside the pipeline: it may import the house modules and ``clients`` only, and nothing in the
pipeline imports it (the CLI's ``demo`` command does).
"""
