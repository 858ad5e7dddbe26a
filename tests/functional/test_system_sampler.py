"""The system sampler with a fake NVML and a fake process, and its samples over the control
socket: live to attached dashboards, never in the metrics log."""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from cosinetui import store
from cosinetui.events import RunStarted, SystemSample
from cosinetui.remote import AttachedSession, RunServer
from cosinetui.system_sampler import SystemSampler, visible_indices

GiB = 1 << 30


class FakeNvml:
    NVML_TEMPERATURE_GPU = 0

    def __init__(self, count: int = 2, broken: set[str] = frozenset()) -> None:
        self.count = count
        self.broken = broken
        self.shut = False

    def _check(self, what: str) -> None:
        if what in self.broken:
            raise RuntimeError(f"NVML: {what} not supported")

    def nvmlDeviceGetCount(self):
        return self.count

    def nvmlDeviceGetHandleByIndex(self, i):
        return f"handle{i}"

    def nvmlDeviceGetName(self, handle):
        return b"NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetMemoryInfo(self, handle):
        self._check("memory")
        return SimpleNamespace(used=int(handle[-1]) * GiB + GiB, total=80 * GiB)

    def nvmlDeviceGetUtilizationRates(self, handle):
        self._check("util")
        return SimpleNamespace(gpu=90 + int(handle[-1]))

    def nvmlDeviceGetTemperature(self, handle, sensor):
        self._check("temp")
        return 60

    def nvmlShutdown(self):
        self.shut = True


class FakeProcess:
    def cpu_percent(self, interval):
        return 150.0

    def memory_info(self):
        return SimpleNamespace(rss=2 * GiB)


def test_sample_reports_each_visible_gpu_and_the_process(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    sampler = SystemSampler(
        lambda s: None, cuda=True, nvml=FakeNvml(), process=FakeProcess(),
        peak_allocated=lambda: 5 * GiB, clock=lambda: 12.0,
    )
    sample = sampler.sample()
    assert sample == SystemSample(
        12.0, 150.0, 2 * GiB,
        ({"index": 1, "name": "NVIDIA H100 80GB HBM3", "mem_used": 2 * GiB,
          "mem_total": 80 * GiB, "util": 91, "temp": 60},),
        5 * GiB,
    )


def test_a_figure_nvml_cannot_give_is_null_and_the_rest_stays():
    sampler = SystemSampler(lambda s: None, cuda=True, nvml=FakeNvml(1, {"util", "temp"}),
                            process=FakeProcess())
    gpu = sampler.sample().gpus[0]
    assert gpu["util"] is None and gpu["temp"] is None and gpu["mem_total"] == 80 * GiB


def test_cpu_only_runs_report_cpu_and_rss_without_loading_nvml(monkeypatch):
    import cosinetui.system_sampler as module

    monkeypatch.setattr(module, "load_nvml", lambda: pytest.fail("NVML loaded for a CPU run"))
    sample = SystemSampler(lambda s: None, cuda=False, process=FakeProcess()).sample()
    assert sample.gpus == () and sample.cpu_percent == 150.0 and sample.peak_allocated is None


@pytest.mark.parametrize(
    "env, expected",
    [(None, [0, 1, 2]), ("", []), ("2,0", [2, 0]), ("0,0,7", [0]), ("GPU-abc", [0, 1, 2])],
)
def test_visible_indices(env, expected):
    assert visible_indices(3, env) == expected


def test_the_thread_publishes_until_closed():
    got: list[SystemSample] = []
    two = threading.Event()

    def publish(sample):
        got.append(sample)
        if len(got) >= 2:
            two.set()

    nvml = FakeNvml()
    sampler = SystemSampler(publish, cuda=True, nvml=nvml, process=FakeProcess(), interval=0.01)
    sampler.start()
    assert two.wait(10)
    sampler.close()
    count = len(got)
    assert not sampler._thread.is_alive() and len(got) == count and nvml.shut


def test_samples_reach_attached_clients_but_not_the_log():
    run_dir = Path(tempfile.mkdtemp(dir="/tmp", prefix="ct-"))
    try:
        log = store.MetricsLog(run_dir / store.METRICS)
        server = RunServer(run_dir, lambda command: None)
        server.start()
        start = RunStarted("sys", str(run_dir), "cuda:0", "2", 1, 1, 1, "epoch", {})
        log.write(start)
        log.flush()
        server.listener(start)
        session = AttachedSession(run_dir)
        session.start()
        sample = SystemSample(1.0, 50.0, GiB, ({"index": 0, "util": 10},), None)
        server.publish(sample)
        events = []
        while not any(isinstance(e, SystemSample) for e in events):
            event = session.next_event(timeout=10)
            assert event is not None
            events.append(event)
        assert events == [start, sample]
        assert session.backlog == 1  # the run's start was there before the attach
        session.close()
        server.close()
        log.close()
        assert '"system"' not in (run_dir / store.METRICS).read_text()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
