"""Messages between dashboard widgets and the app: small dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message


@dataclass
class FixRequested(Message):
    """Apply an alert's suggested action (a command as JSON)."""

    action: dict[str, Any]

    def __post_init__(self) -> None:
        super().__init__()
