"""TensorBoard event files -> ``Scalars``, read with TensorBoard's own event-file reader.

Only scalars (old-style ``simple_value`` and tensor-based summaries of the scalars plugin) and
text summaries are read. Before TensorBoard's reader sees a file, its record framing is checked
here: a record whose length runs past the end of the file ends the read at that record, so a
corrupt or hostile length never becomes an allocation. Symlinked event files are skipped.
"""

from __future__ import annotations

import itertools
import math
import os
import struct
from pathlib import Path

from cosinetui.readers.scalars import ReaderError, Scalars, run_name

EXTRA_HINT = "reading TensorBoard logs needs the tensorboard package: pip install 'cosinetui[tensorboard]'"


def is_event_file(path: Path) -> bool:
    return "tfevents" in path.name and path.is_file() and not path.is_symlink()


def _event_files_in(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if is_event_file(p))
    except OSError:
        return []


def event_files(path: Path) -> list[Path]:
    """The event files of one run: ``path`` itself, or the event files directly in it (in
    name order, which is the order they were written)."""
    if path.is_file():
        return [path]
    found = _event_files_in(path)
    if not found:
        raise ReaderError(f"{path}: no TensorBoard event files (events.out.tfevents.*) in it")
    return found


def valid_records(path: Path, masked_crc32c) -> tuple[int, str]:  # noqa: ANN001
    """How many whole records the file holds before any damage, and what the damage is."""
    size = path.stat().st_size
    count = 0
    with open(path, "rb") as fh:
        offset = 0
        while offset < size:
            header = fh.read(12)
            if len(header) < 12:
                return count, f"truncated record at byte {offset}"
            (length,) = struct.unpack("<Q", header[:8])
            (crc,) = struct.unpack("<I", header[8:])
            if masked_crc32c(header[:8]) != crc:
                return count, f"damaged record header at byte {offset}"
            end = offset + 12 + length + 4
            if end > size:
                return count, f"truncated record at byte {offset} (the writer stopped mid-write?)"
            fh.seek(end)
            offset = end
            count += 1
    return count, ""


def _scalar(tensor) -> float | None:  # noqa: ANN001 - a TensorProto
    """The value of a scalar TensorProto, or None when it is not one. Never trusts the
    shape to size anything: only a shape of ones is a scalar."""
    if any(d.size != 1 for d in tensor.tensor_shape.dim):
        return None
    for field, fmt in (("double_val", "<d"), ("float_val", "<f"), ("int64_val", "<q"), ("int_val", "<i")):
        values = getattr(tensor, field)
        if values:
            return float(values[0])
        if tensor.tensor_content and len(tensor.tensor_content) == struct.calcsize(fmt):
            if _DTYPES.get(tensor.dtype) == fmt:
                return float(struct.unpack(fmt, tensor.tensor_content)[0])
    return None


_DTYPES = {1: "<f", 2: "<d", 3: "<i", 9: "<q"}  # DT_FLOAT, DT_DOUBLE, DT_INT32, DT_INT64


def read_tensorboard(path: str | os.PathLike[str]) -> Scalars:
    try:
        from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
        from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
    except ImportError:
        raise ReaderError(EXTRA_HINT) from None
    p = Path(path)
    files = event_files(p)
    out = Scalars("tensorboard", run_name(p), str(path))
    values: dict[str, dict[int, float]] = {}
    plugins: dict[str, str] = {}
    for file in files:
        try:
            count, problem = valid_records(file, masked_crc32c)
        except OSError as exc:
            raise ReaderError(f"{file}: cannot read ({exc.strerror or exc})") from None
        if problem:
            out.problems.append(f"{file}: {problem}; read the {count} records before it")
        try:
            for event in itertools.islice(LegacyEventFileLoader(str(file)).Load(), count):
                _take(event, values, plugins, out)
        except Exception as exc:  # noqa: BLE001 - a damaged file must be a message, not a traceback
            out.problems.append(f"{file}: stopped reading: {exc}")
    for tag, by_step in values.items():
        out.series[tag] = sorted(by_step.items())
    epochs = [t for t in out.series if t.lower() == "epoch"]
    if epochs:
        points = out.series[epochs[0]]
        if all(math.isfinite(v) and v == int(v) for _, v in points):
            out.epoch_of_step = {s: int(v) for s, v in points}
    return out


def _take(event, values: dict, plugins: dict, out: Scalars) -> None:  # noqa: ANN001
    if not event.HasField("summary"):
        return
    for value in event.summary.value:
        tag = value.tag
        if value.HasField("metadata") and value.metadata.plugin_data.plugin_name:
            plugins[tag] = value.metadata.plugin_data.plugin_name
        kind = value.WhichOneof("value")
        if kind == "simple_value":
            values.setdefault(tag, {})[event.step] = float(value.simple_value)
        elif kind == "tensor":
            plugin = plugins.get(tag, "")
            if plugin == "text":
                strings = value.tensor.string_val
                if strings:
                    name = tag.removesuffix("/text_summary")
                    text = strings[0].decode("utf-8", errors="replace")
                    out.texts.setdefault(name, []).append((event.step, text))
            elif plugin in ("scalars", ""):
                x = _scalar(value.tensor)
                if x is not None:
                    values.setdefault(tag, {})[event.step] = x
