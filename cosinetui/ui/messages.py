"""Messages between dashboard widgets and the app: small dataclasses (Textual's Message
initialises itself in ``__post_init__``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message


@dataclass
class FixRequested(Message):
    """Apply an alert's suggested action (a command as JSON)."""

    action: dict[str, Any]
