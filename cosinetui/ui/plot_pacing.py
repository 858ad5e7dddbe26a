"""When the dashboard hands its plots the history: pure, with an injected clock.

Within an epoch only the tail of the batch loss and the end of the used LR line grow, a
fraction of a column per chunk. Redrawing them once a second still reads as live, and bounds
the plots (10 to 25 ms a rebuild each) to a few percent of the UI thread instead of a rebuild
on every poll that brings a chunk. What changes the picture at once (a new run, an epoch
end, a schedule change, pause or resume, the end of the run) is drawn by the poll that brings it.

When both pictures changed (an epoch end, typically), one plot is rebuilt on this poll and
the other on the next, so that no frame pays for two: the frame budget is 30 ms
(docs/performance.md). A plot still waiting keeps its place ahead of the one drawn last, so
epochs faster than the polls cannot starve the second plot; after a schedule change the LR
plot goes first.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Generic, NamedTuple, TypeVar

PLOT_SECONDS = 1.0

T = TypeVar("T")


class Milestones(NamedTuple):
    """What, when it changes, is drawn at once."""

    run: object  # the RunStarted event (identity: a resume is a new one)
    epochs_done: int
    schedule_changes: int
    state: str


class PlotPacer(Generic[T]):
    """``schedule(milestones, version)`` on every poll, then ``pop()`` plots until one rebuilt.

    ``plots`` are in their default order; ``schedule_first`` goes first after a schedule change.
    """

    def __init__(
        self,
        plots: Sequence[T],
        clock: Callable[[], float],
        *,
        schedule_first: T | None = None,
        interval: float = PLOT_SECONDS,
    ) -> None:
        self.plots = list(plots)
        self.clock = clock
        self.schedule_first = schedule_first
        self.interval = interval
        self.queue: list[T] = []
        self._seen: Milestones | None = None
        self._version = -1
        self._at = -math.inf

    def schedule(self, seen: Milestones, version: int, *, now: bool = False) -> bool:
        """Queue the plots when they are due; True when they were. ``now`` forces it."""
        last = self._seen
        clock = self.clock()
        due = (
            now
            or last is None
            or seen.run is not last.run
            or seen[1:] != last[1:]
            or (version != self._version and clock - self._at >= self.interval)
        )
        if not due:
            return False
        self._seen, self._version, self._at = seen, version, clock
        self.queue += [plot for plot in self.plots if plot not in self.queue]
        first = self.schedule_first
        if (
            first is not None
            and last is not None
            and seen.schedule_changes != last.schedule_changes
            and first in self.queue
        ):
            self.queue.remove(first)
            self.queue.insert(0, first)
        return True

    def pop(self) -> T | None:
        return self.queue.pop(0) if self.queue else None

    @property
    def started(self) -> bool:
        """Whether the plots were ever scheduled (the first draw forces both)."""
        return self._seen is not None
