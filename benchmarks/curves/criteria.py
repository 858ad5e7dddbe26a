"""The objective criteria that justify each corpus label, measured on the recorded curves.

``check(spec, run, control, trouble)`` returns (holds, label): label has ``must`` (kinds that
must be raised), ``must_not`` (kinds that must not be) and ``criterion`` (the rule and the
numbers measured). A kind in neither list is not judged on that run.
"""

from __future__ import annotations

import math
import statistics


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def _finite(xs) -> bool:
    return all(x is not None and math.isfinite(x) for x in xs)


def _lr_increase_epochs(lrs: list[float]) -> set[int]:
    """0-based epochs that start within two epochs of an LR increase."""
    out = set()
    for i in range(1, len(lrs)):
        if lrs[i] > lrs[i - 1] * (1 + 1e-9):
            out.update((i, i + 1, i + 2))
    return out


def healthy(spec, run, trouble) -> tuple[bool, dict]:
    ep = run["epochs"]
    t = [r["train"] for r in ep]
    v = [r["val"] for r in ep]
    lr = [r["lr"] for r in ep]
    notes, ok = [], True
    if not (_finite(t) and _finite(v) and _finite(run["losses"])):
        return False, {"criterion": "a loss is not finite"}
    # 1. It learned: the train loss fell to at most half its first epoch's.
    start = statistics.mean(run["losses"][:5])
    drop = min(t) / start
    ok &= drop <= 0.5
    notes.append(f"train fell to {_fmt(drop)} of its first 5 batches' (<= 0.5)")
    # 2. Its end is as good as its best: stopping early would not have helped.
    vbest, vlast = min(v), statistics.mean(v[-3:])
    ok &= vlast <= 1.15 * vbest
    notes.append(f"val loss of the last 3 epochs {_fmt(vlast)} <= 1.15 x its best {_fmt(vbest)}")
    accs = [r["acc"] for r in ep]
    if accs[0] is not None:
        tol = 0.02
        best, last = max(accs), statistics.mean(accs[-3:])
        ok &= last >= best - tol
        notes.append(f"val acc of the last 3 epochs {_fmt(last)} >= best {_fmt(best)} - {tol}")
    # 3. No blow-up: outside two epochs after an LR increase, train never rose 50% above its
    #    best by more than 5% of the starting loss (near zero, ratios of tiny numbers mean nothing).
    excused = _lr_increase_epochs(lr)
    worst = max(
        (t[i] / min(t[:i]) for i in range(2, len(t)) if i not in excused and t[i] - min(t[:i]) > 0.05 * start),
        default=1.0,
    )
    ok &= worst <= 1.5
    notes.append(f"worst train / best so far outside LR increases, where the rise > 5% of the start {_fmt(worst)} (<= 1.5)")
    # 4. No plateau: the LR ended low (<= 25% of its peak), or the loss still fell by 5% over
    #    the last 5 epochs while it was high.
    low = lr[-1] <= 0.25 * max(lr)
    late = t[-1] / min(t[:-5]) if len(t) > 5 else 0.0
    ok &= low or late <= 0.95
    notes.append(f"LR ended at {_fmt(lr[-1] / max(lr))} of its peak" + ("" if low else f", train of the last epoch {_fmt(late)} x the best before the last 5"))
    must_not = list(trouble)
    # A flat stretch at a high LR is a plateau in fact (whether halving the LR would help is
    # what the plateau runs' control runs measure): there, plateau is not judged.
    peak = max(lr)
    flat = [
        i for i in range(7, len(t))
        if lr[i] >= 0.25 * peak and statistics.mean(t[i - 2 : i + 1]) >= 0.97 * statistics.mean(t[i - 7 : i - 4])
    ]
    if flat:
        must_not.remove("plateau")
        notes.append(
            "plateau not judged: the 3-epoch mean of train improved < 3% over 5 epochs at a high LR "
            f"at epoch {flat[0] + 1}"
        )
    if spec.sched not in ("restarts", "constant"):
        must_not.append("schedule")  # the LR follows a standard schedule, nothing to flag
    return ok, {"must": [], "must_not": must_not, "criterion": "healthy: " + "; ".join(notes)}


def overfitting(spec, run, trouble):
    ep = run["epochs"]
    t = [r["train"] for r in ep]
    v = [r["val"] for r in ep]
    if not (_finite(t) and _finite(v)):
        return False, {"criterion": "a loss is not finite"}
    b = v.index(min(v))
    rise = statistics.mean(v[-3:]) / v[b]
    fall = t[-1] / t[b]
    ok = rise >= 1.2 and fall <= 0.7 and b < len(v) - 3
    text = (
        f"overfitting: val loss of the last 3 epochs {_fmt(rise)} x its minimum at epoch {b + 1} "
        f"(>= 1.2) while train fell to {_fmt(fall)} of its value then (<= 0.7)"
    )
    return ok, {"must": ["overfitting"], "must_not": ["nan", "divergence"], "criterion": text}


