"""Pilot tests of the dashboard: navigation, validation, the training panel fed with events, evaluation."""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import MnistModel, Trained, dead_pid, small_config
from fake_events import run_events
from textual.app import App, ComposeResult
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Button, Checkbox, DataTable, Input, ProgressBar, RichLog, Select, Static

from mnist_tui.config import TrainConfig
from mnist_tui.events import EpochEnded, RunFailed, RunFinished, RunPaused, RunPreparing, RunResumed, RunStarted
from mnist_tui.runs import RunDir, create_run
from mnist_tui.runview import RunView, Trail, fold
from mnist_tui.session import TrainingSession
from mnist_tui.tui.app import MnistTuiApp
from mnist_tui.tui.screens.dialogs import ChoiceDialog, KeysScreen
from mnist_tui.tui.screens.evaluation import EvaluationScreen
from mnist_tui.tui.screens.runs import RunsScreen
from mnist_tui.tui.screens.settings import SettingsScreen
from mnist_tui.tui.screens.training import TrainingScreen
from mnist_tui.tui.widgets.charts import AccuracyChart, Chart, LossChart, RunsChart, legend_label, smoothed
from mnist_tui.tui.widgets.digit import DigitImage, render_rows
from mnist_tui.tui.widgets.tabs import ScreenTab

SIZE = (80, 24)


def make_app(data_dir: Path, runs_dir: Path) -> MnistTuiApp:
    return MnistTuiApp(data_dir=data_dir, runs_dir=runs_dir, download=False, refresh_seconds=0.05)


async def test_function_keys_switch_screens_and_question_mark_shows_keys(tmp_path: Path) -> None:
    app = make_app(tmp_path / "data", tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, SettingsScreen)
        await pilot.press("f3")
        assert isinstance(app.screen, TrainingScreen)
        await pilot.press("f4")
        assert isinstance(app.screen, EvaluationScreen)
        await pilot.press("f2")
        assert isinstance(app.screen, SettingsScreen)
        settings = app.screen
        await pilot.press("question_mark")
        assert isinstance(app.screen, KeysScreen)
        await pilot.press("question_mark")
        assert app.screen is settings
        app.screen.query_one("#input-lr", Input).focus()  # where `?` is text, F1 still shows the keys
        await pilot.press("f1")
        assert isinstance(app.screen, KeysScreen)
        await pilot.press("escape")
        assert app.screen is settings

        # The tab line: the current screen lit, and a click on another goes there.
        lit = [str(tab.render()) for tab in app.screen.query(ScreenTab) if tab.has_class("-current")]
        assert lit == ["F2 Settings"]
        await pilot.click(next(tab for tab in app.screen.query(ScreenTab) if tab.screen_name == "runs"))
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)
        assert [tab.screen_name for tab in app.screen.query(ScreenTab) if tab.has_class("-current")] == ["runs"]


