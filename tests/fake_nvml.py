"""A small stand-in for the `pynvml` module (nvidia-ml-py), at the boundary telemetry reads through.

Two boards: GPU 0 answers everything (with its name as bytes, as older bindings return it); GPU 1 is an
older board that supports neither utilisation, temperature nor power (NotSupported), and names itself
in str. Processes: pid 4242 computes on GPU 0 and also shows as a graphics process; pid 99999999 (no such
process) holds memory NVML will not measure.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest

import mnist_tui.telemetry as telemetry

NVML_TEMPERATURE_GPU = 0
GIB = 2**30
UUIDS = ("GPU-1a2b3c4d-0000-1111-2222-333344445555", "GPU-1a9f8e7d-6666-7777-8888-999900001111")
GONE_PID = 99999999


class NVMLError(Exception):
    """As pynvml's: one class per error code."""


class NVMLError_NotSupported(NVMLError):  # pynvml names them so
    pass


class NVMLError_LibraryNotFound(NVMLError):
    pass


class NVMLError_DriverNotLoaded(NVMLError):
    pass


@dataclass
class Utilization:
    gpu: int
    memory: int


@dataclass
class Memory:
    total: int
    used: int
    free: int


@dataclass
class Process:
    pid: int
    usedGpuMemory: int | None


@dataclass
class Board:
    name: str | bytes
    uuid: str
    total: int
    used: int
    utilization: int | None
    temperature: int | None
    power_mw: int | None
    limit_mw: int | None
    compute: list[Process]
    graphics: list[Process]


def boards(trainer_pid: int) -> list[Board]:
    return [
        Board(b"NVIDIA H100 80GB HBM3", UUIDS[0], 80 * GIB, 9 * GIB, 97, 64, 312_500, 700_000,
              [Process(trainer_pid, 8 * GIB)], [Process(trainer_pid, None)]),
        Board("Tesla K80", UUIDS[1], 12 * GIB, 1 * GIB, None, None, None, None, [Process(GONE_PID, None)], []),
    ]


def make_module(trainer_pid: int, init_error: type[NVMLError] | None = None) -> ModuleType:
    """A fake `pynvml` with the boards above; `init_error` makes nvmlInit fail with it."""
    module = ModuleType("pynvml")
    state: dict[str, Any] = {"boards": boards(trainer_pid), "inits": 0}

    def board(handle: int) -> Board:
        board: Board = state["boards"][handle]
        return board

    def supported(value: Any) -> Any:
        if value is None:
            raise NVMLError_NotSupported("Not Supported")
        return value

    def init() -> None:
        state["inits"] += 1
        if init_error is not None:
            raise init_error("fake failure")

    functions: dict[str, Any] = {
        "nvmlInit": init,
        "nvmlDeviceGetCount": lambda: len(state["boards"]),
        "nvmlDeviceGetHandleByIndex": lambda index: index,
        "nvmlDeviceGetName": lambda h: board(h).name,
        "nvmlDeviceGetUUID": lambda h: board(h).uuid,
        "nvmlDeviceGetUtilizationRates": lambda h: Utilization(supported(board(h).utilization), 0),
        "nvmlDeviceGetMemoryInfo": lambda h: Memory(board(h).total, board(h).used, board(h).total - board(h).used),
        "nvmlDeviceGetTemperature": lambda h, sensor: supported(board(h).temperature),
        "nvmlDeviceGetPowerUsage": lambda h: supported(board(h).power_mw),
        "nvmlDeviceGetEnforcedPowerLimit": lambda h: supported(board(h).limit_mw),
        "nvmlDeviceGetComputeRunningProcesses": lambda h: board(h).compute,
        "nvmlDeviceGetGraphicsRunningProcesses": lambda h: board(h).graphics,
    }
    for name, value in functions.items():
        setattr(module, name, value)
    for cls in (NVMLError, NVMLError_NotSupported, NVMLError_LibraryNotFound, NVMLError_DriverNotLoaded):
        setattr(module, cls.__name__, cls)
    module.NVML_TEMPERATURE_GPU = NVML_TEMPERATURE_GPU  # type: ignore[attr-defined]
    module.state = state  # type: ignore[attr-defined]
    return module


def install(monkeypatch: pytest.MonkeyPatch, trainer_pid: int = 4242,
            init_error: type[NVMLError] | None = None) -> Any:
    """Put the fake in place of `pynvml`, with a fresh NVML session so that telemetry initialises it; the
    module comes back typed loosely, so that a test may replace its functions."""
    module = make_module(trainer_pid, init_error)
    monkeypatch.setitem(sys.modules, "pynvml", module)
    monkeypatch.setattr(telemetry, "_session", telemetry._NvmlSession())
    return module
