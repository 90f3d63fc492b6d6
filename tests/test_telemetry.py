"""Telemetry: NVML's absence for real, NVML's answers parsed through a fake `pynvml`, CUDA's device
numbering, the CPU side, the sampler thread, and `mnist-tui devices`."""

from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import sys
import threading
import time

import fake_nvml
import pytest
from conftest import REPO_ROOT
from fake_nvml import GIB, GONE_PID, UUIDS

import mnist_tui.telemetry as telemetry
from mnist_tui.__main__ import main
from mnist_tui.telemetry import (
    CpuSample,
    GpuProcess,
    GpuSample,
    TelemetrySampler,
    TelemetrySnapshot,
    gpu_for_cuda_ordinal,
    read_gpus,
    sample,
    to_json,
    visible_gpus,
)

NO_DRIVER = ctypes.util.find_library("nvidia-ml") is None
needs_no_driver = pytest.mark.skipif(not NO_DRIVER, reason="this machine has an NVIDIA driver")


# NVML absent, for real -----------------------------------------------------------------------------


@needs_no_driver
def test_without_a_driver_there_are_no_gpus_and_one_sentence_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(telemetry, "_session", telemetry._NvmlSession())
    gpus, reason = read_gpus()
    assert gpus == []
    assert reason == "NVML unavailable: no NVIDIA driver found (libnvidia-ml.so.1 missing)."
    snapshot = sample()
    assert snapshot.gpus == () and snapshot.nvml_error == reason


@needs_no_driver
def test_devices_json_without_a_driver_exits_0_with_the_reason_and_no_traceback() -> None:
    completed = subprocess.run([sys.executable, "-m", "mnist_tui", "devices", "--json"], capture_output=True,
                               text=True, cwd=REPO_ROOT, timeout=60)
    assert completed.returncode == 0
    assert completed.stderr == ""
    report = json.loads(completed.stdout)
    assert set(report) == {"cpu", "gpus", "nvml"}
    assert report["gpus"] == []
    assert report["nvml"].startswith("NVML unavailable: no NVIDIA driver found")
    assert set(report["cpu"]) == {"utilization", "load_average", "cores", "process_cpu", "process_rss"}
    assert report["cpu"]["cores"] >= 1 and len(report["cpu"]["load_average"]) == 3


