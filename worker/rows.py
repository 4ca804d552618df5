"""A status-API page's observations with the columns dedup decides on (worker.staging `observe`).

A provider that reads a page by columns (worker.providers.sendcloud) hands `Rows` whose observations
are built only when asked for; one that reads rows eagerly hands a tuple, and `Rows.of` gives it
the same columns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import overload

from worker.model import EventType, Observation


class Rows(Sequence[Observation]):
    """A status-API page's observations, one per readable row, each built when first asked for.

    Beside them, the columns dedup decides on (worker.staging `observe`), read for every row without
    building it: the email id, the type, the status time (epoch seconds, whole), whether that time
    is exact, whether the status is final, and `plain` (`plainly_within_caps` held for the row's
    texts). A re-sweep's duplicate rows are then never built (bench quota: a built observation was
    most of a duplicate row's CPU). A provider that reads rows eagerly hands a tuple; `Rows.of`
    gives it the same columns. Compares equal to any sequence of the same observations.
    """

    __slots__ = ("_build", "_built", "email_ids", "exact", "finals", "plain", "times", "types")

    def __init__(self, email_ids: list[str], types: list[EventType | None], times: list[int], exact: list[bool],
                 finals: list[bool], plain: list[bool], build: Callable[[int], Observation]) -> None:
        self.email_ids, self.types, self.times, self.exact = email_ids, types, times, exact
        self.finals, self.plain = finals, plain
        self._build = build
        self._built: list[Observation | None] = [None] * len(email_ids)

    @classmethod
    def of(cls, observations: Sequence[Observation]) -> Rows:
        if isinstance(observations, Rows):
            return observations
        built = list(observations)
        rows = cls([o.email_id for o in built], [o.type for o in built],
                   [int(o.occurred_at.timestamp()) for o in built], [o.exact_time for o in built],
                   [o.final for o in built], [not o.oversized for o in built], built.__getitem__)
        rows._built = list(built)
        return rows

    def __len__(self) -> int:
        return len(self._built)

    @overload
    def __getitem__(self, index: int) -> Observation: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Observation, ...]: ...

    def __getitem__(self, index: int | slice) -> Observation | tuple[Observation, ...]:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(len(self))))
        built = self._built[index]
        if built is None:
            built = self._built[index] = self._build(index % len(self))
        return built

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Rows({list(self)!r})"
