"""The machine under a run, sampled about once a second by a thread of the trainer process.

GPUs through NVIDIA's NVML bindings (``pip install cosinetui[gpu]``: nvidia-ml-py), the
process's CPU and resident memory through psutil. The thread never runs CUDA work and never
touches a CUDA stream: NVML queries the driver, and torch's allocator statistics are host-side
counters. Samples are handed to ``publish`` (the control socket, or an in-process queue) and
nowhere else: not the metrics log, not the training loop's event path.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from cosinetui.events import SystemSample

INTERVAL = 1.0


def load_nvml() -> Any | None:
    """The pynvml module, initialised, or None (not installed, no driver, no GPU)."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - NVMLError and friends: no usable driver here
        return None
    return pynvml


def visible_indices(count: int, env: str | None = None) -> list[int]:
    """NVML indices of the devices this process can use (CUDA_VISIBLE_DEVICES, when it lists
    plain indices; UUIDs and MIG names fall back to every device)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES") if env is None else env
    if env is None or not env.strip():
        return list(range(count)) if env is None else []
    picked = []
    for part in env.split(","):
        part = part.strip()
        if not part.isdigit():
            return list(range(count))
        if int(part) < count and int(part) not in picked:
            picked.append(int(part))
    return picked


class SystemSampler:
    """``SystemSampler(publish, cuda_device=...).start()``; ``close()`` at the end of the run.

    ``nvml`` and ``process`` are injectable (tests pass fakes); by default NVML is loaded
    only when the run uses a CUDA device, and ``process`` is psutil's view of this process.
    ``peak_allocated`` returns torch's peak allocated bytes (None off CUDA).
    """

    def __init__(
        self,
        publish: Callable[[SystemSample], None],
        *,
        cuda: bool = False,
        nvml: Any | None = None,
        process: Any | None = None,
        peak_allocated: Callable[[], int | None] | None = None,
        interval: float = INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.publish = publish
        self.cuda = cuda
        self.interval = interval
        self.clock = clock
        self._nvml = nvml
        self._nvml_tried = nvml is not None
        self._handles: list[tuple[int, Any]] | None = None
        if process is None:
            import psutil

            process = psutil.Process()
        self.process = process
        self.peak_allocated = peak_allocated or (lambda: None)
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.process.cpu_percent(None)  # the first call only starts psutil's interval

    # ------------------------------------------------------------------ sampling

    def _devices(self) -> list[tuple[int, Any]]:
        if not self._nvml_tried:
            self._nvml_tried = True
            self._nvml = load_nvml() if self.cuda else None
        if self._nvml is None:
            return []
        if self._handles is None:
            nvml = self._nvml
            try:
                count = nvml.nvmlDeviceGetCount()
                self._handles = [
                    (i, nvml.nvmlDeviceGetHandleByIndex(i)) for i in visible_indices(count)
                ]
            except Exception:  # noqa: BLE001 - a driver that stops answering: no GPU figures
                self._handles = []
        return self._handles

    def _gpu(self, index: int, handle: Any) -> dict[str, Any]:
        nvml = self._nvml
        out: dict[str, Any] = {"index": index}
        for key, read in (
            ("name", lambda: nvml.nvmlDeviceGetName(handle)),
            ("mem", lambda: nvml.nvmlDeviceGetMemoryInfo(handle)),
            ("util", lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
            ("temp", lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)),
        ):
            try:
                value = read()
            except Exception:  # noqa: BLE001 - one figure missing is no reason to lose the rest
                value = None
            if key == "mem":
                out["mem_used"] = int(value.used) if value is not None else None
                out["mem_total"] = int(value.total) if value is not None else None
            elif key == "name" and isinstance(value, bytes):
                out["name"] = value.decode(errors="replace")
            else:
                out[key] = value
        return out

    def sample(self) -> SystemSample:
        try:
            cpu = float(self.process.cpu_percent(None))
            rss = int(self.process.memory_info().rss)
        except Exception:  # noqa: BLE001 - psutil.Error: report zeros rather than stop sampling
            cpu, rss = 0.0, 0
        gpus = tuple(self._gpu(i, h) for i, h in self._devices())
        try:
            peak = self.peak_allocated()
        except Exception:  # noqa: BLE001
            peak = None
        self.samples += 1
        return SystemSample(self.clock(), cpu, rss, gpus, peak)

    # ------------------------------------------------------------------ the thread

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="cosinetui-system", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.publish(self.sample())
            except Exception:  # noqa: BLE001 - a monitor must never end the run
                pass

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2 * self.interval + 1)
        if self._nvml is not None and self._handles is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001
                pass


def torch_peak_allocated(device: Any) -> Callable[[], int | None]:
    """torch's peak allocated bytes on ``device`` (a CUDA torch.device), else None."""
    if getattr(device, "type", None) != "cuda":
        return lambda: None
    import torch

    return lambda: int(torch.cuda.max_memory_allocated(device))
