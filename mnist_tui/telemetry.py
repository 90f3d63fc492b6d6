"""Hardware telemetry: what each GPU (through NVML) and the CPU (through psutil) are doing, torch-free.

Modelled on nvitop's `api/device.py`: NVML is imported lazily and initialised once per process, its absence
(no driver, macOS, a container without the library) is a normal state with a one-sentence reason, each
per-field query may fail on its own (NotSupported on some boards) and only that field is lost, and devices are
matched by UUID. `TelemetrySampler` takes a reading at a fixed rate on a daemon thread and keeps a bounded
history under a lock, so a UI only ever reads what is already there.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar


@dataclass(frozen=True)
class GpuProcess:
    """A process holding a context on a GPU."""

    pid: int
    name: str
    """The process name from psutil, else "?" (gone, not ours to see, or in another PID namespace)."""
    memory_used: int | None
    """Bytes of GPU memory; None when NVML does not say (e.g. on Windows under WDDM, or without permission)."""


@dataclass(frozen=True)
class GpuSample:
    """One reading of one GPU; a field NVML could not give on this board is None."""

    index: int
    """NVML's index: the physical (PCI bus) order, which CUDA's numbering need not follow (see visible_gpus)."""
    name: str
    uuid: str
    """"GPU-..." as NVML and CUDA_VISIBLE_DEVICES spell it; "" when NVML would not say."""
    utilization: float | None
    """Percent of the last sample period in which a kernel ran."""
    memory_used: int
    """Bytes; 0 with memory_total when NVML would not say."""
    memory_total: int
    temperature: int | None
    """Degrees Celsius."""
    power_draw: float | None
    """Watts."""
    power_limit: float | None
    """Watts: the enforced limit."""
    processes: tuple[GpuProcess, ...] = ()

    @property
    def memory_free(self) -> int:
        return max(self.memory_total - self.memory_used, 0)


def bare_gpu_uuid(uuid: str) -> str:
    """A GPU's UUID without NVML's `GPU-` prefix, which torch's `device_properties.uuid` leaves out: how a
    run's GPU is matched to NVML's, whoever recorded it."""
    return uuid.removeprefix("GPU-")


@dataclass(frozen=True)
class CpuSample:
    """The machine's CPU, and the watched (trainer) process when there is one."""

    utilization: float
    """Percent of the whole machine, since the previous reading."""
    load_average: tuple[float, float, float]
    cores: int
    process_cpu: float | None
    """Percent of one core (a process on four busy cores reads 400), of the watched process."""
    process_rss: int | None
    """Bytes resident, of the watched process."""


@dataclass(frozen=True)
class TelemetrySnapshot:
    """Everything read at one moment."""

    time: float
    cpu: CpuSample
    gpus: tuple[GpuSample, ...]
    nvml_error: str | None
    """None when NVML works, else one sentence saying why it is unavailable."""


# NVML ------------------------------------------------------------------------------------------------


class _NvmlSession:
    """NVML initialised once per process and kept: nvmlInit costs tens of milliseconds and each call after
    it is cheap. A failure is kept too, so an absent driver is not looked for again every second."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tried = False
        self.module: Any = None
        self.error: str | None = None

    def get(self) -> tuple[Any, str | None]:
        """The initialised pynvml module, or (None, why not)."""
        with self.lock:
            if not self.tried:
                self.tried = True
                self.module, self.error = _init_nvml()
            return self.module, self.error


_session = _NvmlSession()


def _init_nvml() -> tuple[Any, str | None]:
    try:
        import pynvml
    except ImportError:
        return None, "NVML unavailable: the nvidia-ml-py package is not installed."
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as error:
        return None, _nvml_reason(pynvml, error)
    except OSError as error:  # a library that is there but cannot be loaded
        return None, f"NVML unavailable: cannot load the NVML library ({error})."
    return pynvml, None


def _nvml_reason(nvml: Any, error: Exception) -> str:
    """One sentence on why NVML cannot be used."""
    if isinstance(error, getattr(nvml, "NVMLError_LibraryNotFound", ())):
        library = "libnvidia-ml.so.1" if sys.platform.startswith("linux") else "the NVML library"
        return f"NVML unavailable: no NVIDIA driver found ({library} missing)."
    if isinstance(error, getattr(nvml, "NVMLError_DriverNotLoaded", ())):
        return "NVML unavailable: the NVIDIA driver is not loaded."
    if isinstance(error, getattr(nvml, "NVMLError_NoPermission", ())):
        return "NVML unavailable: no permission to query the NVIDIA driver."
    return f"NVML unavailable: {error}."


def _query(nvml: Any, function: str, *args: Any) -> Any:
    """One NVML call, or None if this board, driver or binding does not support it."""
    call = getattr(nvml, function, None)
    if call is None:
        return None
    try:
        return call(*args)
    except nvml.NVMLError:
        return None


def _text(value: Any) -> str:
    """NVML strings are bytes in older bindings and str in newer ones."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def _process_name(pid: int) -> str:
    import psutil

    try:
        return str(psutil.Process(pid).name())
    except (psutil.Error, OSError):
        return "?"


