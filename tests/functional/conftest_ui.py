"""Deterministic runs and sessions for the dashboard tests (imported explicitly)."""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Callable, Coroutine
from typing import Any

from cosinetui.events import (
    Alert,
    BatchChunk,
    Command,
    EpochEnd,
    Event,
    Finished,
    Pause,
    Paused,
    Resume,
    Resumed,
    RunStarted,
    Stop,
)
from cosinetui.schedule import CosineSchedule
from cosinetui.session import EventQueue


def pilot_test(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async Pilot test in its own event loop (no pytest async plugin needed)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return run


async def press(pilot: Any, *keys: str) -> None:
    """Like ``pilot.press`` minus its wait for an idle CPU, which never comes while a trainer
    thread in this process is busy (each key would cost the 1 s idle-wait maximum)."""
    from textual import events

    app = pilot.app
    for key in keys:
        char = " " if key == "space" else key if len(key) == 1 else None
        event = events.Key(key, char)
        event.set_sender(app)
        app.post_message(event)  # what the driver does with a key read from the terminal
        # A key may push a screen; let it compose and mount before the next key.
        screen, stable = app.screen, 0
        for _ in range(30):
            await pilot.pause(0)
            stable = stable + 1 if app.screen is screen and screen.is_mounted else 0
            if stable >= 3:
                break
            screen = app.screen


def scripted_events(
    *,
    epochs: int = 20,
    done: int = 12,
    steps_per_epoch: int = 50,
    in_progress: int = 30,
    alerts: bool = True,
    interval: str = "epoch",
) -> list[Event]:
    """A run of ``epochs`` epochs stopped (as if live) ``in_progress`` batches after epoch ``done``.

    Losses fall, the val loss turns up after epoch 8 (an overfitting alert with a one-key fix).
    """
    total = epochs if interval == "epoch" else epochs * steps_per_epoch
    schedule = CosineSchedule([0.1], T_max=total, eta_min=1e-3)
    events: list[Event] = [
        RunStarted(
            run_name="demo-mlp",
            run_dir="runs/demo-mlp",
            device="cpu",
            torch_version="2.x",
            param_count=12_345,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            interval=interval,
            schedule=schedule.state_dict(),
        )
    ]
    step = 0

    def batches(epoch: int, count: int) -> BatchChunk:
        nonlocal step
        losses, lrs = [], []
        for i in range(count):
            sched = epoch - 1 if interval == "epoch" else step + i
            base = 2.0 * math.exp(-(epoch - 1 + i / steps_per_epoch) / 4) + 0.25
            losses.append(base + 0.08 * math.sin(1.7 * (step + i)))
            lrs.append(schedule.lr_at(sched)[0])
        chunk = BatchChunk(epoch, step, tuple(losses), tuple(lrs), batches_in_epoch=count)
        step += count
        return chunk

    for epoch in range(1, done + 1):
        chunk = batches(epoch, steps_per_epoch)
        events.append(chunk)
        train = sum(chunk.losses) / len(chunk.losses)
        val = train + 0.05 + (0.03 * (epoch - 8) ** 2 if epoch > 8 else 0.0)
        events.append(
            EpochEnd(
                epoch=epoch,
                train_loss=train,
                val_loss=val,
                lr=chunk.lrs[-1],
                seconds=4.0 + 0.1 * (epoch % 3),
                samples_per_s=3200.0,
                step=step,
                metrics={"acc": min(0.99, 0.5 + 0.04 * epoch)},
            )
        )
        if alerts and epoch == 11:
            events.append(
                Alert(
                    kind="overfitting",
                    severity="warning",
                    epoch=epoch,
                    message="val loss rose 3 epochs in a row while train loss fell",
                    suggestion="halve the LR",
                    action={"type": "adjust", "op": "reanneal", "args": {"factor": 0.5}},
                    key="overfitting:9",
                )
            )
        if alerts and epoch == 12:
            events.append(
                Alert(
                    kind="plateau",
                    severity="info",
                    epoch=epoch,
                    message="train loss moved < 1% in 3 epochs",
                    suggestion="warm restart",
                    action={"type": "adjust", "op": "restart", "args": {}},
                    key="plateau:10",
                )
            )
    if in_progress and done < epochs:
        events.append(batches(done + 1, in_progress))
    return events


class ScriptedSession:
    """A live-looking session over fixed events; commands are recorded and may be answered.

    ``respond(command)`` returns the events the imaginary trainer emits for it. By default
    Pause/Resume/Stop are acknowledged as a trainer would.
    """

    read_only = False
    owns_run = True

    def __init__(
        self,
        events: list[Event],
        respond: Callable[[Command, ScriptedSession], list[Event]] | None = None,
    ) -> None:
        self.events = EventQueue()
        for event in events:
            self.events.put(event)
        self.sent: list[Command] = []
        self.respond = respond or acknowledge
        self.finished = False
        self.started = False

    def start(self) -> None:
        self.started = True

    def drain(self, limit: int = 10_000) -> list[Event]:
        return self.events.drain(limit)

    def send(self, command: Command) -> None:
        self.sent.append(command)
        for event in self.respond(command, self):
            self.events.put(event)

    def wait(self, timeout: float | None = None) -> bool:
        return self.finished

    @property
    def done(self) -> bool:
        return self.finished


def acknowledge(command: Command, session: ScriptedSession) -> list[Event]:
    if isinstance(command, Pause):
        return [Paused(epoch=13, step=630)]
    if isinstance(command, Resume):
        return [Resumed(epoch=13, step=630)]
    if isinstance(command, Stop):
        session.finished = True
        return [Finished(epoch=12, step=630, reason=command.reason)]
    return []
