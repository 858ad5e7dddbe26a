"""Batch chunking for loops that log their own losses, and the per-batch scalars' JSON."""

from __future__ import annotations

import json
import math

import pytest
import torch

from cosinetui.events import BatchChunk, from_json, to_json
from cosinetui.recorder import BatchBuffer, chunk_event


def test_tensors_and_floats_become_floats_in_order():
    buf = BatchBuffer()
    buf.add(torch.tensor(1.5), 0.1, 4)  # what a device loss looks like (kept as a tensor)
    buf.add(2.0, 0.2, 2)
    buf.add(torch.tensor(float("nan")), 0.3, 1)
    losses, lrs, weights, scalars = buf.take()
    assert losses[:2] == [1.5, 2.0] and math.isnan(losses[2])
    assert lrs == [0.1, 0.2, 0.3] and weights == [4, 2, 1] and scalars == {}
    assert len(buf) == 0


def test_device_tensors_cross_to_the_host_once_per_chunk(monkeypatch):
    calls = []
    real_stack = torch.stack

    def counting_stack(tensors, *args, **kwargs):
        calls.append(len(tensors))
        return real_stack(tensors, *args, **kwargs)

    monkeypatch.setattr(torch, "stack", counting_stack)
    buf = BatchBuffer()
    for i in range(5):
        buf.add(torch.tensor(float(i), requires_grad=True) * 1, 0.1, 1, {"acc": torch.tensor(0.5)})
    losses, _, _, scalars = buf.take()
    assert calls == [10]  # losses and scalars together, one stack, one copy
    assert losses == [0.0, 1.0, 2.0, 3.0, 4.0] and scalars == {"acc": [0.5] * 5}


def test_scalars_stay_aligned_with_nan_where_not_logged():
    buf = BatchBuffer()
    buf.add(1.0, 0.1, 1)
    buf.add(2.0, 0.1, 1, {"tok": 10.0})
    buf.add(3.0, 0.1, 1, {"acc": 0.5})
    buf.add(4.0, 0.1, 1)
    _, _, _, scalars = buf.take()
    assert [math.isnan(v) for v in scalars["tok"]] == [True, False, True, True]
    assert scalars["tok"][1] == 10.0
    assert [math.isnan(v) for v in scalars["acc"]] == [True, True, False, True]


def test_scalars_json_round_trip_and_absent_when_empty():
    plain = chunk_event(1, 0, [1.0], [0.1], 1, {})
    assert "scalars" not in to_json(plain)
    event = chunk_event(1, 0, [1.0, 2.0], [0.1, 0.1], 2, {"tok": [math.nan, 3.0]})
    data = json.loads(json.dumps(to_json(event)))
    assert data["scalars"] == {"tok": [None, 3.0]}
    back = from_json(data)
    assert isinstance(back, BatchChunk) and math.isnan(back.scalars["tok"][0]) and back.scalars["tok"][1] == 3.0
    with pytest.raises(ValueError, match="scalars"):
        from_json({**data, "scalars": {"tok": "x"}})