def _gpu_processes(nvml: Any, handle: Any) -> tuple[GpuProcess, ...]:
    """Compute and graphics processes, each pid once (one doing both is listed by both calls)."""
    memory: dict[int, int | None] = {}
    for function in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
        for process in _query(nvml, function, handle) or ():
            pid = int(process.pid)
            used = getattr(process, "usedGpuMemory", None)
            if memory.get(pid) is None:
                memory[pid] = None if used is None else int(used)
    return tuple(GpuProcess(pid, _process_name(pid), used) for pid, used in sorted(memory.items()))


def _read_gpu(nvml: Any, index: int) -> GpuSample | None:
    handle = _query(nvml, "nvmlDeviceGetHandleByIndex", index)
    if handle is None:  # lost, or not ours to see: the other GPUs still stand
        return None
    utilization = _query(nvml, "nvmlDeviceGetUtilizationRates", handle)
    memory = _query(nvml, "nvmlDeviceGetMemoryInfo", handle)
    temperature = _query(nvml, "nvmlDeviceGetTemperature", handle, getattr(nvml, "NVML_TEMPERATURE_GPU", 0))
    power = _query(nvml, "nvmlDeviceGetPowerUsage", handle)
    limit = _query(nvml, "nvmlDeviceGetEnforcedPowerLimit", handle)
    return GpuSample(
        index=index,
        name=_text(_query(nvml, "nvmlDeviceGetName", handle)) or "?",
        uuid=_text(_query(nvml, "nvmlDeviceGetUUID", handle)),
        utilization=None if utilization is None else float(utilization.gpu),
        memory_used=0 if memory is None else int(memory.used),
        memory_total=0 if memory is None else int(memory.total),
        temperature=None if temperature is None else int(temperature),
        power_draw=None if power is None else power / 1000,  # NVML speaks milliwatts
        power_limit=None if limit is None else limit / 1000,
        processes=_gpu_processes(nvml, handle),
    )


def read_gpus() -> tuple[list[GpuSample], str | None]:
    """All GPUs NVML sees, in NVML's order, or ([], reason)."""
    nvml, error = _session.get()
    if nvml is None:
        return [], error
    try:
        count = nvml.nvmlDeviceGetCount()
    except nvml.NVMLError as failure:
        return [], _nvml_reason(nvml, failure)
    return [gpu for gpu in (_read_gpu(nvml, index) for index in range(count)) if gpu is not None], None


def visible_gpus(gpus: Sequence[GpuSample], cuda_visible_devices: str | None) -> list[GpuSample]:
    """The GPUs CUDA numbers 0..n-1 for this process, in CUDA order.

    `CUDA_VISIBLE_DEVICES` may name GPUs by NVML index, full UUID or a UUID prefix (`GPU-1a2b`); as CUDA
    does, the list ends at the first entry that names no GPU, or one already named, or one that is
    ambiguous. None (unset) means all GPUs; "" means none. MIG instances (`MIG-...`) end the list too: they
    are not whole GPUs, and matching them is not needed here. CUDA's order is NVML's (PCI bus order) when
    `CUDA_DEVICE_ORDER=PCI_BUS_ID`, and on a box of identical GPUs; otherwise match by UUID.
    """
    by_index = sorted(gpus, key=lambda gpu: gpu.index)
    if cuda_visible_devices is None:
        return by_index
    chosen: list[GpuSample] = []
    for entry in (part.strip() for part in cuda_visible_devices.split(",")):
        if entry.isdigit():
            matches = [gpu for gpu in by_index if gpu.index == int(entry)]
        elif entry.startswith("GPU-"):
            matches = [gpu for gpu in by_index if gpu.uuid.startswith(entry)]
        else:
            matches = []
        if len(matches) != 1 or matches[0] in chosen:
            break
        chosen.append(matches[0])
    return chosen


def pick_freest(free_bytes: Sequence[int]) -> int:
    """The index of the largest free memory, the lowest index on a tie; 0 for an empty list. What `auto`
    picks among the visible GPUs: here, torch-free, so the settings pane can say so before torch loads."""
    return max(range(len(free_bytes)), key=lambda i: (free_bytes[i], -i)) if free_bytes else 0


def gpu_for_cuda_ordinal(ordinal: int, gpus: Sequence[GpuSample] | None = None,
                         env: Mapping[str, str] | None = None) -> GpuSample | None:
    """The GPU that `cuda:ordinal` means in a process with environment `env` (default: this one's), or
    None. `gpus` defaults to a fresh reading."""
    if gpus is None:
        gpus = read_gpus()[0]
    environment = os.environ if env is None else env
    visible = visible_gpus(gpus, environment.get("CUDA_VISIBLE_DEVICES"))
    return visible[ordinal] if 0 <= ordinal < len(visible) else None


# CPU ---------------------------------------------------------------------------------------------------


