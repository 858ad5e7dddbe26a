"""The dashboard app: drains the session's events on a timer, keeps its own History, and sends
commands. It never touches the trainer, which runs in another process (`cosinetui run` starts
a child: a trainer thread here would compete with the UI for the interpreter lock and slow
training); a read-only session (a recorded run) disables controls.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
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
    SystemSample,
    command_from_json,
    to_json,
)
from cosinetui.history import History
from cosinetui.leaving import leaving_lines
from cosinetui.session import DETACHED, Session
from cosinetui.ui import hangup, schedule_view, settings
from cosinetui.ui.announcements import Announcer
from cosinetui.ui.plot_pacing import PLOT_SECONDS, Milestones, PlotPacer
from cosinetui.ui.screens.adjust import ScheduleForm
from cosinetui.ui.screens.confirm import QuitScreen, RestartScreen
from cosinetui.ui.screens.help import HelpScreen
from cosinetui.ui.series import Axis
from cosinetui.ui.widgets.alerts import FIX_KEYS, FIX_LABELS, AlertsPanel
from cosinetui.ui.widgets.epoch_table import EpochTable
from cosinetui.ui.widgets.plots import LR_TITLE, LossPlot, LRPlot, preview_data
from cosinetui.ui.widgets.progress import EpochProgress
from cosinetui.ui.widgets.status import StatusLine
from cosinetui.ui.widgets.system import SystemBrief, SystemPanel

__all__ = ["PLOT_SECONDS", "CosineApp", "run_dashboard"]

MIN_WIDTH, MIN_HEIGHT = 60, 20
PANEL_WIDTH = 120  # from this width on, the system panel has a place beside the warnings
STOP_TIMEOUT = 120.0  # seconds a crashed UI waits for the trainer's last checkpoint
# 4 Hz: fresh enough to read. Every poll that brings batches repaints the status line and
# the progress bar; on a 2-core machine the trainer pays for the dashboard's CPU, and 8 Hz
# cost about a fifth more of it (docs/performance.md). A command sent is followed by a poll
# of its own a moment later, so its acknowledgement still shows at once.
POLL_SECONDS = 0.25
ACK_POLL_SECONDS = 0.1
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
        Binding("question_mark,f1", "help", "help", id="help"),
        Binding("ctrl+c", "quit_dialog", "quit", id="quit_ctrl_c", show=False, priority=True),
        Binding("ctrl+q", "quit_dialog", "quit", id="quit_ctrl_q", show=False, priority=True),
        *(
            # Shown in the footer only while a warning offers that fix (see check_action).
            Binding(key, f"fix('{key}')", FIX_LABELS[key], id=f"fix_{key}")
            for key in FIX_KEYS
        ),
    ]

    def __init__(
        self, session: Session, *, handle_signals: bool = False, keep_settings: bool = False
    ) -> None:
        super().__init__()
        self.session = session
        self.history = History()
        self.handle_signals = handle_signals
        # Whether the theme is read from and saved to the user's settings file (the real
        # command does; tests leave the user's file alone).
        self.keep_settings = keep_settings
        self.stopping = ""  # the reason of a Stop sent, "" while none was
        self.detached = False
        self.polls = 0
        self.system: SystemSample | None = None  # the latest sample of the trainer's machine
        self._changed = asyncio.Event()  # set by a poll that brought events
        self._polled = asyncio.Event()  # set by every poll
        self._version = -1
        self._bindings_key: tuple | None = None
        self._froze = False  # whether this app froze the startup heap (see on_mount)
        self.clock: Callable[[], float] = time.monotonic  # paces the plots; tests replace it
        self._drained = 0  # events drained so far (for the session's backlog)
        self.announcer = Announcer()
        self._theme_loaded = False

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        # Kept as attributes: while a modal screen is up, app.query_one() searches that screen.
        self.status_line = StatusLine(id="status")
        self.loss_plot = LossPlot(id="loss-plot")
        self.lr_plot = LRPlot(id="lr-plot")
        self.epoch_table = EpochTable(id="epochs")
        self.alerts_panel = AlertsPanel(id="alerts")
        self.progress = EpochProgress(id="progress")
        self.system_brief = SystemBrief(id="system-brief")
        self.system_panel = SystemPanel(id="system")
        self.too_small = Static(id="too-small")
        self.pacer = PlotPacer(
            [self.loss_plot, self.lr_plot], lambda: self.clock(), schedule_first=self.lr_plot
        )
        name = getattr(self.session, "run_name", "")
        if name:
            self.status_line.placeholder = name
        with Vertical(id="dashboard"):
            yield self.status_line
            with Horizontal(id="plots"):
                yield self.loss_plot
                yield self.lr_plot
            with Horizontal(id="lower"):
                yield self.epoch_table
                yield self.alerts_panel
                yield self.system_panel
            with Horizontal(id="bottom"):
                yield self.progress
                yield self.system_brief
        yield self.too_small
        yield Footer()

    def on_mount(self) -> None:
        # Markers as well as colours, so the series stay apart without colour (NO_COLOR).
        self.loss_plot.border_title = "loss [$accent]⣀[/] train [#ff8700]•[/] val [dim]·[/] batch"
        self.lr_plot.border_title = LR_TITLE
        self.epoch_table.border_title = "epochs"
        self.alerts_panel.border_title = "warnings"
        self.system_panel.border_title = "system"
        if self.keep_settings:
            theme = settings.load().get("theme")
            if isinstance(theme, str) and theme in self.available_themes:
                self.theme = theme
        self._theme_loaded = True
        self.poll_timer = self.set_interval(POLL_SECONDS, self.poll)
        self.screen_change_signal.subscribe(self, self._screen_changed)
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        self._check_size()
        if self.handle_signals:
            hangup.install(self.hang_up)
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

    def _theme_changed(self, theme: Any) -> None:
        if self.keep_settings and self._theme_loaded:
            settings.save(theme=self.theme)

    def _check_size(self, size: Size | None = None) -> None:
        width, height = size or self.size
        small = width < MIN_WIDTH or height < MIN_HEIGHT
        self.screen_stack[0].set_class(small, "-too-small")
        self.screen_stack[0].set_class(width >= PANEL_WIDTH, "-wide")
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
            samples = [e for e in events if isinstance(e, SystemSample)]
            if samples:
                events = [e for e in events if not isinstance(e, SystemSample)]
                self.system = samples[-1]
                self.system_brief.show(self.system)
                self.system_panel.show(self.system)
            # Events from before this dashboard opened (an attach replays the run) are
            # shown, not announced as news.
            old = max(getattr(self.session, "backlog", 0) - self._drained, 0)
            self._drained += len(events)
            if old:
                history.extend(events[:old])
                self.announcer.mark_seen(history)
            history.extend(events[old:])
            self._announce()
        note = "stopping…" if self.stopping and history.end is None else ""
        self.status_line.update_from(history, note)
        if history.version != self._version:
            self._version = history.version
            self.epoch_table.update_from(history)
            self.progress.update_from(history)
        # Every poll: a run that ended or a Stop sent takes the fix keys away.
        self.alerts_panel.update_from(history, fixes=self._fixes_apply())
        self._update_plots()
        self._update_bindings()
        if self.stopping and (history.end is not None or self.session.done):
            self.exit(self.exit_code)
        if events:
            self._changed.set()
        self._polled.set()

    def _update_plots(self, *, now: bool = False) -> None:
        """Hand the plots the history as the pacer says (``plot_pacing``); each plot then
        rebuilds only if its picture changed. ``now`` (a dialog closed, the first draw)
        rebuilds both in one frame; a resize and the log toggle reach the plots directly
        (``CachedPlot.on_resize``, ``LossPlot.watch_log_scale``)."""
        if len(self.screen_stack) > 1:
            return  # a dialog covers the plots: they catch up when it closes
        history = self.history
        now = now or not self.pacer.started
        seen = Milestones(history.run, history.epochs_done, len(history.schedule_changes), history.state)
        self.pacer.schedule(seen, history.version, now=now)
        while (plot := self.pacer.pop()) is not None:
            if plot.update_from(history) and not now:
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
        for toast in self.announcer.news(self.history):
            self.notify(toast.message, title=toast.title, severity=toast.severity, timeout=toast.timeout)

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
        # Textual's own Quit would leave without asking (ours asks), its Keys panel lists
        # widget keys (the help screen lists ours), and its Screenshot writes to
        # ~/Downloads (missing on a server): replaced below.
        replaced = {"Quit", "Keys", "Screenshot"}
        yield from (c for c in super().get_system_commands(screen) if c.title not in replaced)
        yield SystemCommand(
            "Screenshot", "Save an SVG of the screen in the run directory", self.action_screenshot
        )
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
        yield SystemCommand("Keys", "The dashboard's keys by area (?, F1)", self.action_help)

    def send(self, command: Command) -> None:
        self.session.send(command)
        self.set_timer(ACK_POLL_SECONDS, self.poll)

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
            return self._fixes_apply() and parameters[0] in self.alerts_panel.keys
        return True

    def action_pause(self) -> None:
        self.send(Pause())
        self.notify("pausing at the next batch", timeout=2)

    def action_resume(self) -> None:
        self.send(Resume())

    def action_checkpoint(self) -> None:
        self.send(SaveCheckpoint())
        self.notify("checkpoint requested", timeout=2)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def screenshot_dir(self) -> Path:
        """The run directory when it is here and writable, else the working directory."""
        run = self.history.run
        if run is not None and run.run_dir:
            path = Path(run.run_dir)
            if path.is_dir() and os.access(path, os.W_OK):
                return path
        return Path.cwd()

    def action_screenshot(self, filename: str | None = None, path: str | None = None) -> None:
        target = Path(path) if path else self.screenshot_dir()
        try:
            saved = self.save_screenshot(filename, str(target))
        except OSError as exc:
            self.notify(f"{target}: {exc.strerror or exc}", title="screenshot not saved", severity="error")
            return
        self.notify(saved, title="screenshot saved", timeout=8)

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
        plan = schedule_view.restart_plan(schedule, Axis.of(self.history))
        if plan.command is None:
            self.notify(plan.error, title="restart not possible", severity="error")
            return
        preview = preview_data(self.history, schedule, plan.check.preview if plan.check else None, 60)
        command = AdjustSchedule("restart", plan.command["args"])

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._adjusted(command)

        self.push_screen(
            RestartScreen(plan.question, preview, ("restart", self.history.version)), confirmed
        )

    def _fixes_apply(self) -> bool:
        """Whether a fix could be sent now: not on a recorded or finished run."""
        return not (self.session.read_only or self.run_over or self.stopping)

    def action_fix(self, key: str) -> None:
        self.alerts_panel.request_fix(key)

    def on_alerts_panel_fix_requested(self, message: AlertsPanel.FixRequested) -> None:
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
            hangup.mute_driver(self)
            hangup.detach_terminal()
        if self.session.read_only or self.run_over:
            self.exit(self.exit_code)
        elif signum == signal.SIGHUP or not self.owns_run:
            # A dropped connection must not end hours of training, and a dashboard that
            # only attached to another process's run never stops it on its way out.
            self.action_detach()
        else:
            self.stop("signal")

    async def action_quit(self) -> None:
        self.action_quit_dialog()


def run_dashboard(session: Session, *, mouse: bool = True) -> int:
    """Run the dashboard on a started ``session`` until the user quits or a signal ends it.

    Returns 0 when the run finished or was stopped, 1 when it failed (or the app crashed), and
    DETACHED when the user detached or the terminal hung up while the run trains on. If the
    app ends otherwise while this process's run still trains (a crash), the run is stopped and
    given time to write its checkpoint, so the process never dies mid-write.
    """
    app = CosineApp(session, handle_signals=True, keep_settings=True)
    try:
        code = app.run(mouse=mouse)
    finally:
        if app.owns_run and not app.detached and not session.done:
            session.send(Stop(app.stopping or "stopped"))
            session.wait(STOP_TIMEOUT)
            app.history.extend(e for e in session.drain() if not isinstance(e, SystemSample))
    if not session.read_only:
        running = app.detached or not app.owns_run
        run_dir = getattr(session, "run_dir", None)
        lines = leaving_lines(
            app.history,
            running=running,
            pid=getattr(session, "pid", None),
            run_dir=str(run_dir) if run_dir else None,
        )
        for line in lines:
            print(line, flush=True)
    if app.detached:
        return DETACHED
    if app.return_code:
        return app.return_code
    return int(code) if code is not None else app.exit_code