async def test_each_screen_is_a_mode_built_when_first_shown_and_the_quit_dialog_comes_over_any(
        tmp_path: Path) -> None:
    app = make_app(tmp_path / "data", tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        assert app.current_mode == "settings" and set(app.built_screens) == {"settings"}  # start-up builds one
        await pilot.press("f6")
        assert app.current_mode == "runs" and set(app.built_screens) == {"settings", "runs"}
        runs = app.screen
        await pilot.press("f6")  # its own key: nothing to do, so `?` does not list it
        assert app.screen is runs
        assert not app.check_action("show", ("runs",)) and app.check_action("show", ("training",))
        await pilot.press("f2", "f6")
        assert app.screen is runs, "a screen shown again is the same screen, as it was left"

        training = create_run(tmp_path / "runs", small_config())
        training.set_status("running")  # alive: this process stands in for its trainer
        for opened in ((), ("question_mark",)):  # over the runs screen, and over the keys listed on it
            await pilot.press(*opened)
            under = app.screen
            await pilot.press("ctrl+q")
            await pilot.pause()
            assert isinstance(app.screen, ChoiceDialog) and app.screen_stack[-2] is under
            await pilot.press("f3")  # a dialog holds the keys until it is answered
            assert isinstance(app.screen, ChoiceDialog) and app.current_mode == "runs"
            await pilot.press("escape")
            assert app.screen is under and app.is_running
            await pilot.press(*("escape",) * len(opened))
        assert app.screen is runs


async def test_invalid_value_is_marked_at_its_field_and_start_is_refused(tmp_path: Path) -> None:
    app = make_app(tmp_path / "data", tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        batch = app.screen.query_one("#input-batch_size", Input)
        batch.focus()
        batch.value = ""
        await pilot.press("0")
        await pilot.pause()
        field = app.screen.query_one("#field-batch_size")
        assert field.has_class("-invalid")
        assert "batch_size must be an integer from 1 to 60000, got 0" in str(
            field.query_one(".field-error", Static).render())
        await pilot.press("f5")
        await pilot.pause()
        assert app.session is None
        assert isinstance(app.screen, SettingsScreen)
        assert any("Fix the marked settings" in n.message for n in app._notifications)
        assert not (tmp_path / "runs").exists()

        batch.value = "128"
        await pilot.pause()
        assert not field.has_class("-invalid")

        # The check across two fields follows either of them, as typed.
        split = app.screen.query_one("#input-val_split", Input)
        batch.value, split.value = "60000", "0.5"
        await pilot.pause()
        assert "batch_size must be at most 30000" in str(field.query_one(".field-error", Static).render())
        split.value = "0"
        await pilot.pause()
        assert not field.has_class("-invalid")

        # A field's help, written for --help too, shows its `code` spans in bold rather than with backticks.
        app.screen.query_one("#input-optimizer", Select).focus()
        await pilot.pause()
        help_text = app.screen.query_one("#help-text", Static).render()
        assert "adamw" in str(help_text) and "`" not in str(help_text)

        # Past the last field, the side panel's controls say what Enter on them does.
        app.screen.query_one("#input-num_threads", Input).focus()
        await pilot.press("tab", "tab", "tab", "tab", "tab")
        assert app.focused is not None and app.focused.id == "start"
        assert "start a run with these settings" in str(app.screen.query_one("#help-text", Static).render())


async def test_missing_data_is_marked_at_start_without_creating_a_run(tmp_path: Path) -> None:
    app = make_app(tmp_path / "data", tmp_path / "runs")  # no data there, downloads off
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f5")
        await pilot.pause()
        field = app.screen.query_one("#field-dataset")
        assert field.has_class("-invalid") and not (tmp_path / "runs").exists()
        assert "mnist is missing from" in str(field.query_one(".field-error", Static).render())


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
async def test_a_device_this_machine_lacks_is_marked_and_start_refused(tmp_path: Path) -> None:
    app = make_app(tmp_path / "data", tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        app.screen.query_one("#input-device", Select).value = "cuda"
        await pilot.pause()
        field = app.screen.query_one("#field-device")
        await pilot.press("f5")
        await wait_for(pilot, lambda: field.has_class("-invalid"))  # torch, off the UI thread, finds no CUDA
        await app.workers.wait_for_complete()
        assert app.session is None and not (tmp_path / "runs").exists()
        assert "CUDA is not available" in str(field.query_one(".field-error", Static).render())
        app.screen.query_one("#input-device", Select).value = "cpu"
        await pilot.pause()
        assert not field.has_class("-invalid")


async def test_choosing_cnn_moves_untouched_fields_to_its_defaults(tmp_path: Path) -> None:
    app = make_app(tmp_path / "data", tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, SettingsScreen)
        screen.query_one("#input-epochs", Input).value = "7"
        screen.query_one("#input-model", Select).value = "cnn"
        await pilot.pause()
        config = screen.current_config()
        assert config is not None
        assert (config.model, config.scheduler, config.lr, config.batch_size) == ("cnn", "onecycle", 0.003, 128)
        assert config.epochs == 7, "an edited field keeps the user's value"


async def test_presets_and_settings_file_round_trip(tmp_path: Path) -> None:
    app = make_app(tmp_path / "data", tmp_path / "runs")
    settings_file = tmp_path / "saved.toml"
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, SettingsScreen)
        await pilot.press("ctrl+n")
        await pilot.pause()
        screen.query_one("#settings-file", Input).value = str(settings_file)
        await pilot.press("ctrl+s")
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert screen.current_config() is not None and screen.current_config().model == "mlp"  # type: ignore[union-attr]
        await pilot.press("ctrl+o")
        await pilot.pause()
        loaded = screen.current_config()
        assert loaded is not None and (loaded.model, loaded.epochs) == ("cnn", 3)
    assert 'model = "cnn"' in settings_file.read_text()


async def test_dataset_status_says_what_to_do_when_missing(tmp_path: Path, synthetic_root: Path) -> None:
    app = make_app(tmp_path / "nowhere", tmp_path / "runs")
    async with app.run_test(size=SIZE):
        text = str(app.screen.query_one("#dataset-status", Static).render())
        assert "missing" in text and "mnist-tui data import" in text
    app = make_app(synthetic_root, tmp_path / "runs")
    async with app.run_test(size=SIZE):
        assert "present" in str(app.screen.query_one("#dataset-status", Static).render())


async def test_training_bars_move_only_while_a_trainer_starts(tmp_path: Path) -> None:
    """An indeterminate bar animates many times a second; with nothing training it would only cost CPU."""
    app = make_app(tmp_path / "data", tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        await pilot.pause()
        screen = app.training_screen
        bars = list(screen.query(ProgressBar))

        def totals() -> list[tuple[float | None, float]]:
            return [(bar.total, bar.progress) for bar in bars]

        assert totals() == [(1, 0), (1, 0)]
        for _ in range(2):  # a first run, then a second one: nothing of the first may linger
            screen.follow(TrainingSession(RunDir(tmp_path / "runs" / "demo")))
            await pilot.pause()
            assert [total for total, _ in totals()] == [None, None], "starting: the moving bar"
            assert str(screen.query_one("#run-eta", Static).render()) == ""
            stats = str(screen.query_one("#run-stats", Static).render())
            assert stats.endswith("· - img/s · loss - · training 0:00:00")  # what fits in 80 columns
            screen.receive(*run_events())
            await pilot.pause(0.2)
            assert totals() == [(20, 20), (10, 10)]
        screen.follow(TrainingSession(RunDir(tmp_path / "runs" / "demo")))
        screen.receive(RunFailed("dataset not found", str(tmp_path / "runs" / "demo")))
        await pilot.pause(0.2)
        assert totals() == [(1, 0), (1, 0)]


async def test_training_panel_follows_events(tmp_path: Path) -> None:
    app = make_app(tmp_path / "data", tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        screen = app.training_screen
        events = run_events()
        screen.receive(*events[:6])
        await pilot.pause(0.2)
        assert screen.state == "running"
        epoch_bar = screen.query_one("#epoch-bar", ProgressBar)
        assert (epoch_bar.progress, epoch_bar.total) == (5, 10)
        assert "50,000 img/s" in str(screen.query_one("#run-stats", Static).render())
        assert "eta" in str(screen.query_one("#run-eta", Static).render())

        assert (screen.check_action("toggle_pause", ("pause",)), screen.check_action("toggle_pause", ("resume",))
                ) == (True, False)
        screen.receive(RunPaused(1, 5))
        await pilot.pause(0.2)
        assert screen.state == "paused"
        # The footer names `p` for what it does now.
        assert (screen.check_action("toggle_pause", ("pause",)), screen.check_action("toggle_pause", ("resume",))
                ) == (False, True)
        await pilot.pause()
        assert "Resume" in [getattr(key, "description", "") for key in screen.query("FooterKey")]
        stats = str(screen.query_one("#run-stats", Static).render())
        assert "- img/s" in stats and "training 0:00:00" in stats  # 0.25 s into the epoch
        assert "eta -" in str(screen.query_one("#run-eta", Static).render())

        screen.receive(*events[6:])
        await pilot.pause(0.2)
        assert screen.state == "completed"
        stats = str(screen.query_one("#run-stats", Static).render())
        assert "50,000 img/s" in stats and "training 0:00:02" in stats  # two epochs of 1.2 s
        assert str(screen.query_one("#run-eta", Static).render()) == "2/2"
        run_bar = screen.query_one("#run-bar", ProgressBar)
        assert run_bar.progress == run_bar.total == 20
        assert screen.view.best is not None and screen.view.best.epoch == 2
        log_text = "\n".join(str(line.text) for line in screen.query_one(RichLog).lines)
        assert "(val 94.31%)" in log_text and "completed" in log_text
        loss_chart = screen.query_one(LossChart)
        assert len(loss_chart.view.loss_points) == 20
        assert [e.val_loss for e in loss_chart.view.epoch_ends] == [0.25, 0.125]


async def panel_following(app: MnistTuiApp, pilot: Pilot[None], run: RunDir) -> TrainingScreen:
    """The training panel on screen, following `run`; events are fed to it by hand."""
    app.training_screen.follow(TrainingSession(run))
    await pilot.press("f3")
    return app.training_screen


async def test_a_run_stopped_mid_epoch_keeps_its_time_and_shows_no_eta(tmp_path: Path) -> None:
    app = make_app(tmp_path / "data", tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        screen = await panel_following(app, pilot, RunDir(tmp_path / "runs" / "demo"))
        events = run_events(steps=100)
        screen.receive(*events[:51], RunFinished("stopped", "runs/demo", 0, 0, None, None, [], 3.0))
        await pilot.pause(0.2)
        assert screen.state == "stopped"
        stats = str(screen.query_one("#run-stats", Static).render())
        assert "training 0:00:02" in stats and "- img/s" in stats  # 50 steps of 0.05 s
        assert str(screen.query_one("#epoch-eta", Static).render()) == "50/100"
        log_text = "\n".join(str(line.text) for line in screen.query_one(RichLog).lines)
        assert "to evaluate its last.pt" in log_text


async def test_a_failure_in_the_replayed_history_is_shown_but_not_announced(tmp_path: Path) -> None:
    app = make_app(tmp_path / "data", tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        screen = await panel_following(app, pilot, RunDir(tmp_path / "runs" / "demo"))
        # Opened from Runs: it failed once, was resumed and completed. The old failure is history.
        history = run_events()
        screen.receive(history[0], RunFailed("dataset not found", "runs/demo"), *history, replayed=True)
        await pilot.pause(0.2)
        assert screen.state == "completed"
        assert "dataset not found" in "\n".join(str(line.text) for line in screen.query_one(RichLog).lines)
        assert not app._notifications
        screen.receive(RunFailed("the trainer is gone", "runs/demo"))
        await pilot.pause(0.2)
        assert [n.title for n in app._notifications] == ["Run failed"]  # a trainer that said why: failed


async def test_evaluate_takes_the_best_checkpoint_from_the_run_folder_as_this_dashboard_sees_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app(tmp_path / "data", tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        run = create_run(tmp_path / "runs", small_config())
        (run.path / "best.pt").write_bytes(b"")
        screen = await panel_following(app, pilot, run)
        screen.receive(*run_events("runs/demo"))  # a headless trainer's paths: relative to its own folder
        await pilot.pause(0.2)
        asked: list[Path] = []
        monkeypatch.setattr(app, "evaluate_checkpoint", asked.append)
        await pilot.press("e")
        assert asked == [run.path / "best.pt"]


async def test_a_run_resumed_after_a_crash_redraws_the_steps_it_redid_once(tmp_path: Path) -> None:
    app = make_app(tmp_path / "data", tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        screen = await panel_following(app, pilot, RunDir(tmp_path / "runs" / "demo"))
        events = run_events(steps=10)
        crashed_in_epoch_two = events[:19]  # started, epoch 1 and its saves, 5 steps of epoch 2
        started = events[0]
        assert isinstance(started, RunStarted)
        resumed = replace(started, start_epoch=1)  # from last.pt, saved at the end of epoch 1
        screen.receive(*crashed_in_epoch_two, RunFailed("the trainer is gone", "runs/demo"), resumed, *events[14:])
        await pilot.pause(0.2)
        xs = [x for x, _ in screen.query_one(LossChart).view.loss_points]
        assert xs == sorted(xs) and len(xs) == 20

        # A run stopped mid-epoch goes on where it stopped: nothing to cut, even from a log too old to say
        # which step it resumed at.
        screen = await panel_following(app, pilot, RunDir(tmp_path / "runs" / "demo"))
        stopped = RunFinished("stopped", "runs/demo", 1, 1, 0.9, 0.9, [1.2], 2.0)
        screen.receive(*crashed_in_epoch_two, stopped, replace(started, start_epoch=1), *events[19:])
        await pilot.pause(0.2)
        xs = [x for x, _ in screen.query_one(LossChart).view.loss_points]
        assert xs == sorted(xs) and len(xs) == 20


async def test_the_augment_box_shows_its_state_without_colour(tmp_path: Path) -> None:
    app = make_app(tmp_path / "data", tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        box = app.screen.query_one("#input-augment", Checkbox)
        assert str(box.render()).startswith("▐ ▌")
        box.value = True
        await pilot.pause()
        assert str(box.render()).startswith("▐X▌")


async def test_a_run_that_fails_before_it_starts_says_so(tmp_path: Path) -> None:
    app = make_app(tmp_path / "data", tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        screen = await panel_following(app, pilot, RunDir(tmp_path / "runs" / "demo"))
        screen.receive(RunFailed("dataset not found", "runs/demo"))
        await pilot.pause(0.2)
        assert "demo failed before training began" in str(screen.query_one("#run-title", Static).render())


async def test_a_trainer_that_died_without_a_word_is_crashed_as_runs_lists_it(tmp_path: Path) -> None:
    app = make_app(tmp_path / "data", tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        run = create_run(tmp_path / "runs", small_config())
        screen = await panel_following(app, pilot, run)
        screen.receive(run_events(str(run.path))[0], RunFailed("the trainer is gone", str(run.path), crashed=True))
        await pilot.pause(0.2)
        assert screen.state == "crashed"
        assert "crashed" in str(screen.query_one("#run-stats", Static).render())
        assert [n.title for n in app._notifications] == ["Run crashed"]


async def test_training_panel_shows_a_failed_run(tmp_path: Path) -> None:
    app = make_app(tmp_path / "data", tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        screen = app.training_screen
        screen.receive(run_events()[0], RunFailed("loss became nan at epoch 1, step 3", "runs/demo"))
        await pilot.pause(0.2)
        assert screen.state == "failed"
        assert any("loss became nan" in n.message for n in app._notifications)
        assert screen.check_action("toggle_pause", ()) is False  # left out of the footer
        await pilot.press("p")  # nothing to pause: it says so
        assert app.is_running
        assert any("No run is training" in n.message for n in app._notifications)


async def test_evaluation_screen_evaluates_a_checkpoint_and_pages_mistakes(trained: Trained, tmp_path: Path) -> None:
    runs = trained.run_dir.parent
    app = MnistTuiApp(data_dir=trained.data_root, runs_dir=runs, download=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f4")
        screen = app.evaluation_screen
        table = screen.query_one("#checkpoints", DataTable)
        await wait_for(pilot, lambda: table.row_count >= 2)
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.result is not None)
        assert screen.result is not None
        summary = str(screen.query_one("#eval-summary", Static).render())
        assert "accuracy" in summary and f"{screen.result.accuracy:.2%}" in summary
        assert screen.result.samples == 128

        # A bare state_dict, typed as a path: named as typed, with what was assumed about it.
        bare = tmp_path / "tutorial.pt"
        torch.save(torch.load(trained.best, weights_only=True)["model_state"], bare)
        evaluated = screen.result
        screen.evaluate(bare)
        await wait_for(pilot, lambda: screen.result is not None and screen.result is not evaluated)
        summary = str(screen.query_one("#eval-summary", Static).render())
        assert str(bare) in summary and "bare state_dict: the model's standard preprocessing assumed" in summary

        # A typo in a typed path is said in a toast; the result on screen stays. Escape goes back to the list.
        await pilot.press("slash")
        screen.query_one("#checkpoint-path", Input).value = str(tmp_path / "typo.pt")
        await pilot.press("enter")
        await pilot.pause()
        assert any("typo.pt: no such file" in n.message for n in app._notifications)
        assert str(bare) in str(screen.query_one("#eval-summary", Static).render())
        await pilot.press("escape")
        assert app.focused is screen.query_one("#checkpoints", DataTable)

        # So is a file that turns out not to be a checkpoint, and the last result, another file's, is gone.
        broken = tmp_path / "broken.pt"
        broken.write_bytes(b"PK\x03\x04 not really a zip")
        screen.evaluate(broken)
        await wait_for(pilot, lambda: any("not a readable PyTorch file" in n.message for n in app._notifications))
        summary = str(screen.query_one("#eval-summary", Static).render())
        assert "not a readable PyTorch file" in summary and str(bare) not in summary
        assert screen.result is None and not screen.query(DigitImage)


async def test_misclassified_digits_page_and_keep_their_place_on_resize(synthetic_root: Path, tmp_path: Path) -> None:
    untrained = tmp_path / "untrained.pt"  # about nine in ten wrong: many pages of mistakes
    torch.manual_seed(0)
    torch.save(MnistModel().state_dict(), untrained)
    app = MnistTuiApp(data_dir=synthetic_root, runs_dir=tmp_path / "runs", download=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f4")
        screen = app.evaluation_screen
        screen.evaluate(untrained)
        await wait_for(pilot, lambda: screen.result is not None)
        await pilot.pause()
        assert screen.query(DigitImage)
        await pilot.press("right_square_bracket", "right_square_bracket")
        assert screen.page == 2
        shown = screen.first_shown
        assert shown == 2 * screen.cards_per_page()
        # Fewer cards fit in a narrower terminal: the page number changes, the first digit shown stays.
        await pilot.resize_terminal(80, 40)
        await pilot.pause()
        await pilot.pause()
        per_page = screen.cards_per_page()
        assert per_page < shown // 2 and screen.page * per_page <= shown < (screen.page + 1) * per_page

        # At 80x24 the digits sit below the tables: the first ] scrolls them into view, the next pages.
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        results, title = screen.query_one("#eval-results"), screen.query_one("#gallery-title")
        results.scroll_home(animate=False)
        await pilot.pause()
        assert not results.region.contains_region(title.region)
        page = screen.page
        await pilot.press("right_square_bracket")
        await pilot.pause()
        assert results.region.contains_region(title.region) and screen.page == page
        await pilot.press("right_square_bracket")
        assert screen.page == page + 1


async def test_evaluation_screen_reports_a_corrupt_file_and_stays_usable(tmp_path: Path, synthetic_root: Path) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    app = MnistTuiApp(data_dir=synthetic_root, runs_dir=tmp_path / "runs", download=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        await pilot.press("slash")
        path_input = app.screen.query_one("#checkpoint-path", Input)
        assert path_input.has_focus
        path_input.value = str(broken)
        await pilot.press("enter")
        screen = app.evaluation_screen
        await wait_for(pilot, lambda: "broken.pt" in str(screen.query_one("#eval-summary", Static).render()))
        message = str(screen.query_one("#eval-summary", Static).render())
        assert "not a readable PyTorch file" in message and "Traceback" not in message
        await pilot.press("f2")
        assert isinstance(app.screen, SettingsScreen)


class RecordingSession:
    """Stands in for a TrainingSession: records the commands the panel sends to the run."""

    def __init__(self) -> None:
        self.run = RunDir(Path("runs/demo"))
        self.process = None
        self.commands: list[str] = []
        self.skipped_lines = 0

    def pause(self) -> None:
        self.commands.append("pause")

    def resume(self) -> None:
        self.commands.append("resume")

    def stop(self) -> None:
        self.commands.append("stop")


def steer(screen: TrainingScreen, session: RecordingSession) -> None:
    """The panel on a live run that `session` records the steering of."""
    screen.session = session  # type: ignore[assignment]
    screen.view = fold(RunView(), run_events()[0])


async def test_stop_asks_first_and_only_a_second_s_soon_after_stops(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mnist_tui.tui.screens.training.STOP_CONFIRM_SECONDS", 0.3)
    app = make_app(tmp_path / "data", tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        screen, session = app.training_screen, RecordingSession()
        steer(screen, session)
        await pilot.press("s")
        assert session.commands == []
        assert any("again to stop the run" in n.message for n in app._notifications)
        await pilot.pause(0.5)
        await pilot.press("s")
        assert session.commands == [], "a second s after the question expired asks again"
        await pilot.press("s")
        assert session.commands == ["stop"]
        assert not app._notifications, "the question is answered; the status line says the rest"

        screen.follow(session)  # type: ignore[arg-type]
        steer(screen, session)
        await pilot.press("s")  # asks, but the run ends and a new one starts: the new one asks afresh
        screen.follow(session)  # type: ignore[arg-type]
        steer(screen, session)
        await pilot.press("s")
        assert session.commands == ["stop"]


async def test_the_command_palette_stop_shows_the_training_panel_and_asks(tmp_path: Path) -> None:
    app = make_app(tmp_path / "data", tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        screen, session = app.training_screen, RecordingSession()
        steer(screen, session)
        await pilot.press("ctrl+p")
        await pilot.press(*"Stop the run")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is screen
        assert session.commands == [] and any("again to stop the run" in n.message for n in app._notifications)
        await pilot.press("s")
        assert session.commands == ["stop"]



def status_line(screen: TrainingScreen) -> str:
    return str(screen.query_one("#run-stats", Static).render())


def footer_keys(screen: TrainingScreen) -> list[str]:
    return [str(getattr(key, "description", "")) for key in screen.query("FooterKey")]


async def test_a_key_that_steers_the_run_is_acknowledged_at_once(tmp_path: Path) -> None:
    """`p` and the second `s` say what they asked for in the status line as the key is pressed, not at the
    next drain (here an hour away: nothing but the key redraws), then the trainer's answer confirms it."""
    app = MnistTuiApp(data_dir=tmp_path / "data", runs_dir=tmp_path / "runs", download=False, refresh_seconds=3600)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        screen, session = app.training_screen, RecordingSession()
        steer(screen, session)
        await pilot.press("p")
        assert session.commands == ["pause"] and status_line(screen).startswith("pausing…")
        assert screen.check_action("toggle_pause", ("resume",)) is True  # `p` now takes it back
        screen.receive(RunPaused(1, 5))
        screen.drain()
        assert status_line(screen).startswith("paused")

        await pilot.press("p")
        assert session.commands[-1] == "resume" and status_line(screen).startswith("resuming…")
        screen.receive(RunResumed(1, 5))
        screen.drain()
        assert status_line(screen).startswith("running")

        # A pause taken back before the trainer saw it: the trainer goes on, and says so by training on.
        await pilot.press("p", "p")
        assert session.commands[-2:] == ["pause", "resume"] and status_line(screen).startswith("resuming…")
        screen.receive(run_events()[6])
        screen.drain()
        assert status_line(screen).startswith("running")

        await pilot.press("s", "s")
        assert session.commands[-1] == "stop" and status_line(screen).startswith("stopping…")
        await pilot.pause()
        assert "Pause" not in footer_keys(screen) and "Stop" in footer_keys(screen)  # dimmed: under way
        await pilot.press("p")
        assert session.commands[-1] == "stop", "a run being stopped is not paused"
        screen.receive(RunFinished("stopped", "runs/demo", 0, 0, None, None, [], 3.0))
        screen.drain()
        await pilot.pause()
        assert status_line(screen).startswith("stopped")
        # Nothing to steer on a run that has ended: the footer leaves the keys out.
        assert not {"Pause", "Resume", "Stop"} & set(footer_keys(screen))
        assert "Evaluate" in footer_keys(screen)


async def test_a_run_resumed_from_runs_is_starting_at_once_whatever_its_log_says(tmp_path: Path) -> None:
    """`u` starts a trainer and follows the run: its log's history ends `stopped`, which is not what the run
    is doing now; the new trainer's first word comes seconds later."""
    app = make_app(tmp_path / "data", tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        process = subprocess.Popen(["true"])
        screen = app.training_screen
        screen.follow(TrainingSession(RunDir(tmp_path / "runs" / "demo"), process))
        await pilot.press("f3")
        history = [*run_events(steps=10)[:15], RunFinished("stopped", "runs/demo", 1, 1, 0.9259, 0.9259, [1.2], 2.0)]
        screen.receive(*history, replayed=True)
        await pilot.pause(0.2)
        assert status_line(screen).startswith("starting: launching the trainer…")
        assert "stopped" in "\n".join(str(line.text) for line in screen.query_one(RichLog).lines)  # its history
        assert screen.active and screen.check_action("stop", ()) is True
        screen.receive(RunPreparing("loading mnist"))
        await pilot.pause(0.2)
        assert status_line(screen).startswith("starting: loading mnist…")
        started = history[0]
        assert isinstance(started, RunStarted)
        screen.receive(replace(started, start_epoch=1, start_step=5))
        await pilot.pause(0.2)
        assert status_line(screen).startswith("running")
        process.wait()


async def test_the_status_line_shows_the_live_training_loss(tmp_path: Path) -> None:
    app = make_app(tmp_path / "data", tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        screen = await panel_following(app, pilot, RunDir(tmp_path / "runs" / "demo"))
        screen.receive(*run_events()[:6])  # 5 reports: the last one's loss is 2.3 / 6
        await pilot.pause(0.2)
        assert status_line(screen).startswith("running · 50,000 img/s · loss 0.3833 · training 0:00:00 · best -")


async def test_the_cli_and_the_panel_say_the_same_numbers(tmp_path: Path) -> None:
    from rich.console import Console

    from mnist_tui.reporting import ConsoleReporter

    events = run_events()
    output = io.StringIO()
    reporter = ConsoleReporter(small_config(epochs=2), Console(file=output, width=200, soft_wrap=True,
                                                                color_system=None))
    for event in events:
        reporter.show(event)
    cli = output.getvalue()
    app = make_app(tmp_path / "data", tmp_path / "runs")
    async with app.run_test(size=(200, 40)) as pilot:
        screen = await panel_following(app, pilot, RunDir(tmp_path / "runs" / "demo"))
        screen.receive(*events)
        await pilot.pause(0.3)
        panel = " ".join(" ".join(str(line.text) for line in screen.query_one(RichLog).lines).split())
    # Epoch 2: train loss 0.25, train accuracy 95%, val loss 0.125, val accuracy 94.31%, in 1.2 s.
    row = next(line for line in cli.splitlines() if line.lstrip().startswith("2/2"))
    assert row.split()[1:5] + row.split()[7:8] == ["0.2500", "95.00%", "0.1250", "94.31%", "1.2s"]
    assert "epoch 2/2 loss 0.2500 (val 0.1250) acc 95.00% (val 94.31%) 1.2s" in panel  # spaces evened out
    ending = ("completed after 2 epoch(s) in 0:00:02 (wall clock); best val accuracy 94.31% (epoch 2), final "
              "94.31%")
    assert ending in cli and ending in panel
    started = "started: batch 256, adam lr 0.001, fp32, 60,000 train / 10,000 test"
    assert started in cli and started in panel


async def test_quitting_during_a_run_asks_what_to_do(tmp_path: Path) -> None:
    app = make_app(tmp_path / "data", tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        # A trainer this process stands in for: alive, and not the run the panel shows.
        training = create_run(tmp_path / "runs", small_config())
        training.set_status("running")
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert f"Run {training.run_id} is still training" in str(app.screen.query_one(".question", Static).render())
        assert str(app.screen.query_one("#leave", Button).label) == "Leave it running"
        await pilot.press("escape")
        assert app.is_running
        training.set_status("paused")
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert str(app.screen.query_one("#leave", Button).label) == "Leave it paused"
        await pilot.press("escape")
        await pilot.press("ctrl+q")
        await pilot.pause()
        await pilot.click("#stop")
        await pilot.pause()
        assert json.loads(training.control_path.read_text()) == {"command": "stop"}
        assert not app.is_running
        said = " ".join(str(message) for message in app._exit_renderables)  # printed once the screen is gone
        assert f"Asked run {training.run_id} to stop" in said
        assert f"mnist-tui train --resume {training.run_id} --runs-dir {tmp_path / 'runs'}" in said


async def test_leaving_a_run_says_how_to_follow_it_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # ./runs is the runs folder found by default: the command needs no --runs-dir
    app = make_app(tmp_path / "data", Path("runs"))
    async with app.run_test(size=SIZE) as pilot:
        training = create_run(Path("runs"), small_config())
        training.set_status("running")
        await pilot.press("ctrl+q")
        await pilot.pause()
        await pilot.click("#leave")
        await pilot.pause()
        assert not app.is_running
        said = " ".join(str(message) for message in app._exit_renderables)
        assert said == (f"Run {training.run_id} is still training in the background. Follow it with:\n"
                        f"  mnist-tui attach {training.run_id}")


async def test_runs_screen_follows_a_training_run_to_its_end(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run = create_run(runs, small_config(epochs=2))  # alive: this process stands in for its trainer
    app = make_app(tmp_path / "data", runs)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f6")
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 1 and "starting" in str(table.get_row_at(0)[2]))
        for event in run_events(str(run.path)):
            run.append_event(event)
        run.set_status("completed")
        await wait_for(pilot, lambda: "completed" in str(table.get_row_at(0)[2]), seconds=10)
        assert str(table.get_row_at(0)[5]) == "2/2"
        # A run started elsewhere shows up by itself, and the cursor stays on the run it was on.
        await pilot.pause(1.1)  # a new second, so the new run's id sorts above
        create_run(runs, small_config())
        await wait_for(pilot, lambda: table.row_count == 2, seconds=10)
        assert table.cursor_row == 1 and str(table.get_row_at(1)[0]) == run.run_id


async def test_one_run_trains_at_a_time_whichever_run_the_panel_shows(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    finished = create_run(runs, small_config(epochs=2))
    for event in run_events(str(finished.path)):
        finished.append_event(event)
    finished.set_status("completed")
    app = make_app(tmp_path / "data", runs)
    async with app.run_test(size=SIZE) as pilot:
        training = create_run(runs, small_config())
        training.set_status("paused")  # alive: this process stands in for its trainer
        app.attach_run(finished)
        await wait_for(pilot, lambda: app.training_screen.state == "completed")
        assert any(f"Run {training.run_id} is still paused" in n.message for n in app._notifications)
        app.start_run(small_config())
        await pilot.pause()
        assert any(f"Run {training.run_id} is paused: stop it first" in n.message for n in app._notifications)
        assert sorted(p.name for p in runs.iterdir()) == sorted([finished.run_id, training.run_id])


async def wait_for(pilot: Pilot[None], condition: Callable[[], bool], seconds: float = 30.0) -> None:
    for _ in range(int(seconds / 0.1)):
        if condition():
            return
        await pilot.pause(0.1)
    pytest.fail("condition not met in time")


async def test_every_screen_survives_resizing(tmp_path: Path) -> None:
    app = make_app(tmp_path / "data", tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        for key in ("f2", "f3", "f4", "f6", "f7"):
            await pilot.press(key)
            for size in ((40, 12), (200, 60), (80, 24), (20, 5), (120, 40)):
                await pilot.resize_terminal(*size)
                await pilot.pause()
            assert app.is_running


async def test_runs_browser_opens_clones_and_deletes_runs(trained: Trained, tmp_path: Path) -> None:
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(trained.run_dir, runs / "20260101-000000-mlp-aaaa")
    (runs / "20260101-000000-mlp-aaaa" / "config.json").write_text(
        json.dumps(small_config(epochs=2, lr=0.01).to_dict()))
    run = RunDir(runs / "20260101-000000-mlp-aaaa")
    for event in run_events(str(run.path)):
        run.append_event(event)
    run.set_status("completed")
    app = MnistTuiApp(data_dir=trained.data_root, runs_dir=runs, download=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f6")
        screen = app.screen
        table = screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        row = [str(cell) for cell in table.get_row_at(0)]
        assert "completed" in " ".join(row) and "2/2" in row and "94.31%" in row

        await pilot.press("space")
        assert screen.query_one("#runs-chart").shown == ["20260101-000000-mlp-aaaa"]  # type: ignore[attr-defined]

        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, SettingsScreen)
        assert app.screen.query_one("#input-lr", Input).value == "0.01"

        await pilot.press("f6")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.training_screen.state == "completed")
        assert isinstance(app.screen, TrainingScreen) and app.session is not None and app.session.run.path == run.path

        await pilot.press("f6")
        await wait_for(pilot, lambda: table.row_count == 1)
        saved_config = (run.path / "config.json").read_text()
        (run.path / "config.json").write_text("{")  # damaged after the list was read
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)
        assert any("Cannot read the settings" in n.message for n in app._notifications)
        (run.path / "config.json").write_text(saved_config)

        await pilot.press("d")
        await pilot.pause()
        await pilot.press("enter")  # the dialog opens on Cancel
        await pilot.pause()
        assert run.path.exists() and isinstance(app.screen, RunsScreen)
        await pilot.press("d")
        await pilot.pause()
        await pilot.click("#delete")
        await wait_for(pilot, lambda: not run.path.exists())
        # It was open on the training panel, which lets it go rather than offer to evaluate its lost files.
        assert app.session is None and app.training_screen.session is None
        assert "was deleted" in app.training_screen.description


class OneWidgetApp(App[None]):
    """One widget alone in a small terminal."""

    def __init__(self, widget: Widget) -> None:
        super().__init__()
        self.widget = widget

    def compose(self) -> ComposeResult:
        yield self.widget


def epoch_end(epoch: int, val_loss: float = 0.2, train_accuracy: float = 0.9, val_accuracy: float = 0.9,
              is_best: bool = False) -> EpochEnded:
    return EpochEnded(epoch, 3, 0.3, train_accuracy, val_loss, val_accuracy, 0.001, 1.0, 1000.0, is_best)


def charted(points: list[tuple[float, float]], ends: Sequence[EpochEnded] = (), accuracy: bool = False) -> RunView:
    """A view with these per-report points (of the loss, or of the accuracy) and epoch ends, as folded."""
    trail, best = Trail(list(points)), next((end for end in reversed(ends) if end.is_best), None)
    view = replace(RunView(), epoch_ends=Trail(list(ends)), best=best)
    return replace(view, accuracy_points=trail) if accuracy else replace(view, loss_points=trail)


def x_ticks(chart: Chart) -> list[str]:
    lines = chart.render().plain.splitlines()  # type: ignore[union-attr]
    return lines[next(i for i, line in enumerate(lines) if "└" in line) + 1].split()


async def test_chart_legend_sits_above_the_data() -> None:
    """plotext draws its legend over the plot's top-left rows, where a loss curve starts: the y axis makes
    room for it, and its ticks stay within the data (an accuracy axis never reads above 100)."""

    app = OneWidgetApp(LossChart())
    async with app.run_test(size=(60, 16)) as pilot:
        chart = app.query_one(LossChart)
        losses = [(step / 100, 2.3 * 0.97**step) for step in range(200)]
        chart.show(charted(losses, [epoch_end(1, 0.3), epoch_end(2, 0.2)]))
        chart.replot()
        await pilot.pause()
        lines = chart.render().plain.splitlines()  # type: ignore[union-attr]
        legend = [i for i, line in enumerate(lines) if "train" in line or " val" in line]
        ticks = [i for i, line in enumerate(lines) if "┤" in line]
        assert len(legend) == 2 and min(ticks) > max(legend)
        top_tick = float(lines[min(ticks)].split("┤")[0])
        assert top_tick == pytest.approx(max(smoothed([loss for _, loss in losses])), abs=0.05)

        # A validation loss can overflow while training goes on; plotext would fail on it, so it is left out.
        chart.show(charted(losses, [epoch_end(1, 0.3), epoch_end(2, float("inf"))]))
        chart.replot()
        await pilot.pause()
        assert "val" in chart.render().plain  # type: ignore[union-attr]


async def test_a_short_chart_writes_its_legend_into_the_title_and_ticks_whole_epochs() -> None:
    """At 80x24 a chart has seven rows of plot: a legend there would cover the data."""
    app = OneWidgetApp(AccuracyChart())
    async with app.run_test(size=(60, 12)) as pilot:
        chart = app.query_one(AccuracyChart)
        ends = [epoch_end(1, val_accuracy=0.92, is_best=True), epoch_end(2, val_accuracy=0.94, is_best=True),
                epoch_end(3, val_accuracy=0.96, is_best=True)]
        chart.show(charted([(step / 10, 0.9 + step / 1000) for step in range(1, 31)], ends, accuracy=True))
        chart.replot()
        await pilot.pause()
        lines = chart.render().plain.splitlines()  # type: ignore[union-attr]
        assert "accuracy %  ⢕ train  • val  x best 96.00%" in lines[0]
        assert not any("train" in line for line in lines[1:])
        assert x_ticks(chart) == ["0", "1", "2", "3"]

        # Narrower: the entries close up, then the last ones go; the title never does.
        await pilot.resize_terminal(34, 12)
        await pilot.pause()
        title = chart.render().plain.splitlines()[0].strip()  # type: ignore[union-attr]
        assert title == "accuracy % ⢕train •val"

    app = OneWidgetApp(LossChart())
    async with app.run_test(size=(60, 12)) as pilot:
        loss = app.query_one(LossChart)
        loss.show(charted([(step / 100, 1 / step) for step in range(1, 121)]))  # one epoch and a fifth
        loss.replot()
        await pilot.pause()
        assert x_ticks(loss) == ["0", "1", "2"]


@pytest.mark.parametrize("reports", [0, 1, 3, 40], ids=lambda n: f"{n}-reports")
async def test_in_its_first_epoch_a_chart_ticks_fractions_of_it(reports: int) -> None:
    """plotext's own ticks read `0.0250 0.0312 …` in the first epoch, and an empty chart or a single point
    got none, so that chart ended a row lower than its neighbour."""
    app = OneWidgetApp(LossChart())
    async with app.run_test(size=(40, 11)) as pilot:
        chart = app.query_one(LossChart)
        chart.show(charted([(step / 100, 2.3 / step) for step in range(1, reports + 1)]))
        chart.replot()
        await pilot.pause()
        assert x_ticks(chart) == ["0", "0.2", "0.4", "0.6", "0.8", "1"]


def y_ticks(chart: Chart) -> list[str]:
    return [line.split("┤")[0].strip() for line in chart.render().plain.splitlines()  # type: ignore[union-attr]
            if "┤" in line]


async def test_a_one_epoch_run_charts_without_inventing_values() -> None:
    """A single point gives plotext no range: it used to draw an accuracy axis from 49 to 147."""

    app = OneWidgetApp(RunsChart())
    async with app.run_test(size=(60, 16)) as pilot:
        chart = app.query_one(RunsChart)
        chart.curves = {"20261127-091251-cnn-6276": [0.983]}
        chart.show(["20261127-091251-cnn-6276"])
        await pilot.pause()
        assert y_ticks(chart) == ["98.3"]


async def test_a_first_loss_point_reads_to_three_digits() -> None:
    app = OneWidgetApp(LossChart())
    async with app.run_test(size=(60, 16)) as pilot:
        chart = app.query_one(LossChart)
        chart.show(charted([(0.01, 1.6716)]))
        chart.replot()
        await pilot.pause()
        assert y_ticks(chart) == ["1.67"]


def test_runs_chart_legend_names_a_run_without_its_date() -> None:
    assert legend_label("20261127-091251-cnn-6276") == "091251-cnn-6276"
    assert legend_label("my-experiment") == "my-experiment"
    assert legend_label("a-run-named-by-hand-with-a-long-name") == "with-a-long-name"


async def test_attach_opens_the_dashboard_on_a_finished_run(tmp_path: Path) -> None:
    from mnist_tui.__main__ import build_parser
    from mnist_tui.__main__ import make_app as make_cli_app

    run = create_run(tmp_path / "runs", small_config(epochs=2))
    for event in run_events(str(run.path)):
        run.append_event(event)
    run.set_status("completed")
    args = build_parser().parse_args(["--runs-dir", str(tmp_path / "runs"), "--data-dir", str(tmp_path)])
    app = make_cli_app(args, attach=run)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.training_screen.state == "completed")
        assert isinstance(app.screen, TrainingScreen)
        best = app.training_screen.view.best
        assert best is not None and best.val_accuracy == 0.9431


async def test_digits_are_drawn_in_shades_without_colour(monkeypatch: pytest.MonkeyPatch) -> None:
    """NO_COLOR: Textual's monochrome filter used to fail on the shade cells and take the app down."""
    monkeypatch.setenv("NO_COLOR", "1")
    pixels = [[0] * 28] * 14 + [[255] * 28] * 14
    app = OneWidgetApp(DigitImage(pixels))
    async with app.run_test(size=(40, 20)) as pilot:
        await pilot.pause()
        assert app.no_color
        assert "█" in app.export_screenshot()  # drawn, through the monochrome filter
    assert [strip.text for strip in render_rows(pixels, colour=False)] == [" " * 28] * 7 + ["█" * 28] * 7


async def test_the_form_starts_from_the_last_run_started_and_ctrl_t_from_the_tutorial(tmp_path: Path) -> None:
    from mnist_tui.state import remember_settings

    remember_settings(small_config(model="cnn", epochs=7, precision="bf16"))
    app = make_app(tmp_path / "data", tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, SettingsScreen)
        await pilot.pause()
        assert screen.current_config() == small_config(model="cnn", epochs=7, precision="bf16")
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert screen.current_config() == TrainConfig()


@pytest.mark.parametrize("content", [b"\xff\xfe{", b"[1, 2]", b'{"epochs": "many"}', b""])
async def test_a_damaged_memory_of_settings_starts_from_the_tutorials(tmp_path: Path, content: bytes) -> None:
    from mnist_tui.state import last_settings_path

    last_settings_path().parent.mkdir(parents=True, exist_ok=True)
    last_settings_path().write_bytes(content)
    app = make_app(tmp_path / "data", tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, SettingsScreen) and screen.current_config() == TrainConfig()


async def test_starting_a_run_remembers_its_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mnist_tui.state import remembered_settings

    monkeypatch.setattr("mnist_tui.tui.app.TrainingSession.start", lambda *args, **kwargs: RecordingSession())
    app = make_app(tmp_path / "data", tmp_path / "runs")
    monkeypatch.setattr(app, "follow", lambda session: None)
    async with app.run_test(size=SIZE):
        app.start_run(small_config(lr=0.02))
    assert remembered_settings() == small_config(lr=0.02)


async def test_a_starting_run_says_what_its_trainer_is_doing(tmp_path: Path) -> None:
    app = make_app(tmp_path / "data", tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        screen = await panel_following(app, pilot, RunDir(tmp_path / "runs" / "demo"))
        stats = screen.query_one("#run-stats", Static)
        assert "starting: launching the trainer…" in str(stats.render())  # at once, before any event
        for stage in ("loading mnist", "building the model on cuda:0"):
            screen.receive(RunPreparing(stage))
            await pilot.pause(0.2)
            assert f"starting: {stage}…" in str(stats.render())
        screen.receive(run_events()[0])
        await pilot.pause(0.2)
        assert "running" in str(stats.render()) and "starting" not in str(stats.render())


async def test_dialog_buttons_follow_left_and_right(tmp_path: Path) -> None:
    from mnist_tui.tui.screens.dialogs import quit_dialog

    app = make_app(tmp_path / "data", tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(quit_dialog("Quit and…", paused=False))
        await pilot.pause()
        assert app.focused is not None and app.focused.id == "cancel"
        await pilot.press("left")
        assert app.focused is not None and app.focused.id == "stop"
        await pilot.press("left")
        assert app.focused is not None and app.focused.id == "leave"
        await pilot.press("right")
        assert app.focused is not None and app.focused.id == "stop"


async def test_the_palette_offers_the_runs_actions(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run = create_run(runs, small_config())
    run.set_status("stopped", pid=dead_pid())
    app = make_app(tmp_path / "data", runs)
    async with app.run_test(size=SIZE) as pilot:
        titles = [command.title for command in app.get_system_commands(app.screen)]
        assert {"Resume a stopped run", "Clone the run's settings", "Delete the run", "Mark the run to compare",
                "Compare runs"} <= set(titles)
        command = next(c for c in app.get_system_commands(app.screen) if c.title == "Clone the run's settings")
        await command.callback()  # at once: the Runs screen has not listed the runs yet
        await pilot.pause(0.5)
        assert isinstance(app.screen, SettingsScreen)  # clone fills Settings with the run's settings
        assert app.screen.current_config() == small_config()


async def test_the_palette_offers_only_what_can_act_now(tmp_path: Path) -> None:
    app = make_app(tmp_path / "data", tmp_path / "runs")

    def titles() -> set[str]:
        return {command.title for command in app.get_system_commands(app.screen)}

    async with app.run_test(size=SIZE) as pilot:
        run_actions = {"Resume a stopped run", "Clone the run's settings", "Delete the run", "Compare runs"}
        steering = {"Pause the run", "Resume the paused run", "Stop the run"}
        assert "Start training" in titles() and not titles() & (run_actions | steering)  # no runs, none live

        await pilot.press("f3")
        screen, session, events = app.training_screen, RecordingSession(), run_events()
        screen.session = session  # type: ignore[assignment]
        screen.receive(events[0])
        await wait_for(pilot, lambda: screen.state == "running")
        assert titles() & steering == {"Pause the run", "Stop the run"} and "Start training" not in titles()
        screen.receive(RunPaused(1, 5))
        await wait_for(pilot, lambda: screen.state == "paused")
        assert titles() & steering == {"Resume the paused run", "Stop the run"}
        await next(c for c in app.get_system_commands(app.screen) if c.title == "Resume the paused run").callback()
        assert session.commands == ["resume"]
        screen.receive(events[-1])
        await wait_for(pilot, lambda: screen.state == "completed")
        assert not titles() & steering and "Start training" in titles()

        create_run(tmp_path / "runs", small_config()).set_status("stopped", pid=dead_pid())
        assert run_actions <= titles()
        # The palette's own entry for the keys is the app's list over the screen, not Textual's side panel.
        await pilot.press("ctrl+p", *"Keys")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, KeysScreen)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_the_keys_list_puts_the_screens_keys_first_and_only_those_that_act(
        tmp_path: Path, size: tuple[int, int]) -> None:
    app = make_app(tmp_path / "data", tmp_path / "runs")
    async with app.run_test(size=size) as pilot:
        await pilot.press("f3")
        screen, session, events = app.training_screen, RecordingSession(), run_events()
        screen.session = session  # type: ignore[assignment]
        screen.receive(events[0])
        await wait_for(pilot, lambda: screen.state == "running")
        await pilot.press("question_mark")
        keys = app.screen
        assert isinstance(keys, KeysScreen)
        titles = [title for title, _ in keys.sections]
        assert titles[:2] == ["This screen", "Everywhere"] and titles[-1] == "Moving around"
        own = dict(keys.sections[0][1])
        assert own["p"].startswith("Pause") and own["s"].startswith("Stop")
        assert dict(keys.sections[1][1])["F6"] == "Runs"
        # Drawn over the panel, whole: the panel under it keeps its width.
        box = keys.query_one(".keys")
        assert box.region.width < size[0] and screen.query_one("#run-log").region.width == size[0]
        await pilot.press("escape")

        screen.receive(events[-1])  # a finished run: nothing to pause or stop
        await wait_for(pilot, lambda: screen.state == "completed")
        await pilot.press("question_mark")
        assert isinstance(app.screen, KeysScreen)
        own = dict(app.screen.sections[0][1])
        assert "p" not in own and "s" not in own and "e" in own


async def test_the_field_being_edited_is_marked_as_a_whole(tmp_path: Path) -> None:
    app = make_app(tmp_path / "data", tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await pilot.pause()
        assert [field.id for field in screen.query(".field.-focused")] == ["field-model"]
        await pilot.press("tab", "tab")
        assert [field.id for field in screen.query(".field.-focused")] == ["field-batch_size"]
        screen.query_one("#settings-file", Input).focus()
        await pilot.pause()
        assert not screen.query(".field.-focused")