class _CpuMeter:
    """psutil's CPU percentages are since the previous call on the same object: keep the objects, and
    give the first call a short interval of its own, so that the first reading is not a meaningless 0."""

    PRIME_SECONDS = 0.1

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.primed = False
        self.process: Any = None

    def read(self, pid: int | None) -> CpuSample:
        import psutil

        with self.lock:
            fresh = not self.primed
            if self.process is None or self.process.pid != pid:
                self.process = None if pid is None else _open_process(pid)
                fresh = fresh or self.process is not None
            if fresh:  # start both clocks, and let a little time pass
                psutil.cpu_percent(None)
                _process_cpu(self.process)
                time.sleep(self.PRIME_SECONDS)
                self.primed = True
            utilization = float(psutil.cpu_percent(None))
            process_cpu, process_rss = _process_cpu(self.process), _process_rss(self.process)
        try:
            load = psutil.getloadavg()
        except (OSError, AttributeError):
            load = (0.0, 0.0, 0.0)
        return CpuSample(utilization, (float(load[0]), float(load[1]), float(load[2])),
                         psutil.cpu_count() or os.cpu_count() or 1, process_cpu, process_rss)


def _open_process(pid: int) -> Any:
    import psutil

    try:
        return psutil.Process(pid)
    except (psutil.Error, OSError):
        return None


T = TypeVar("T")


def _read_process(process: Any, read: Callable[[Any], T]) -> T | None:
    """One reading of a trainer process, None when there is none or it has just gone away."""
    import psutil

    if process is None:
        return None
    try:
        return read(process)
    except (psutil.Error, OSError):
        return None


def _process_cpu(process: Any) -> float | None:
    return _read_process(process, lambda p: float(p.cpu_percent(None)))


def _process_rss(process: Any) -> int | None:
    return _read_process(process, lambda p: int(p.memory_info().rss))


_cpu_meter = _CpuMeter()


def sample(pid: int | None = None) -> TelemetrySnapshot:
    """One reading of every GPU and the CPU, watching process `pid` if given. It blocks (NVML, and a tenth
    of a second the first time a CPU figure is taken): call it off the UI thread."""
    gpus, error = read_gpus()
    return TelemetrySnapshot(time.time(), _cpu_meter.read(pid), tuple(gpus), error)


class TelemetrySampler:
    """Readings at a fixed rate on a daemon thread, with a bounded history read under a lock."""

    def __init__(self, interval: float = 1.0, history_seconds: float = 300.0, pid: int | None = None,
                 read: Callable[[int | None], TelemetrySnapshot] | None = None) -> None:
        """Args:
            interval: seconds between readings.
            history_seconds: how far back `history()` goes.
            pid: the process to watch (the trainer), if any; see `set_pid`.
            read: takes one reading for a pid (default: `sample`).
        """
        self.interval = interval
        self._read = read
        self._pid = pid
        self._lock = threading.Lock()
        self._history: deque[TelemetrySnapshot] = deque(maxlen=max(1, round(history_seconds / interval)))
        self._stopping = threading.Event()
        """The running thread's: each start makes a new one, so a thread told to stop stays stopped."""
        self._thread: threading.Thread | None = None

    def set_pid(self, pid: int | None) -> None:
        """Watch another process (from the next reading)."""
        with self._lock:
            self._pid = pid

    def latest(self) -> TelemetrySnapshot | None:
        with self._lock:
            return self._history[-1] if self._history else None

    def history(self) -> list[TelemetrySnapshot]:
        with self._lock:
            return list(self._history)

    def start(self) -> None:
        """Begin sampling (the first reading at once); a second call while it samples does nothing."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(self._stopping,), name="telemetry", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop sampling, waiting up to `timeout` for a reading under way (0: not at all, as on a UI
        thread; the thread then ends by itself); the history stays readable."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self, stopping: threading.Event) -> None:
        read = self._read or sample
        while not stopping.is_set():
            began = time.monotonic()
            with self._lock:
                pid = self._pid
            try:
                snapshot = read(pid)
            except Exception:  # telemetry is an aid: one bad reading (a driver hiccup) must not end it
                snapshot = None
            if snapshot is not None and not stopping.is_set():
                with self._lock:
                    self._history.append(snapshot)
            stopping.wait(max(0.0, self.interval - (time.monotonic() - began)))


def gpu_to_json(gpu: GpuSample) -> dict[str, Any]:
    fields = asdict(gpu)
    fields["memory_free"] = gpu.memory_free
    fields["processes"] = [asdict(process) for process in gpu.processes]
    return fields


def to_json(snapshot: TelemetrySnapshot) -> dict[str, Any]:
    """The reading as `devices --json` prints it: {"cpu": {...}, "gpus": [{...}], "nvml": None | reason}."""
    cpu = asdict(snapshot.cpu)
    cpu["load_average"] = list(snapshot.cpu.load_average)
    return {"cpu": cpu, "gpus": [gpu_to_json(gpu) for gpu in snapshot.gpus], "nvml": snapshot.nvml_error}
