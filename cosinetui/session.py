"""A live run seen from outside: events come out, commands go in.

The UI and the headless printer talk only to a ``Session``; they never touch the trainer's
objects. ``TrainerSession`` runs a trainer in this process (headless runs train in the main
thread; a thread of its own is for tests), ``trainer_child.TrainerChild`` and
``remote.AttachedSession`` reach a trainer in another process; ``ReplaySession``
serves the recorded events of a run (``cosinetui show`` and deterministic UI tests).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable
from typing import Protocol

from cosinetui.events import Command, CommandRefused, Event, to_json

# What the dashboard returns when the user detached (or the terminal hung up) while the run
# goes on without it.
DETACHED = -1


class Session(Protocol):
    read_only: bool
    # True when whoever opened the session started the run (in this process, or as the child
    # of `cosinetui run`): leaving stops it unless the user detaches. False for a recorded run
    # or one merely attached to, which leaving never stops.
    owns_run: bool

    def start(self) -> None: ...

    def drain(self, limit: int = 10_000) -> list[Event]:
        """Events that arrived since the last call, oldest first; never blocks."""
        ...

    def send(self, command: Command) -> None: ...

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run ends; True if it did within ``timeout``."""
        ...

    @property
    def done(self) -> bool: ...


class EventQueue:
    """A thread-safe hand-over of events from the trainer thread to a consumer."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Event] = queue.SimpleQueue()

    def put(self, event: Event) -> None:
        self._queue.put(event)

    def drain(self, limit: int = 10_000) -> list[Event]:
        out: list[Event] = []
        try:
            while len(out) < limit:
                out.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        return out

    def get(self, timeout: float | None = None) -> Event | None:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None


class ReplaySession:
    """A finished (or frozen) run, served from its recorded events. Commands are refused."""

    read_only = True
    owns_run = False

    def __init__(self, events: Iterable[Event]) -> None:
        self._events = EventQueue()
        self.backlog = 0  # events recorded before the dashboard opened: shown, not announced
        for event in events:
            self._events.put(event)
            self.backlog += 1
        self._ended = threading.Event()
        self._ended.set()

    def start(self) -> None:
        pass

    def drain(self, limit: int = 10_000) -> list[Event]:
        return self._events.drain(limit)

    def send(self, command: Command) -> None:
        self._events.put(CommandRefused(to_json(command), "this run is read-only (recorded)"))

    def wait(self, timeout: float | None = None) -> bool:
        return True

    @property
    def done(self) -> bool:
        return True


class TrainerSession:
    """A trainer running in a thread of this process.

    ``TrainerSession(experiment, TrainerOptions(run_dir=...))``; ``start()`` launches the
    thread, ``drain()`` hands over the events it emitted, ``send()`` queues a command for the
    next batch boundary. The trainer writes the metrics log itself; this only relays events.
    """

    read_only = False
    owns_run = True  # the run lives in this process: it ends when the process does

    def __init__(self, experiment, options) -> None:  # noqa: ANN001 - torch-free import
        from cosinetui.trainer import Trainer

        self._events = EventQueue()
        self.trainer = Trainer(experiment, options, listeners=[self._events.put])
        self._thread = threading.Thread(target=self.trainer.run, name="cosinetui-trainer", daemon=True)
        self._ran_here = False

    def start(self) -> None:
        self._thread.start()

    def run_here(self) -> None:
        """Train in the calling thread until the run ends, instead of starting a thread; the
        events go only to the trainer's other listeners (``drain`` returns none of them).

        On the CPU the main thread trains fastest: measured on 2 cores with torch's default 2
        intra-op threads, the same loop took twice as long in a second Python thread as in the
        main one (with 1 torch thread both were equal), so headless runs train here.
        """
        self._ran_here = True
        # Nobody can drain the queue while this thread trains: the caller sees the events
        # through its own listeners. Queued, they would cost ~50 bytes a step for nothing.
        self.trainer.listeners.remove(self._events.put)
        self.trainer.run()

    def drain(self, limit: int = 10_000) -> list[Event]:
        return self._events.drain(limit)

    def next_event(self, timeout: float | None = None) -> Event | None:
        """Block for the next event (headless printing and tests)."""
        return self._events.get(timeout)

    def send(self, command: Command) -> None:
        self.trainer.send(command)

    def wait(self, timeout: float | None = None) -> bool:
        if self._ran_here:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def done(self) -> bool:
        return self._ran_here or (self._thread.ident is not None and not self._thread.is_alive())
