"""Pilot tests of telemetry in the dashboard: the training panel's device strip (a GPU run's figures from a
fake NVML, a CPU run's trainer figures), its room at 80x24, and the settings pane's GPU list."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import fake_nvml
import pytest
from fake_events import run_events
from fake_nvml import UUIDS
from textual.pilot import Pilot
from textual.widgets import Select, Static

import mnist_tui.telemetry as telemetry
import mnist_tui.tui.screens.settings as settings
from mnist_tui.events import RunStarted
from mnist_tui.runs import RunDir
from mnist_tui.session import TrainingSession
from mnist_tui.telemetry import CpuSample, TelemetrySnapshot
from mnist_tui.tui.app import MnistTuiApp
from mnist_tui.tui.screens.training import TrainingScreen
from mnist_tui.tui.widgets.telemetry import DeviceStrip, ScaledSparkline


def make_app(tmp_path: Path) -> MnistTuiApp:
    return MnistTuiApp(data_dir=tmp_path / "data", runs_dir=tmp_path / "runs", download=False, refresh_seconds=0.05)


async def wait_for(pilot: Pilot[None], condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.05)


def strip_text(screen: TrainingScreen) -> str:
    return " ".join(str(static.render()) for static in screen.query_one(DeviceStrip).query(Static)
                    if static.display)


async def follow(app: MnistTuiApp, pilot: Pilot[None], tmp_path: Path, started: RunStarted,
                 pid: int | None = None) -> TrainingScreen:
    """The panel following a live run (trainer `pid`, as its status.json names it) that has begun its
    first epoch."""
    run = RunDir(tmp_path / "runs" / "demo")
    run.path.mkdir(parents=True)
    if pid is not None:
        run.set_status("running", pid=pid)
    screen = app.training_screen
    screen.follow(TrainingSession(run))
    await pilot.press("f3")
    screen.receive(started, *run_events()[1:6])
    await wait_for(pilot, lambda: "util" in strip_text(screen) or "trainer" in strip_text(screen))
    await pilot.pause(0.1)  # laid out with its figures
    return screen


def gpu_run(uuid: str = "") -> RunStarted:
    started = run_events()[0]
    assert isinstance(started, RunStarted)
    return replace(started, device="cuda:0", device_name="NVIDIA H100 80GB HBM3", device_uuid=uuid)


@pytest.mark.parametrize("uuid", [UUIDS[0], UUIDS[0].removeprefix("GPU-")], ids=["nvml", "torch"])
async def test_a_gpu_run_shows_its_gpu_found_by_uuid_whatever_cuda_numbers_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uuid: str) -> None:
    fake_nvml.install(monkeypatch)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # cuda:0 here would be the K80; the trainer said H100
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        # As NVML spells the UUID, or as torch's device properties do, without `GPU-`.
        screen = await follow(app, pilot, tmp_path, gpu_run(uuid))
        assert strip_text(screen) == "GPU 0 H100 80GB HBM3 util 97% mem 9.0 GiB/80 GiB 64°C · 312/700 W"
        sparks = list(screen.query(ScaledSparkline))
        assert all(spark.display for spark in sparks)
        assert [spark.data for spark in sparks] == [[0.97], [9 / 80]]
        assert [spark.region.width for spark in sparks] == [24, 24]

        # The run ends: the strip goes, and so does the sampler's thread.
        screen.receive(*run_events()[6:])
        await wait_for(pilot, lambda: screen.state == "completed")
        await pilot.pause(0.1)
        assert not screen.query_one(DeviceStrip).display and screen.sampler is None


async def test_a_gpu_run_without_a_uuid_is_found_by_its_ordinal_and_shows_what_the_board_will_say(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nvml.install(monkeypatch)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await follow(app, pilot, tmp_path, gpu_run())
        assert strip_text(screen) == "GPU 1 Tesla K80 util - mem 1.0 GiB/12 GiB"
        assert screen.device_uuid == UUIDS[1].removeprefix("GPU-")  # remembered: found by it from now on


async def test_a_gpu_run_on_a_machine_without_nvml_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    fake_nvml.install(monkeypatch, init_error=fake_nvml.NVMLError_DriverNotLoaded)
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        run = RunDir(tmp_path / "runs" / "demo")
        run.path.mkdir(parents=True)
        screen = app.training_screen
        screen.follow(TrainingSession(run))
        await pilot.press("f3")
        screen.receive(gpu_run(UUIDS[0]), *run_events()[1:6])
        await wait_for(pilot, lambda: "NVML" in strip_text(screen))
        assert strip_text(screen) == "cuda:0: NVML unavailable: the NVIDIA driver is not loaded."
        assert not any(spark.display for spark in screen.query(ScaledSparkline))


def fixed_cpu(watched: list[int | None]) -> Callable[[int | None], TelemetrySnapshot]:
    def read(pid: int | None) -> TelemetrySnapshot:
        watched.append(pid)
        return TelemetrySnapshot(time.time(), CpuSample(95.0, (1.9, 1.5, 1.0), 2, 187.0, 1536 * 2**20), (),
                                 "NVML unavailable: test.")

    return read


async def test_a_cpu_run_shows_its_trainer_and_the_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    watched: list[int | None] = []
    monkeypatch.setattr(telemetry, "sample", fixed_cpu(watched))
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await follow(app, pilot, tmp_path, run_events()[0], pid=os.getpid())  # type: ignore[arg-type]
        assert strip_text(screen) == "CPU trainer 187% rss 1.5 GiB machine 95% of 2 cores"
        load, memory = screen.query(ScaledSparkline)
        assert load.display and load.data == [187 / 200] and not memory.display
        assert watched[0] == os.getpid()  # the trainer named in the run's status.json


async def test_the_strip_takes_one_line_at_80x24_and_leaves_the_charts_their_room(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nvml.install(monkeypatch)
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await follow(app, pilot, tmp_path, gpu_run(UUIDS[0]))
        strip = screen.query_one(DeviceStrip)
        assert strip.region.height == 1
        assert strip.region.right <= 80
        for chart_id in ("#loss-chart", "#accuracy-chart"):
            chart = screen.query_one(chart_id).region
            assert chart.height >= 8 and chart.bottom <= 24 - 1 - 6  # the log and the footer below it
        # Every figure fits; the sparklines share what is left.
        assert "312/700 W" in strip_text(screen)
        assert screen.query_one("#strip-rest").region.right <= 80


async def test_settings_list_every_gpu_with_free_memory_and_utilisation_and_follow_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = fake_nvml.install(monkeypatch)
    monkeypatch.setattr(settings, "GPU_REFRESH_SECONDS", 0.1)
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        select = app.screen.query_one("#input-device", Select)

        def options() -> list[tuple[str, str]]:
            return [(str(prompt), str(value)) for prompt, value in select._options]

        await wait_for(pilot, lambda: len(options()) == 6, seconds=30)  # torch is imported on the way
        assert options() == [("auto", "auto"), ("cpu", "cpu"), ("cuda", "cuda"), ("mps", "mps"),
                             ("cuda:0 · H100 80GB HBM3 · 71 GiB free · 97%", "cuda:0"),
                             ("cuda:1 · Tesla K80 · 11 GiB free", "cuda:1")]
        assert select.value == "auto"
        select.value = "cuda:1"
        module.state["boards"][0].utilization = 3
        await wait_for(pilot, lambda: options()[4][0].endswith("· 3%"))
        assert select.value == "cuda:1"
        # Not read while another screen is shown.
        await pilot.press("f4")
        await pilot.pause(0.3)
        module.state["boards"][0].utilization = 50
        await pilot.pause(0.4)
        assert options()[4][0].endswith("· 3%")
