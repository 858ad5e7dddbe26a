"""The adjust-schedule form: reanneal, retime or restart, checked as you type, with a preview.

Nothing is sent until Apply; Escape leaves the run as it was. Validation runs the operation
on a copy of the schedule, so the messages are the schedule's own.
"""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, ContentSwitcher, Input, Label, Static, Tab, Tabs

from cosinetui.cosine import CosineSchedule
from cosinetui.events import AdjustSchedule
from cosinetui.history import History
from cosinetui.ui import schedule_view
from cosinetui.ui.format import fmt_lr, fmt_number
from cosinetui.ui.schedule_view import DESCRIPTIONS, FIELDS, OPERATIONS
from cosinetui.ui.series import Axis
from cosinetui.ui.widgets.plots import PreviewPlot, preview_data


def units(axis: Axis) -> str:
    if axis.interval == "epoch":
        return "steps are epochs"
    if axis.steps_per_epoch:
        return f"steps are batches ({axis.steps_per_epoch}/epoch)"
    return "steps are batches"


class ScheduleForm(ModalScreen[AdjustSchedule | None]):
    """Dismisses with the command to send, or None when cancelled."""

    BINDINGS = [
        Binding("escape", "cancel", "cancel", id="form.cancel"),
        Binding("ctrl+s", "apply", "apply", id="form.apply"),
        Binding("ctrl+o", "next_operation", "operation", id="form.next_operation"),
    ]

    def __init__(
        self,
        history: History,
        schedule: CosineSchedule,
        *,
        op: str = "reanneal",
        args: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.history = history
        self.schedule = schedule
        self.axis = Axis.of(history)
        self.op = op if op in OPERATIONS else "reanneal"
        self.prefill = schedule_view.prefills(schedule, self.axis)
        self._given = {
            k: fmt_number(v) for k, v in (args or {}).items() if isinstance(v, (int, float))
        }
        self.result: schedule_view.Check | None = None

    def compose(self) -> ComposeResult:
        now = self.schedule.step
        with Vertical(id="form"):
            yield Tabs(*(Tab(op, id=f"tab-{op}") for op in OPERATIONS), active=f"tab-{self.op}")
            yield Static(id="op-help")
            with Horizontal(id="form-body"):
                with ContentSwitcher(initial=f"fields-{self.op}", id="fields"):
                    for op in OPERATIONS:
                        with Vertical(id=f"fields-{op}", classes="fields"):
                            for field in FIELDS[op]:
                                text = self.prefill[op][field.name].text
                                if op == self.op and field.name in self._given:
                                    text = self._given[field.name]
                                with Horizontal(classes="field"):
                                    yield Label(field.label, classes="field-label")
                                    yield Input(
                                        text,
                                        placeholder=field.help,
                                        compact=True,
                                        id=f"{op}-{field.name}",
                                        tooltip=field.help,
                                    )
                                yield Static(id=f"{op}-{field.name}-error", classes="field-error")
                yield PreviewPlot(id="preview")
            yield Static(
                f"now: step {now} · LR {fmt_lr(self.schedule.lr_at(now)[0])} · {units(self.axis)}",
                id="form-context",
            )
            yield Static(id="form-warning")
            yield Static(id="form-error")
            with Horizontal(id="form-buttons"):
                yield Button("Apply", id="apply", variant="primary", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#form").border_title = "Adjust schedule"
        self.query_one("#form").border_subtitle = "^o operation · enter apply · esc cancel"
        self._validate()
        self.query_one(f"#{self.op}-{FIELDS[self.op][0].name}", Input).focus()

    @on(Tabs.TabActivated)
    def _switch(self, event: Tabs.TabActivated) -> None:
        self.op = (event.tab.id or "tab-reanneal").removeprefix("tab-")
        self.query_one(ContentSwitcher).current = f"fields-{self.op}"
        self._validate()
        if not isinstance(self.focused, Tabs):
            self.query_one(f"#{self.op}-{FIELDS[self.op][0].name}", Input).focus()

    @on(Input.Changed)
    def _changed(self) -> None:
        self._validate()

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_apply()

    @on(Button.Pressed, "#apply")
    def _apply_pressed(self) -> None:
        self.action_apply()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    def texts(self) -> dict[str, str]:
        return {
            f.name: self.query_one(f"#{self.op}-{f.name}", Input).value for f in FIELDS[self.op]
        }

    def _validate(self) -> None:
        op = self.op
        texts = self.texts()
        implicit = {
            name
            for name, fill in self.prefill[op].items()
            if fill.implicit and name not in self._given and texts[name].strip() == fill.text
        }
        result = schedule_view.check(self.schedule, op, texts, implicit)
        self.result = result
        for field in FIELDS[op]:
            message = result.errors.get(field.name, "")
            error = self.query_one(f"#{op}-{field.name}-error", Static)
            error.update(message)
            error.display = bool(message)
            self.query_one(f"#{op}-{field.name}", Input).set_class(bool(message), "-invalid")
        general = result.errors.get("", "")
        form_error = self.query_one("#form-error", Static)
        form_error.update(general)
        form_error.display = bool(general)
        warning = self.query_one("#form-warning", Static)
        warning.update(f"⚠ {result.warning}" if result.warning else "")
        warning.display = bool(result.warning)
        self.query_one("#op-help", Static).update(DESCRIPTIONS[op])
        self.query_one("#apply", Button).disabled = not result.ok
        preview = self.query_one(PreviewPlot)
        buckets = max(preview.size.width, 40)
        preview.show(
            (op, tuple(sorted(texts.items())), buckets),
            preview_data(
                self.history, self.schedule, result.preview, buckets, ceiling=result.ceiling
            ),
        )

    def action_next_operation(self) -> None:
        following = OPERATIONS[(OPERATIONS.index(self.op) + 1) % len(OPERATIONS)]
        self.query_one(Tabs).active = f"tab-{following}"

    def action_apply(self) -> None:
        # Check the fields as they are now: Enter may arrive before the last keystroke's
        # Changed message was handled, and the command must be what the user sees.
        self._validate()
        if self.result is not None and self.result.ok:
            self.dismiss(AdjustSchedule(self.op, dict(self.result.args)))

    def action_cancel(self) -> None:
        self.dismiss(None)
