"""Stage 2, deciding: live facts in, a plan out.

``snapshot`` gathers frozen facts (``facts``) from the catalog, the clients and a fresh stat of
every path it decides on; ``grouping`` forms payload groups; ``policy`` says what the user
allows; ``planner`` decides stay / demote / promote / converge (``converge``: same-pool
duplicates relinked onto one inode) / blocked per group and writes the steps
(``plan``); ``approved`` saves a plan for a person to approve and re-checks it before use;
``heap`` keeps the garbage collector's passes off a snapshot and a plan.
May import: house, ``clients``, ``catalog``. Fact gathering never imports the planner.
"""
