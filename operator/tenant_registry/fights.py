"""The fights with other writers: our writes that restore what another writer undid, counted
per (tenant, namespace) and object within a window, and when to give up on the object or hold
off after giving up (the planner reads `given_up` and `held_off`, desired.PairInput). In
memory only: a restart starts the count anew.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tenant_registry.desired import (
    SECRET,
    SERVICE_ACCOUNT,
    DeleteCopy,
    Operation,
    PatchServiceAccount,
    fight_key,
)
from tenant_registry.scheduler import Key

Fight = tuple[str, str, str]  # desired.fight_key()


class FightLog:
    """Our writes that restore what another writer undid, per (tenant, namespace) and
    fight_key(): counted from the operator's own writes (the first write of a thing is no
    restore), so a writer that also puts back our annotations, or replaces the whole object,
    is counted all the same. Writes older than the window are forgotten: unrelated removals
    weeks apart are no fight. Giving up on a ServiceAccount entry twice within the window
    holds off: the record of it is not written again, nor the entry re-added, until the window
    has passed (a manager replacing the whole ServiceAccount wipes the record each time)."""

    def __init__(
        self, limit: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._writes: dict[Key, dict[Fight, tuple[float, ...]]] = {}
        self._give_ups: dict[Key, dict[Fight, tuple[float, ...]]] = {}

    def _add(
        self, table: dict[Key, dict[Fight, tuple[float, ...]]], pair: Key, what: Fight
    ) -> None:
        now = self.clock()
        held = table.setdefault(pair, {})
        held[what] = (*(t for t in held.get(what, ()) if now - t < self.window), now)

    def wrote(self, pair: Key, what: Fight) -> None:
        """We wrote our content or entry (any write after the first within the window is a
        restore)."""
        self._add(self._writes, pair, what)

    def written(self, pair: Key, op: Operation) -> None:
        """Book-keeping after one successful write of ours in the pair's namespace."""
        if isinstance(op, PatchServiceAccount):
            what = fight_key(SERVICE_ACCOUNT, op.name, op.uid)
            if op.contest:
                # Recorded on the ServiceAccount now: the annotation is the state from here on,
                # so deleting it lets the operator try again (held off if given up twice).
                self.gave_up(pair, what)
            elif op.released and not op.added:
                self.clear(pair, what)
            elif op.added:
                if op.released:
                    self.clear(pair, what)  # a new secretName: another entry
                self.wrote(pair, what)
        elif isinstance(op, DeleteCopy):
            self.clear(pair, fight_key(SECRET, op.name))
        else:
            self.wrote(pair, fight_key(SECRET, op.copy.secret_name))

    def gave_up(self, pair: Key, what: Fight) -> None:
        """The give-up is recorded on the object: the restores are counted anew from here."""
        self._add(self._give_ups, pair, what)
        self._drop(self._writes, pair, what)

    @staticmethod
    def _drop(table: dict[Key, dict[Fight, tuple[float, ...]]], pair: Key, what: Fight) -> None:
        held = table.get(pair)
        if held is not None:
            held.pop(what, None)
            if not held:
                del table[pair]

    def clear(self, pair: Key, what: Fight) -> None:
        """We removed it ourselves (released, deleted): what follows is no restore."""
        self._drop(self._writes, pair, what)
        self._drop(self._give_ups, pair, what)

    def clear_tenant(self, tenant: str) -> None:
        for table in (self._writes, self._give_ups):
            for pair in [p for p in table if p[0] == tenant]:
                del table[pair]

    def clear_namespace(self, ns: str) -> None:
        for table in (self._writes, self._give_ups):
            for pair in [p for p in table if p[1] == ns]:
                del table[pair]

    def _recent(
        self, table: dict[Key, dict[Fight, tuple[float, ...]]], pair: Key
    ) -> dict[Fight, int]:
        held = table.get(pair)
        if not held:
            return {}
        now = self.clock()
        counts = {w: sum(1 for t in times if now - t < self.window) for w, times in held.items()}
        for what in [w for w, n in counts.items() if n == 0]:
            del held[what]  # a fight long over
            del counts[what]
        if not held:
            del table[pair]
        return counts

    def held_off(self, pair: Key) -> frozenset[Fight]:
        return frozenset(w for w, n in self._recent(self._give_ups, pair).items() if n >= 2)

    def given_up(self, pair: Key) -> frozenset[Fight]:
        lost = {w for w, n in self._recent(self._writes, pair).items() if n - 1 >= self.limit}
        return frozenset(lost | self.held_off(pair))
