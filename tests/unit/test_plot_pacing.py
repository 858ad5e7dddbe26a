"""Plot pacing without Textual: a fake clock, strings for plots."""

from cosinetui.ui.plot_pacing import PLOT_SECONDS, Milestones, PlotPacer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


RUN = object()


def seen(epochs=0, changes=0, state="running", run=RUN) -> Milestones:
    return Milestones(run, epochs, changes, state)


def drain(pacer: PlotPacer) -> list[str]:
    out = []
    while (plot := pacer.pop()) is not None:
        out.append(plot)
    return out


def test_first_schedule_queues_both_in_order():
    pacer = PlotPacer(["loss", "lr"], Clock(), schedule_first="lr")
    assert not pacer.started
    assert pacer.schedule(seen(), 1)
    assert drain(pacer) == ["loss", "lr"] and pacer.started


def test_new_batches_wait_for_the_interval():
    clock = Clock()
    pacer = PlotPacer(["loss", "lr"], clock, schedule_first="lr")
    pacer.schedule(seen(), 1)
    drain(pacer)
    for version in range(2, 8):  # polls within the second
        clock.now += 0.125
        assert not pacer.schedule(seen(), version)
    clock.now = PLOT_SECONDS
    assert pacer.schedule(seen(), 9)
    assert not pacer.schedule(seen(), 9)  # nothing new: nothing due, even later
    clock.now += 5
    assert not pacer.schedule(seen(), 9)


def test_milestones_are_due_at_once_and_a_waiting_plot_keeps_its_turn():
    clock = Clock()
    pacer = PlotPacer(["loss", "lr"], clock, schedule_first="lr")
    pacer.schedule(seen(), 1)
    drain(pacer)
    assert pacer.schedule(seen(epochs=1), 2)  # an epoch end
    assert pacer.pop() == "loss"  # the loss plot rebuilt on this poll; lr waits
    assert pacer.schedule(seen(epochs=2), 3)  # the next epoch came before the next poll
    assert drain(pacer) == ["lr", "loss"]  # the waiting plot goes first


def test_a_schedule_change_puts_the_lr_plot_first_and_a_new_run_is_due():
    pacer = PlotPacer(["loss", "lr"], Clock(), schedule_first="lr")
    pacer.schedule(seen(), 1)
    drain(pacer)
    assert pacer.schedule(seen(changes=1), 2)
    assert drain(pacer) == ["lr", "loss"]
    assert pacer.schedule(seen(changes=1, run=object()), 3)  # a resume: the same numbers
    assert pacer.schedule(seen(changes=1, state="paused"), 3)
    assert pacer.schedule(seen(changes=1, state="paused"), 3, now=True)
