"""Pilot tests of the settings pane as the settings' declarations draw it, and of its device line and F5,
which must not wait on torch."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import fake_nvml
import pytest
import torch
from textual import on
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Checkbox, Input, Label, Select, Static
from textual.widgets._select import InvalidSelectValueError

import mnist_tui.batches as batches
import mnist_tui.telemetry as telemetry
import mnist_tui.tui.screens.settings as settings
from mnist_tui.config import SETTINGS, TrainConfig
from mnist_tui.telemetry import GpuSample
from mnist_tui.tui.app import MnistTuiApp
from mnist_tui.tui.messages import StartRun
from mnist_tui.tui.screens.settings import SettingsScreen, auto_device_guess

SIZE = (120, 40)


async def wait_for(pilot: Pilot[None], condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.05)


class SettingsHost(App[None]):
    """The settings pane alone, keeping the runs it is asked to start rather than starting trainers."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__()
        self.data_dir = data_dir
        self.started: list[TrainConfig] = []

    def on_mount(self) -> None:
        self.push_screen(SettingsScreen(self.data_dir, download=True))

    @on(StartRun)
    def keep(self, message: StartRun) -> None:
        self.started.append(message.config)


async def test_the_form_is_drawn_from_the_settings_declarations(tmp_path: Path) -> None:
    app = MnistTuiApp(data_dir=tmp_path / "data", runs_dir=tmp_path / "runs", download=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, SettingsScreen)

        def help_line() -> str:
            return str(screen.query_one("#help-text", Static).render())

        def help_shows(start: str) -> Callable[[], bool]:  # focus is taken, and the help follows, in turns
            return lambda: help_line().startswith(start)

        labels = [str(label.render()) for label in screen.query(".field-label").results(Label)]
        assert labels == [spec.label for spec in SETTINGS.values()]
        for name, spec in SETTINGS.items():
            control = screen.control(name)
            if spec.choices:
                assert isinstance(control, Select)
                for choice in spec.choices:
                    control.value = choice
                with pytest.raises(InvalidSelectValueError):
                    control.value = "not-a-choice"
            elif spec.kind is bool:
                assert isinstance(control, Checkbox) and str(control.label) == spec.caption
            elif name != "device":  # the device list is this machine's
                assert isinstance(control, Input)
            control.focus()
            await wait_for(pilot, help_shows(spec.label))
            assert "`" not in help_line()
            assert " ".join(spec.help.replace("`", "").split()) in " ".join(help_line().split())
        # What a range allows is said with the help, in the validator's words.
        screen.control("batch_size").focus()
        await wait_for(pilot, help_shows("batch size (batch_size): "))
        assert help_line().endswith("An integer from 1 to 60000.")


def test_the_guess_at_auto_needs_neither_torch_nor_a_gpu() -> None:
    assert auto_device_guess(None, 4) == "Device: 4 CPU cores; looking for GPUs…"
    assert auto_device_guess([], 4, "linux") == "Device: auto → [b]cpu[/b] (4 cores)"
    assert "mps" in auto_device_guess([], 4, "darwin")
    full = GpuSample(0, "NVIDIA H100 80GB HBM3", "GPU-a", 50.0, 70 * 2**30, 80 * 2**30, None, None, None)
    free = GpuSample(1, "NVIDIA H100 80GB HBM3", "GPU-b", 0.0, 1 * 2**30, 80 * 2**30, None, None, None)
    assert auto_device_guess([full, free], 4) == "Device: auto → [b]cuda:1[/b], H100 80GB HBM3 · 79 GiB free · 0%"


@pytest.mark.parametrize("gpus", [False, True], ids=["cpu", "gpus"])
async def test_the_device_line_says_what_auto_picks_before_torch_answers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gpus: bool) -> None:
    torch_may_answer = threading.Event()

    def slow_resolve(requested: str) -> torch.device:  # as torch's import takes seconds on a busy box
        torch_may_answer.wait(30)
        return torch.device("cpu")

    monkeypatch.setattr(batches, "resolve_device", slow_resolve)
    monkeypatch.setattr(batches, "describe_device", lambda device: "CPU (3 threads)")
    monkeypatch.setattr(settings, "usable_cores", lambda: 3)
    if gpus:
        fake_nvml.install(monkeypatch)
    else:
        monkeypatch.setattr(telemetry, "read_gpus", lambda: ([], "NVML unavailable: none here."))
    app = MnistTuiApp(data_dir=tmp_path / "data", runs_dir=tmp_path / "runs", download=False)
    async with app.run_test(size=SIZE) as pilot:
        line = app.screen.query_one("#device-status", Static)
        try:
            guess = "auto → cuda:0, H100 80GB HBM3 · 71 GiB free · 97%" if gpus else "auto → cpu (3 cores)"
            await wait_for(pilot, lambda: guess in str(line.render()))
            await pilot.pause(0.5)  # torch's probe has begun, and waits
            assert guess in str(line.render())
            assert "probing" not in str(line.render())
        finally:
            torch_may_answer.set()
        await wait_for(pilot, lambda: "CPU (3 threads)" in str(line.render()))
        assert str(line.render()) == "Device: auto → cpu, CPU (3 threads)"


async def test_f5_asks_torch_about_a_device_only_off_the_ui_thread(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    asked_on_ui_thread: list[str] = []
    missing = {"cuda:1"}

    def resolve(requested: str) -> torch.device:
        if threading.current_thread() is threading.main_thread():
            asked_on_ui_thread.append(requested)
        if requested in missing:
            raise batches.DeviceError(f"device {requested} asked for, but only 1 GPU(s) are visible")
        return torch.device("cpu")

    monkeypatch.setattr(batches, "resolve_device", resolve)
    monkeypatch.setattr(telemetry, "read_gpus", lambda: ([], "NVML unavailable: none here."))
    app = SettingsHost(tmp_path / "data")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, SettingsScreen)
        # auto and cpu are on every machine: F5 starts at once.
        await pilot.press("f5")
        await wait_for(pilot, lambda: len(app.started) == 1)
        assert [config.device for config in app.started] == ["auto"]

        # Another device is checked off the UI thread: marked if missing, started if there.
        screen.set_value("device", "cuda:1")
        field = screen.query_one("#field-device")
        await pilot.press("f5")
        await wait_for(pilot, lambda: field.has_class("-invalid"))
        await app.workers.wait_for_complete()
        assert len(app.started) == 1
        assert "only 1 GPU(s) are visible" in str(field.query_one(".field-error", Static).render())
        missing.clear()
        await pilot.press("f5")
        await wait_for(pilot, lambda: len(app.started) == 2)
        assert [config.device for config in app.started] == ["auto", "cuda:1"]
    assert asked_on_ui_thread == []