def divergence(spec, run, trouble):
    ep = run["epochs"]
    t = [r["train"] for r in ep]
    if not _finite(t):
        return False, {"criterion": "a loss is not finite"}
    for i in range(2, len(t)):
        best = min(t[:i])
        if t[i] >= 2 * best and all(x >= 1.5 * best for x in t[i:]):
            text = (
                f"divergence: train rose from its best {_fmt(best)} to {_fmt(t[i])} at epoch {i + 1} "
                f"(>= 2x) and stayed >= 1.5x that best to the end (last {_fmt(t[-1])})"
            )
            return True, {"must": ["divergence"], "must_not": ["nan", "overfitting"], "criterion": text}
    return False, {"criterion": "divergence: train never rose to 2x its best and stayed up"}


def instability(spec, run, trouble):
    ep = run["epochs"]
    t = [r["train"] for r in ep]
    v = [r["val"] for r in ep]
    if not (_finite(t) and _finite(v)):
        return False, {"criterion": "a loss is not finite"}
    rest = statistics.median(t[1:])
    if t[0] >= 100 * rest:
        text = f"instability: a first-epoch explosion, epoch 1 train {_fmt(t[0])} >= 100x the median of the rest {_fmt(rest)}"
        return True, {"must": ["instability"], "must_not": ["nan", "overfitting"], "criterion": text}
    jumps = sum(1 for i in range(1, len(t)) if t[i] > 1.25 * t[i - 1] or v[i] > 1.25 * v[i - 1])
    losses = run["losses"]
    spikes = sum(
        1 for i in range(50, len(losses)) if losses[i] >= 5 * statistics.median(losses[i - 50 : i])
    )
    ok = jumps >= 3 or spikes >= 5
    text = (
        f"instability: {jumps} epochs where train or val rose > 25% over the previous epoch (>= 3) "
        f"or {spikes} batch losses >= 5x the median of the 50 before (>= 5)"
    )
    return ok, {"must": ["instability"], "must_not": ["nan"], "criterion": text}


def nan(spec, run, trouble):
    bad = [i for i, x in enumerate(run["losses"]) if not math.isfinite(x)]
    ok = bool(bad)
    text = f"nan: first non-finite batch loss at step {bad[0] if bad else '-'}"
    return ok, {"must": ["nan"], "must_not": [], "criterion": text}


def plateau(spec, run, control, trouble):
    ep = run["epochs"]
    t = [r["train"] for r in ep]
    v = [r["val"] for r in ep]
    if not (_finite(t) and _finite(v)):
        return False, {"criterion": "a loss is not finite"}
    k = 10
    head, tail = statistics.mean(t[-k:-k + 3]), statistics.mean(t[-3:])
    ctl = statistics.mean(r["train"] for r in control["epochs"][-3:])
    vlow, vbefore = min(v[-k:]), min(v[:-k])
    flat = tail >= 0.95 * head and vlow >= 0.95 * vbefore
    helps = ctl <= 0.85 * tail
    text = (
        f"plateau: over the last {k} epochs at a constant LR train went {_fmt(head)} -> {_fmt(tail)} "
        f"(< 5% better) and val never went 5% below its best before them ({_fmt(vlow)} vs {_fmt(vbefore)}), while the same run with a cosine "
        f"schedule ends at train {_fmt(ctl)} (<= 0.85x)"
    )
    return flat and helps, {"must": ["plateau"], "must_not": ["nan", "overfitting", "divergence"], "criterion": text}


def stuck(spec, run, control, trouble):
    """The run never gets clearly below its starting loss (the median of its first five batch
    losses), while the same run at a twentieth of the LR does: the LR broke it."""
    start = statistics.median(run["losses"][:5])
    best = min(r["train"] for r in run["epochs"])
    ctl = min(r["train"] for r in control["epochs"])
    text = (
        f"stuck: best epoch train {_fmt(best)} >= 0.95x the starting loss {_fmt(start)} over "
        f"{len(run['epochs'])} epochs, while at LR/20 the same run reaches {_fmt(ctl)} (<= 0.5x)"
    )
    ok = _finite([best, ctl]) and best >= 0.95 * start and ctl <= 0.5 * start
    # Only batch records say where the run started: its epoch-1 loss is already after the
    # break, so from epoch records alone the run looks like a slow fall.
    return ok, {"must": ["plateau"], "must_not": ["nan", "overfitting"], "criterion": text,
                "needs_batches": True}


def check(spec, run, control, trouble):
    if spec.intent == "plateau":
        return plateau(spec, run, control, trouble)
    if spec.intent == "stuck":
        return stuck(spec, run, control, trouble)
    if spec.intent == "healthy":
        ok, label = healthy(spec, run, trouble)
        if not ok:  # the curve shows something else: keep it only with the label it shows
            over_ok, over = overfitting(spec, run, trouble)
            if over_ok:
                return True, over
        return ok, label
    rule = { "overfitting": overfitting, "divergence": divergence,
            "instability": instability, "nan": nan}[spec.intent]
    return rule(spec, run, trouble)
