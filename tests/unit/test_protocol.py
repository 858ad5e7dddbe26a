"""The control-socket protocol: request validation, message encoding, the log read by line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cosinetui.events import (
    COMMAND_TYPES,
    AdjustSchedule,
    BatchChunk,
    EpochEnd,
    Pause,
    Stop,
    from_json,
)
from cosinetui.remote.protocol import (
    MAX_REQUEST_BYTES,
    LogCursor,
    ProtocolError,
    event_message,
    parse_request,
)
from cosinetui.schedule import CosineSchedule


def test_commands_and_control_requests_parse():
    assert parse_request(b'{"type": "pause"}') == Pause()
    assert parse_request(b'{"type": "stop", "reason": "enough"}') == Stop("enough")
    assert parse_request(b'{"type":"adjust","op":"restart","args":{"peak_lr":[0.1,0.2]}}') == (
        AdjustSchedule("restart", {"peak_lr": [0.1, 0.2]})
    )
    assert parse_request(b'{"type": "bye"}') == "bye"
    assert parse_request(b'{"type": "ping", "extra": 1}') == "ping"


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b"nope", "not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1]", "JSON object"),
        (b"{}", '"type" string'),
        (b'{"type": ["pause"]}', '"type" string'),
        (b'{"type": "launch"}', "unknown message type"),
        (b'{"type": "adjust", "op": "melt"}', "unknown schedule operation"),
        (b'{"type": "adjust", "op": "retime", "args": null}', "must be an object"),
        (b'{"type": "adjust", "op": "retime", "args": {"T_max": Infinity}}', "not JSON"),
        (b'{"type": "adjust", "op": "retime", "args": {"T_max": 1e400}}', "finite number"),
        (b'{"type": "adjust", "op": "retime", "args": {"T_max": {"a": 1}}}', "finite number"),
        (b'{"type": "adjust", "op": "retime", "args": {"T_max": 99999999999999999999}}', "finite"),
        (b'{"type": "stop", "reason": 3}', "reason must be a string"),
        (b"[" * 50_000, "not JSON"),
        (b" " * (MAX_REQUEST_BYTES + 1), "too long"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(line, why):
    with pytest.raises(ProtocolError, match=why.replace("(", r"\(")):
        parse_request(line)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _requests(types):
    return st.fixed_dictionaries(
        {"type": st.sampled_from(types)},
        optional={
            "op": st.sampled_from(["reanneal", "retime", "restart", "x"]) | json_values,
            "args": st.dictionaries(
                st.sampled_from(
                    ["steps", "eta_min", "factor", "T_max", "peak_lr", "warmup_steps", "z"]
                ),
                json_values,
                max_size=4,
            )
            | json_values,
            "reason": json_values,
        },
    )


requests = _requests([*COMMAND_TYPES, "bye", "ping", "nope"])


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300) | requests.map(lambda d: json.dumps(d).encode()))
def test_any_input_is_a_command_or_a_protocol_error(line):
    try:
        result = parse_request(line)
    except ProtocolError as exc:
        assert str(exc)
        return
    assert result in ("bye", "ping") or type(result) in COMMAND_TYPES.values()


@settings(max_examples=300, deadline=None)
@given(_requests(["adjust"]).map(lambda d: json.dumps(d).encode()))
def test_adjustments_that_pass_fail_only_the_way_the_trainer_reports(line):
    """What the server forwards raises nothing but the ValueError/TypeError that the trainer
    turns into a CommandRefused event, so no client message can end a run."""
    try:
        command = parse_request(line)
    except ProtocolError:
        return
    schedule = CosineSchedule([0.1, 0.05], 100, 0.001, step=10)
    try:
        schedule.apply(command.op, dict(command.args))
    except (ValueError, TypeError):
        pass


def test_event_messages_round_trip_and_survive_unencodable_values():
    chunk = BatchChunk(2, 8, (0.5, float("nan")), (0.1, 0.1), 2)
    message = json.loads(event_message(9, chunk))
    assert message["seq"] == 9 and message["type"] == "event"
    back = from_json(message["event"])
    assert back.losses[0] == 0.5 and back.losses[1] != back.losses[1]
    odd = EpochEnd(1, 0.5, None, 0.1, metrics={"acc": object()})  # not JSON
    assert json.loads(event_message(3, odd)) == {"type": "event", "seq": 3, "event": None}


def test_log_cursor_counts_complete_lines_only(tmp_path):
    path = tmp_path / "metrics.jsonl"
    cursor = LogCursor(path)
    assert cursor.read() == ([], []) and cursor.lines == 0  # no file yet
    lines = [json.dumps({"type": "paused", "epoch": 1, "step": k}).encode() for k in range(5)]
    path.write_bytes(b"\n".join(lines[:3]) + b"\n" + lines[3][:7])
    events, problems = cursor.read()
    assert [e.step for e in events] == [0, 1, 2] and not problems and cursor.partial
    with open(path, "ab") as fh:
        fh.write(lines[3][7:] + b"\nnot json\n" + lines[4] + b"\n")
    events, problems = cursor.read(upto=5)
    assert [e and e.step for e in events] == [3, None] and cursor.lines == 5
    assert problems and "metrics.jsonl:5: skipped" in problems[0]
    assert cursor.skip() == 6 and not cursor.partial


def test_the_remote_package_imports_no_ui_and_no_torch():
    code = (
        "import sys, cosinetui.remote; "
        "print(sorted({'torch', 'textual', 'click', 'plotext'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
