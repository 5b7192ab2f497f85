"""Stage 3, moving: carry out a plan, journal first, act second, verify before delete.

``executor`` runs a plan's steps group by group and rolls a group back on failure; ``fsops``
does every file operation on verified directory descriptors inside the configured roots;
``journal`` records each step before it acts so ``resume`` can finish or undo after a crash;
``locks`` keeps one mover per catalog.
May import: house, ``clients``, ``catalog``, ``decide``.
"""