@needs_no_driver
def test_devices_table_without_a_driver_says_why(capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(telemetry, "_session", telemetry._NvmlSession())
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("CPU: ")
    assert "GPUs: NVML unavailable: no NVIDIA driver found" in out


def test_a_missing_binding_is_a_reason_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    monkeypatch.setattr(telemetry, "_session", telemetry._NvmlSession())
    assert read_gpus() == ([], "NVML unavailable: the nvidia-ml-py package is not installed.")


@pytest.mark.parametrize(("error", "reason"), [
    (fake_nvml.NVMLError_LibraryNotFound, "NVML unavailable: no NVIDIA driver found (libnvidia-ml.so.1 missing)."),
    (fake_nvml.NVMLError_DriverNotLoaded, "NVML unavailable: the NVIDIA driver is not loaded."),
    (fake_nvml.NVMLError, "NVML unavailable: fake failure."),
])
def test_an_nvml_that_will_not_start_is_a_reason_and_is_not_tried_again(
        monkeypatch: pytest.MonkeyPatch, error: type[fake_nvml.NVMLError], reason: str) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    module = fake_nvml.install(monkeypatch, init_error=error)
    assert read_gpus() == ([], reason)
    assert read_gpus() == ([], reason)
    assert module.state["inits"] == 1


# NVML's answers, through the fake --------------------------------------------------------------------


def test_every_field_of_a_board_that_answers_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    module = fake_nvml.install(monkeypatch, trainer_pid=os.getpid())
    gpus, reason = read_gpus()
    assert reason is None
    assert [gpu.index for gpu in gpus] == [0, 1]
    h100 = gpus[0]
    assert h100 == GpuSample(index=0, name="NVIDIA H100 80GB HBM3", uuid=UUIDS[0], utilization=97.0,
                             memory_used=9 * GIB, memory_total=80 * GIB, temperature=64, power_draw=312.5,
                             power_limit=700.0, processes=h100.processes)
    assert isinstance(h100.name, str)  # decoded from the bytes older bindings return
    assert h100.memory_free == 71 * GIB
    # One process, listed by both the compute and the graphics call: once, with the memory that was known.
    name = h100.processes[0].name
    assert h100.processes == (GpuProcess(os.getpid(), name, 8 * GIB),)
    assert name not in ("", "?")
    read_gpus()
    assert module.state["inits"] == 1  # NVML is initialised once per process


def test_a_field_the_board_does_not_support_is_none_and_the_rest_stand(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nvml.install(monkeypatch)
    k80 = read_gpus()[0][1]
    assert k80 == GpuSample(index=1, name="Tesla K80", uuid=UUIDS[1], utilization=None, memory_used=GIB,
                            memory_total=12 * GIB, temperature=None, power_draw=None, power_limit=None,
                            processes=(GpuProcess(GONE_PID, "?", None),))


def test_a_board_whose_memory_nvml_will_not_read_counts_as_0_of_0(monkeypatch: pytest.MonkeyPatch) -> None:
    module = fake_nvml.install(monkeypatch)

    def refuse(handle: int) -> None:
        raise module.NVMLError_NotSupported("Not Supported")

    module.nvmlDeviceGetMemoryInfo = refuse
    del module.nvmlDeviceGetGraphicsRunningProcesses  # an old binding without it
    h100 = read_gpus()[0][0]
    assert (h100.memory_used, h100.memory_total, h100.memory_free) == (0, 0, 0)
    assert h100.utilization == 97.0 and len(h100.processes) == 1


def test_a_count_that_fails_is_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    module = fake_nvml.install(monkeypatch)

    def lost() -> int:
        raise module.NVMLError("GPU is lost")

    module.nvmlDeviceGetCount = lost
    assert read_gpus() == ([], "NVML unavailable: GPU is lost.")


def test_to_json_has_every_field_of_the_cpu_and_each_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nvml.install(monkeypatch)
    report = json.loads(json.dumps(to_json(sample(os.getpid()))))
    assert set(report) == {"cpu", "gpus", "nvml"} and report["nvml"] is None
    assert report["cpu"]["process_rss"] > 0 and report["cpu"]["process_cpu"] is not None
    assert [gpu["uuid"] for gpu in report["gpus"]] == list(UUIDS)
    h100 = report["gpus"][0]
    assert {key: h100[key] for key in ("index", "name", "utilization", "memory_used", "memory_total",
                                       "memory_free", "temperature", "power_draw", "power_limit")} == {
        "index": 0, "name": "NVIDIA H100 80GB HBM3", "utilization": 97.0, "memory_used": 9 * GIB,
        "memory_total": 80 * GIB, "memory_free": 71 * GIB, "temperature": 64, "power_draw": 312.5,
        "power_limit": 700.0}
    assert h100["processes"] == [{"pid": 4242, "name": h100["processes"][0]["name"], "memory_used": 8 * GIB}]
    assert report["gpus"][1]["temperature"] is None


def test_devices_with_gpus_as_json_and_as_a_table(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    fake_nvml.install(monkeypatch)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert main(["devices", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["nvml"] is None and [gpu["name"] for gpu in report["gpus"]] == ["NVIDIA H100 80GB HBM3",
                                                                                 "Tesla K80"]
    assert main(["devices"]) == 0
    lines = capsys.readouterr().out.splitlines()
    h100 = next(line for line in lines if "H100" in line)
    k80 = next(line for line in lines if "K80" in line)
    assert "71 GiB / 80 GiB" in h100 and "97%" in h100 and "64°C" in h100 and "312 W / 700 W" in h100
    # Only GPU 1 is visible to CUDA here, so it is cuda:0; the unsupported fields are dashes.
    assert " - " in h100 and "cuda:0" in k80 and "11 GiB / 12 GiB" in k80
    assert "NVML" not in "\n".join(lines)


# CUDA's numbering ------------------------------------------------------------------------------------


def gpu(index: int, uuid: str) -> GpuSample:
    return GpuSample(index, f"gpu{index}", uuid, None, 0, GIB, None, None, None)


GPUS = [gpu(0, "GPU-aaaa1111-0000"), gpu(1, "GPU-aaaa2222-0000"), gpu(2, "GPU-bbbb3333-0000"),
        gpu(3, "GPU-cccc4444-0000")]


@pytest.mark.parametrize(("variable", "indices"), [
    (None, [0, 1, 2, 3]),
    ("", []),
    ("2,0", [2, 0]),
    (" 3 , 1 ", [3, 1]),
    ("GPU-bbbb3333-0000,GPU-cccc4444-0000", [2, 3]),
    ("GPU-cccc,1", [3, 1]),                 # a unique prefix, as CUDA takes it
    ("1,7,2", [1]),                         # stops at the first GPU that is not there
    ("GPU-aaaa,2", []),                     # an ambiguous prefix names no GPU
    ("0,nonsense,1", [0]),
    ("1,1,2", [1]),                         # a GPU named twice
    ("-1,0", []),                           # the usual way to hide every GPU
    ("MIG-4f9d1c2a-0000,0", []),            # MIG instances are not matched, and nothing breaks
])
def test_visible_gpus_follows_cuda_visible_devices(variable: str | None, indices: list[int]) -> None:
    assert [g.index for g in visible_gpus(list(reversed(GPUS)), variable)] == indices


def test_gpu_for_cuda_ordinal_maps_through_the_environment_given(monkeypatch: pytest.MonkeyPatch) -> None:
    assert gpu_for_cuda_ordinal(0, GPUS, {"CUDA_VISIBLE_DEVICES": "2,3"}) == GPUS[2]
    assert gpu_for_cuda_ordinal(1, GPUS, {}) == GPUS[1]
    assert gpu_for_cuda_ordinal(2, GPUS, {"CUDA_VISIBLE_DEVICES": "2,3"}) is None
    assert gpu_for_cuda_ordinal(-1, GPUS, {}) is None
    fake_nvml.install(monkeypatch)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", UUIDS[1])
    found = gpu_for_cuda_ordinal(0)  # a fresh reading, this process's environment
    assert found is not None and found.name == "Tesla K80"


# The CPU, and the sampler ----------------------------------------------------------------------------


def test_cpu_sample_watches_a_process_and_lets_go_of_one_that_is_gone() -> None:
    busy = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 30\n"
                             "while time.time() < end: pass"])
    try:
        time.sleep(0.3)
        cpu = sample(busy.pid).cpu
        assert cpu.process_cpu is not None and cpu.process_cpu > 10  # a busy loop, measured since the last look
        assert cpu.process_rss is not None and cpu.process_rss > 1_000_000
        assert 0 <= cpu.utilization <= 100 and cpu.cores >= 1
    finally:
        busy.kill()
        busy.wait()
    gone = sample(busy.pid).cpu
    assert gone.process_cpu is None and gone.process_rss is None
    assert sample().cpu.process_cpu is None


def snapshot_at(moment: float, pid: int | None = None) -> TelemetrySnapshot:
    return TelemetrySnapshot(moment, CpuSample(1.0, (0.0, 0.0, 0.0), 2, None if pid is None else float(pid), None),
                             (), "NVML unavailable: test.")


def test_sampler_reads_on_its_thread_keeps_a_bounded_history_and_outlives_a_bad_reading() -> None:
    readings: list[tuple[int | None, str]] = []
    enough = threading.Event()

    def read(pid: int | None) -> TelemetrySnapshot:
        readings.append((pid, threading.current_thread().name))
        if len(readings) == 3:
            raise RuntimeError("a driver hiccup")
        if len(readings) >= 12:
            enough.set()
        return snapshot_at(len(readings), pid)

    sampler = TelemetrySampler(interval=0.01, history_seconds=0.05, pid=7, read=read)
    assert sampler.latest() is None and sampler.history() == []
    sampler.start()
    sampler.start()  # already sampling: no second thread
    sampler.set_pid(8)
    assert enough.wait(5)
    sampler.stop()
    assert not sampler.running
    count = len(readings)
    time.sleep(0.05)
    assert len(readings) == count  # stopped for good
    history = sampler.history()
    assert len(history) == 5  # 0.05 s of 0.01 s readings
    assert [s.time for s in history] == sorted(s.time for s in history)
    latest = sampler.latest()
    assert latest is not None and latest is history[-1] and latest.time == count
    assert {name for _, name in readings} == {"telemetry"}
    assert readings[0][0] == 7 and readings[-1][0] == 8


def test_a_sampler_stopped_without_waiting_and_started_again_reads_on_one_thread_only() -> None:
    reading = threading.Event()
    threads: set[int] = set()

    def read(pid: int | None) -> TelemetrySnapshot:
        threads.add(threading.get_ident())
        reading.set()
        time.sleep(0.05)  # a slow reading, under way when the sampler is stopped
        return snapshot_at(time.monotonic())

    sampler = TelemetrySampler(interval=0.01, read=read)
    sampler.start()
    assert reading.wait(5)
    sampler.stop(timeout=0)  # as the dashboard does: no wait
    sampler.start()
    time.sleep(0.3)
    sampler.stop()
    assert len(threads) == 2
    alive = [t for t in threading.enumerate() if t.name == "telemetry"]
    assert alive == []
    last = sampler.latest()
    assert last is not None
    count = len(sampler.history())
    time.sleep(0.1)
    assert len(sampler.history()) == count
