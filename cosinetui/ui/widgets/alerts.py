"""The warnings panel: alerts newest first, each with its suggestion and the key that applies it.

The alert carries a command (its ``action``); the panel alone decides which key applies it and
shows that key once, beside the suggestion. A recorded run (nothing to send a fix to) shows none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Static

from cosinetui.events import Alert
from cosinetui.history import History

SEVERITY = {
    "critical": ("!!", "bold red"),
    "warning": ("!", "bold yellow"),
    "info": ("i", "bold blue"),
}

# The one-key fixes: a key per kind of action, so the same key always means the same change.
FIX_KEYS = ("h", "n", "e", "w", "c")
# What each key does, for the footer.
FIX_LABELS = {"h": "fix: lower LR", "n": "fix: anneal", "e": "fix: retime", "w": "fix: restart", "c": "fix: save"}
# Logs written before keys were the UI's choice prefix the suggestion with one ("h: halve the LR").
_OLD_KEY_PREFIX = re.compile(r"^[a-z]: ")


def fix_key(action: dict[str, Any] | None) -> str | None:
    """The key that applies ``action``: h lowers the LR, n anneals now, e retimes,
    w warm-restarts, c saves a checkpoint, p pauses; None for actions without a one-key fix."""
    if not action:
        return None
    kind = action.get("type")
    if kind == "adjust":
        op = action.get("op")
        args = action.get("args") or {}
        if op == "reanneal":
            factor = args.get("factor")
            return "h" if isinstance(factor, (int, float)) and factor < 1 else "n"
        return {"retime": "e", "restart": "w"}.get(op)
    if kind == "save_checkpoint":
        return "c"
    if kind == "pause":
        return "p"  # the pause key itself
    return None


def assign_keys(alerts: list[Alert]) -> dict[str, Alert]:
    """Key -> alert, the newest alert winning a key (``alerts`` is newest first)."""
    owned: dict[str, Alert] = {}
    for alert in alerts:
        key = fix_key(alert.action)
        if key and key not in owned:
            owned[key] = alert
    return owned


def suggestion_text(alert: Alert) -> str:
    return _OLD_KEY_PREFIX.sub("", alert.suggestion or "")


def alert_text(alert: Alert, key: str | None) -> Text:
    mark, style = SEVERITY.get(alert.severity, ("-", "bold"))
    text = Text()
    text.append(f"{mark} ", style=style)
    text.append(alert.kind, style=style)
    text.append(f" · ep {alert.epoch}\n", style="dim")
    text.append(alert.message)
    suggestion = suggestion_text(alert)
    if suggestion or key:
        text.append("\n")
        if key:
            text.append(f" {key} ", style="reverse bold")
            text.append(" ")
        text.append(suggestion or "apply the fix", style="italic")
    return text


class AlertsPanel(VerticalScroll):
    """Redrawn only when the set of alerts changed."""

    DEFAULT_CSS = """
    AlertsPanel > .alert { margin-bottom: 1; }
    AlertsPanel > #no-alerts { color: $text-muted; }
    """

    @dataclass
    class FixRequested(Message):
        """Apply an alert's suggested action (a command as JSON)."""

        action: dict[str, Any]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._shown: tuple[list[Alert], bool] = ([], True)
        self.keys: dict[str, Alert] = {}

    def compose(self):
        yield Static("no warnings", id="no-alerts")

    def request_fix(self, key: str) -> bool:
        """Post the fix that ``key`` applies now; False when it applies none."""
        alert = self.keys.get(key)
        if alert is None or not alert.action:
            return False
        self.post_message(self.FixRequested(alert.action))
        return True

    def update_from(self, history: History, *, fixes: bool = True) -> None:
        """Show ``history``'s alerts; ``fixes`` False (a recorded or finished run) shows and
        owns no keys."""
        alerts = history.active_alerts()
        if (alerts, fixes) == self._shown:
            return
        self._shown = (alerts, fixes)
        self.keys = assign_keys(alerts) if fixes else {}
        owner = {id(a): k for k, a in self.keys.items()}
        self.query(".alert").remove()
        self.query_one("#no-alerts").display = not alerts
        self.mount_all(
            [Static(alert_text(a, owner.get(id(a))), classes=f"alert {a.severity}") for a in alerts]
        )
        self.border_title = f"warnings ({len(alerts)})" if alerts else "warnings"
