"""Toasts from a History, without Textual."""

from cosinetui.events import CheckpointWritten, CommandRefused, Failed, RunStarted, ScheduleChanged
from cosinetui.history import History
from cosinetui.ui.announcements import Announcer


def start() -> History:
    return History.from_events([RunStarted("r", "d", "cpu", "2", 1, 10, 5, "epoch", {})])


def test_each_acknowledgement_is_announced_once():
    history, announcer = start(), Announcer()
    history.apply(ScheduleChanged(3, "reanneal", {}, {}, (0.1,)))
    history.apply(CommandRefused({"type": "adjust", "op": "retime"}, "T_max must be > 3"))
    history.apply(CheckpointWritten("d/checkpoint.pt", 3, 15, "user"))
    toasts = announcer.news(history)
    assert [t.title for t in toasts] == ["retime refused", "schedule changed", "checkpoint saved"]
    assert announcer.news(history) == []
    history.apply(CheckpointWritten("d/checkpoint.pt", 4, 20, "epoch"))  # routine: silent
    assert announcer.news(history) == []


def test_what_was_there_before_is_not_news_and_a_failure_is():
    history, announcer = start(), Announcer()
    history.apply(ScheduleChanged(3, "reanneal", {}, {}, (0.1,)))
    announcer.mark_seen(history)
    assert announcer.news(history) == []
    history.apply(Failed(4, 20, "RuntimeError: boom"))
    (toast,) = announcer.news(history)
    assert toast.severity == "error" and toast.message == "RuntimeError: boom"
