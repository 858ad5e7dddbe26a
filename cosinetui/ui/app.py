"""The dashboard app: drains the session's events on a timer, keeps its own History, and sends
commands. It never touches the trainer; a read-only session (a recorded run) disables controls.
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import signal
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from textual import events
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.geometry import Size
from textual.screen import Screen
from textual.widgets import Footer, Static

from cosinetui.events import (
    AdjustSchedule,
    Command,
    Pause,
    Resume,
    SaveCheckpoint,
    Stop,
    command_from_json,
    to_json,
)
from cosinetui.history import History
from cosinetui.session import DETACHED, Session
from cosinetui.ui import schedule_view
from cosinetui.ui.format import fmt_lr
from cosinetui.ui.messages import FixRequested
from cosinetui.ui.screens.adjust import ScheduleForm
from cosinetui.ui.screens.confirm import QuitScreen, RestartScreen
from cosinetui.ui.series import Axis
from cosinetui.ui.widgets.alerts import FIX_KEYS, AlertsPanel
from cosinetui.ui.widgets.epoch_table import EpochTable
from cosinetui.ui.widgets.plots import LR_TITLE, LossPlot, LRPlot, preview_data
from cosinetui.ui.widgets.progress import EpochProgress
from cosinetui.ui.widgets.status import StatusLine

MIN_WIDTH, MIN_HEIGHT = 60, 20
STOP_TIMEOUT = 120.0  # seconds a crashed UI waits for the trainer's last checkpoint
POLL_SECONDS = 0.125  # 8 Hz: fresh enough to read, cheap when nothing changed
# Within an epoch only the tail of the batch loss and the end of the used LR line grow, a
# fraction of a column per chunk. Redrawing them once a second still reads as live, and bounds
# the plots (10 to 25 ms a rebuild each) to a few percent of the UI thread instead of a rebuild
# on every 8 Hz poll that brings a chunk. What changes the picture at once (an epoch end, a
# schedule change, pause or resume, the end of the run) is drawn by the poll that brings it.
PLOT_SECONDS = 1.0
CONTROLS = {"pause", "resume", "adjust", "restart", "checkpoint", "detach"}


class CosineApp(App[int]):
    """``CosineApp(session).run()``; the return value is the exit code (1 if the run failed).

    The caller starts the session (before or after the app; events wait in its queue).
    """

    CSS_PATH = "dashboard.tcss"
    TITLE = "cosinetui"
    ENABLE_COMMAND_PALETTE = True

    BINDINGS = [
        Binding("space,p", "pause", "pause", id="pause"),
        Binding("space,p", "resume", "resume", id="resume"),
        Binding("a", "adjust", "adjust", id="adjust"),
        Binding("r", "restart", "restart", id="restart"),
        Binding("s", "checkpoint", "save", id="checkpoint"),
        Binding("l", "log_scale", "log y", id="log_scale"),
        Binding("g", "grad_norm", "grad norm", id="grad_norm"),
        Binding("d", "detach", "detach", id="detach"),
        Binding("q", "quit_dialog", "quit", id="quit"),
        Binding("ctrl+c", "quit_dialog", "quit", id="quit_ctrl_c", show=False, priority=True),
        Binding("ctrl+q", "quit_dialog", "quit", id="quit_ctrl_q", show=False, priority=True),
        *(
            Binding(key, f"fix('{key}')", f"fix {key}", id=f"fix_{key}", show=False)
            for key in FIX_KEYS
        ),
    ]

    def __init__(self, session: Session, *, handle_signals: bool = False) -> None:
        super().__init__()
        self.session = session
        self.history = History()
        self.handle_signals = handle_signals
        self.stopping = ""  # the reason of a Stop sent, "" while none was
        self.detached = False
        self.polls = 0
        self._changed = asyncio.Event()  # set by a poll that brought events
        self._polled = asyncio.Event()  # set by every poll
        self._version = -1
        self._bindings_key: tuple | None = None
        self._plotted: tuple | None = None  # what the plots last saw: see _update_plots
        self._plotted_version = -1
        self._plotted_at = -math.inf
        self._plots_due: list[LossPlot | LRPlot] = []  # handed the history on coming polls
        self._froze = False  # whether this app froze the startup heap (see on_mount)
        self.clock: Callable[[], float] = time.monotonic  # paces the plots; tests replace it
        self._refusals_seen = 0
        self._changes_seen = 0
        self._checkpoint_seen: Any = None

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        # Kept as attributes: while a modal screen is up, app.query_one() searches that screen.
        self.status_line = StatusLine(id="status")
        self.loss_plot = LossPlot(id="loss-plot")
        self.lr_plot = LRPlot(id="lr-plot")
        self.epoch_table = EpochTable(id="epochs")
        self.alerts_panel = AlertsPanel(id="alerts")
        self.progress = EpochProgress(id="progress")
        self.too_small = Static(id="too-small")
        with Vertical(id="dashboard"):
            yield self.status_line
            with Horizontal(id="plots"):
                yield self.loss_plot
                yield self.lr_plot
            with Horizontal(id="lower"):
                yield self.epoch_table
                yield self.alerts_panel
            yield self.progress
        yield self.too_small
        yield Footer()

    def on_mount(self) -> None:
        self.loss_plot.border_title = "loss [$accent]━[/] train [#ff8700]━[/] val [dim]━[/] batch"
        self.lr_plot.border_title = LR_TITLE
        self.epoch_table.border_title = "epochs"
        self.alerts_panel.border_title = "warnings"
        self.poll_timer = self.set_interval(POLL_SECONDS, self.poll)
        self.screen_change_signal.subscribe(self, self._screen_changed)
        self._check_size()
        if self.handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGHUP, signal.SIGTERM):
                loop.add_signal_handler(sig, self.hang_up, sig)
        self.call_after_refresh(self.poll)
        # What exists once the dashboard is up (torch, the experiment, Textual's widgets) lives
        # as long as the process. Left to the cyclic collector, each full collection walks all
        # of it: 200 ms frames every few seconds with torch imported (docs/performance.md).
        self.call_after_refresh(self._freeze_heap)

    def _freeze_heap(self) -> None:
        # Only when nothing is frozen yet: a program that froze its own heap keeps its freeze.
        self._froze = gc.get_freeze_count() == 0
        if self._froze:
            gc.freeze()

    def on_unmount(self) -> None:
        if self._froze:
            gc.unfreeze()  # the rest of the process (tests, a host program) collects as usual

    def on_resize(self, event: events.Resize) -> None:
        self._check_size(event.size)

    def _check_size(self, size: Size | None = None) -> None:
        width, height = size or self.size
        small = width < MIN_WIDTH or height < MIN_HEIGHT
        self.screen_stack[0].set_class(small, "-too-small")
        if small:
            self.too_small.update(
                f"terminal too small (need {MIN_WIDTH}x{MIN_HEIGHT})\n"
                f"this one is {width}x{height}; training goes on\n"
                "enlarge it, or press q to quit"
            )

    # ------------------------------------------------------------------ events in

    def poll(self) -> None:
        """Drain the session and redraw what changed. Runs on the timer, never blocks."""
        self.polls += 1
        events = self.session.drain()
        history = self.history
        if events:
            history.extend(events)
            self._announce()
        note = "stopping…" if self.stopping and history.end is None else ""
        self.status_line.update_from(history, note)
        if history.version != self._version:
            self._version = history.version
            self.epoch_table.update_from(history)
            self.progress.update_from(history)
            self.alerts_panel.update_from(history)
        self._update_plots()
        self._update_bindings()
        if self.stopping and (history.end is not None or self.session.done):
            self.exit(self.exit_code)
        if events:
            self._changed.set()
        self._polled.set()

    def _update_plots(self, *, now: bool = False) -> None:
        """Hand the plots the history at once when a milestone changed (or ``now``), else at
        most every PLOT_SECONDS; each plot then rebuilds only if its picture changed.

        A rebuild costs about 9 ms a plot at 120x40. When both pictures changed (an epoch
        end, typically), the loss plot is rebuilt on this poll and the LR plot on the next,
        1/8 s later (the LR plot first after a schedule change), so that no frame pays for
        two: the frame budget is 30 ms (docs/performance.md). ``now`` (a dialog closed, the
        first draw) rebuilds both in one frame; a resize and the log toggle reach the plots
        directly (``CachedPlot.on_resize``, ``LossPlot.watch_log_scale``)."""
        if len(self.screen_stack) > 1:
            return  # a dialog covers the plots: they catch up when it closes
        history = self.history
        # A new run (a resume), an epoch end, a schedule change, pause, resume or the end
        # (the state): drawn at once.
        seen = (history.run, history.epochs_done, len(history.schedule_changes), history.state)
        last = self._plotted
        now = now or last is None
        clock = self.clock()
        due = (
            now
            or seen[0] is not last[0]
            or seen[1:] != last[1:]
            or (history.version != self._plotted_version and clock - self._plotted_at >= PLOT_SECONDS)
        )
        if due:
            # A plot still waiting from the last poll keeps its place ahead of the one drawn
            # then, so that epochs faster than the polls cannot starve the second plot. A
            # schedule change is about the LR plot: it goes first.
            self._plotted, self._plotted_version, self._plotted_at = seen, history.version, clock
            queue = self._plots_due
            queue += [plot for plot in (self.loss_plot, self.lr_plot) if plot not in queue]
            if last is not None and seen[2] != last[2]:
                queue.remove(self.lr_plot)
                queue.insert(0, self.lr_plot)
        while self._plots_due:
            if self._plots_due.pop(0).update_from(history) and not now:
                break

    def _screen_changed(self, screen: Screen) -> None:
        if screen is self.screen_stack[0]:  # back from a dialog
            self._update_plots(now=True)

    def _update_bindings(self) -> None:
        """Refresh the footer only when what ``check_action`` reads changed: a refresh
        recomposes the footer (about 15 ms at 120 columns)."""
        key = (
            self.session.read_only,
            self.run_over,
            self.stopping,
            self.history.state,
            tuple(self.alerts_panel.keys),
            bool(self.history.scalar("grad_norm")),
        )
        if key != self._bindings_key:
            self._bindings_key = key
            self.refresh_bindings()

    async def next_poll(self) -> None:
        """Wait for the next drain of the session."""
        self._polled.clear()
        await self._polled.wait()

    def _announce(self) -> None:
        """Toasts for acknowledgements: a schedule change, a refused command, a checkpoint."""
        history = self.history
        for refusal in history.refusals[self._refusals_seen :]:
            what = refusal.command.get("op") or refusal.command.get("type", "command")
            self.notify(refusal.reason, title=f"{what} refused", severity="error", timeout=8)
        self._refusals_seen = len(history.refusals)
        for change in history.schedule_changes[self._changes_seen :]:
            if self._changes_seen or not self.session.read_only:
                self.notify(f"{change.op} at step {change.step}", title="schedule changed")
        self._changes_seen = len(history.schedule_changes)
        checkpoint = history.last_checkpoint
        if checkpoint is not None and checkpoint is not self._checkpoint_seen:
            self._checkpoint_seen = checkpoint
            if checkpoint.reason == "user":
                self.notify(
                    f"epoch {checkpoint.epoch}: {checkpoint.path}", title="checkpoint saved"
                )

    async def wait_until(self, predicate: Callable[[History], bool], timeout: float = 30.0) -> None:
        """Wait (without blocking the app) until the history satisfies ``predicate``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(self.history):
            self._changed.clear()
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"history never satisfied {predicate!r}")
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    @property
    def exit_code(self) -> int:
        return 1 if self.history.state == "failed" else 0

    @property
    def run_over(self) -> bool:
        return self.history.end is not None or (self.session.done and not self.session.read_only)

    # ------------------------------------------------------------------ commands out

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The palette lists the same actions as the footer (those that apply now)."""
        yield from super().get_system_commands(screen)
        palette = {
            "pause": ("Pause training", "Stop at the next batch boundary (space, p)"),
            "resume": ("Resume training", "Continue the paused run (space, p)"),
            "adjust": ("Adjust the schedule", "Reanneal, retime or restart, with a preview (a)"),
            "restart": ("Warm restart", "Back to the peak LR, then a new cosine (r)"),
            "checkpoint": ("Save a checkpoint now", "Written at the next batch boundary (s)"),
            "log_scale": ("Toggle log-scale loss", "log10 of the losses on the loss plot (l)"),
            "grad_norm": ("Toggle gradient norm", "The gradient norm per step in place of the LR plot (g)"),
            "detach": ("Detach", "Leave the dashboard; the run keeps training (d)"),
            "quit_dialog": ("Quit", "Stop with a checkpoint, or detach (q, Ctrl+C)"),
        }
        for action, (title, help_text) in palette.items():
            if self.check_action(action, ()):
                yield SystemCommand(title, help_text, partial(self.run_action, action))

    def send(self, command: Command) -> None:
        self.session.send(command)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in CONTROLS:
            if self.session.read_only or self.run_over or self.stopping:
                return False
            if action == "pause":
                return self.history.state != "paused"
            if action == "resume":
                return self.history.state == "paused"
        if action == "grad_norm":  # offered once the run records a norm (max_grad_norm)
            return bool(self.history.scalar("grad_norm")) or self.lr_plot.grad_norm
        if action == "fix":
            if self.session.read_only or self.run_over or self.stopping:
                return False
            return parameters[0] in self.alerts_panel.keys
        return True

    def action_pause(self) -> None:
        self.send(Pause())
        self.notify("pausing at the next batch", timeout=2)

    def action_resume(self) -> None:
        self.send(Resume())

    def action_checkpoint(self) -> None:
        self.send(SaveCheckpoint())
        self.notify("checkpoint requested", timeout=2)

    def action_log_scale(self) -> None:
        self.loss_plot.log_scale = not self.loss_plot.log_scale

    def action_grad_norm(self) -> None:
        self.lr_plot.grad_norm = not self.lr_plot.grad_norm

    def action_adjust(self, op: str = "reanneal", args: dict[str, Any] | None = None) -> None:
        schedule = schedule_view.load(self.history)
        if schedule is None:
            self.notify("the run has not started yet", severity="warning")
            return
        self.push_screen(ScheduleForm(self.history, schedule, op=op, args=args), self._adjusted)

    def _adjusted(self, command: AdjustSchedule | None) -> None:
        if command is not None:
            self.send(command)
            self.notify(
                f"{command.op} sent; the plan changes when the trainer applies it", timeout=3
            )

    def action_restart(self) -> None:
        schedule = schedule_view.load(self.history)
        if schedule is None:
            self.notify("the run has not started yet", severity="warning")
            return
        axis = Axis.of(self.history)
        fills = schedule_view.prefills(schedule, axis)["restart"]
        texts = {name: fill.text for name, fill in fills.items()}
        implicit = {name for name, fill in fills.items() if fill.implicit}
        result = schedule_view.check(schedule, "restart", texts, implicit)
        if not result.ok:
            message = next(iter(result.errors.values()))
            self.notify(message, title="restart not possible", severity="error")
            return
        steps = result.args.get("steps", schedule.config["T_max"])
        question = (
            f"LR back to {fmt_lr(schedule.base_lrs[0])}, then a cosine down to "
            f"{fmt_lr(schedule.config['eta_min'])} over {steps} steps "
            f"({'epochs' if axis.interval == 'epoch' else 'batches'}). "
            "Press a for other values."
        )
        preview = preview_data(self.history, schedule, result.preview, 60)
        command = AdjustSchedule("restart", dict(result.args))

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._adjusted(command)

        self.push_screen(
            RestartScreen(question, preview, ("restart", self.history.version)), confirmed
        )

    def action_fix(self, key: str) -> None:
        alert = self.alerts_panel.keys.get(key)
        if alert is not None and alert.action:
            self.post_message(FixRequested(alert.action))

    def on_fix_requested(self, message: FixRequested) -> None:
        action = message.action
        try:
            command = command_from_json(action)
        except ValueError as exc:
            self.notify(str(exc), title="cannot apply the fix", severity="error")
            return
        if isinstance(command, AdjustSchedule):
            self.action_adjust(command.op, command.args)
        else:
            self.send(command)
            self.notify(f"sent {to_json(command)['type']}", timeout=2)

    # ------------------------------------------------------------------ leaving

    def action_quit_dialog(self) -> None:
        if isinstance(self.screen, QuitScreen):  # a second Ctrl+C confirms
            self.screen.action_confirm()
            return
        if self.session.read_only or self.run_over:
            self.exit(self.exit_code)
            return
        if self.stopping:
            self.notify("stopping: waiting for the checkpoint", timeout=2)
            return

        def answered(choice: str | None) -> None:
            if choice == "stop":
                self.stop("stopped")
            elif choice == "detach":
                self.action_detach()

        self.push_screen(QuitScreen(attached=not self.owns_run), answered)

    @property
    def owns_run(self) -> bool:
        """True when the run trains in this process (it ends if this process ends)."""
        return bool(getattr(self.session, "owns_run", False))

    def action_detach(self) -> None:
        """Leave the dashboard; the run keeps training (in the background if it was ours)."""
        if self.owns_run and not self.run_over:
            self.send(SaveCheckpoint())  # a fresh restart point for whoever picks it up
        self.detached = True
        self.exit(DETACHED)

    def stop(self, reason: str) -> None:
        """Ask the trainer to checkpoint and finish; the app exits when it has."""
        if self.stopping:
            return
        self.stopping = reason
        self.send(Stop(reason))
        self.refresh_bindings()
        self.poll()

    def hang_up(self, signum: int = signal.SIGHUP) -> None:
        """SIGHUP (the terminal went away): detach, the run goes on. SIGTERM: checkpoint and end."""
        if signum == signal.SIGHUP and self.handle_signals:
            self._mute_driver()
            detach_terminal()
        if self.session.read_only or self.run_over:
            self.exit(self.exit_code)
        elif signum == signal.SIGHUP or not self.owns_run:
            # A dropped connection must not end hours of training, and a dashboard that
            # only attached to another process's run never stops it on its way out.
            self.action_detach()
        else:
            self.stop("signal")

    def _mute_driver(self) -> None:
        """Stop writing to a terminal that is gone.

        Textual's output thread dies on the first write to a hung-up tty, after which its
        bounded queue fills and the next write (the shutdown's restore sequences) blocks
        forever. Drop output instead, and skip the join of that thread at close.
        """
        driver = getattr(self, "_driver", None)
        if driver is not None:
            driver.write = lambda data: None
            driver.flush = lambda: None
            driver.close = lambda: None

    async def action_quit(self) -> None:
        self.action_quit_dialog()


def detach_terminal() -> None:
    """Point stdin, stdout and stderr at /dev/null once the terminal is gone, so that
    whatever still prints (a warning, the CLI's last line) does not fail with EIO."""
    try:
        null = os.open(os.devnull, os.O_RDWR)
    except OSError:
        return
    for fd in (0, 1, 2):
        try:
            os.dup2(null, fd)
        except OSError:
            pass
    os.close(null)


def run_dashboard(session: Session, *, mouse: bool = True) -> int:
    """Run the dashboard on a started ``session`` until the user quits or a signal ends it.

    Returns 0 when the run finished or was stopped, 1 when it failed (or the app crashed), and
    DETACHED when the user detached or the terminal hung up while the run trains on. If the
    app ends otherwise while this process's run still trains (a crash), the run is stopped and
    given time to write its checkpoint, so the process never dies mid-write.
    """
    app = CosineApp(session, handle_signals=True)
    try:
        code = app.run(mouse=mouse)
    finally:
        if app.owns_run and not app.detached and not session.done:
            session.send(Stop(app.stopping or "stopped"))
            session.wait(STOP_TIMEOUT)
    if app.detached:
        return DETACHED
    if app.return_code:
        return app.return_code
    return int(code) if code is not None else app.exit_code
