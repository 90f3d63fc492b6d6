"""The dashboard: five screens over the headless core (F2 settings, F3 training, F4 evaluation, F6 runs,
F7 playground), everything by keyboard."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widget import AwaitMount
from textual.worker import get_current_worker

from mnist_tui.config import PRESETS, ConfigError, TrainConfig
from mnist_tui.runs import LiveRun, RunDir, find_live_run, iter_runs, resolve_runs_dir
from mnist_tui.session import TrainingSession
from mnist_tui.state import remember_settings
from mnist_tui.tui.markup import escape
from mnist_tui.tui.messages import (
    AttachRun,
    CloneSettings,
    EvaluateCheckpoint,
    ResumeRun,
    RunDeleted,
    ShowScreen,
    StartRun,
)
from mnist_tui.tui.screens.dialogs import KeysScreen, quit_dialog
from mnist_tui.tui.screens.evaluation import EvaluationScreen
from mnist_tui.tui.screens.playground import PlaygroundScreen
from mnist_tui.tui.screens.runs import RunsScreen
from mnist_tui.tui.screens.settings import SettingsScreen
from mnist_tui.tui.screens.training import TrainingScreen
from mnist_tui.tui.widgets.tabs import SCREENS

OVER_SSH = bool(os.environ.get("SSH_CONNECTION"))
REFRESH_SECONDS = 1.0 if OVER_SSH else 0.5
"""How often the training panel drains events and redraws its bars; less often over SSH."""
CHART_SECONDS = 2.0 if OVER_SSH else 1.0
"""How often live charts are replotted: plotext is the costliest drawing, and the trainer needs the cores."""
def parting_words(sentence: str, command: str) -> Text:
    """What the dashboard prints as it exits: a sentence, then the command to type on a line of its own,
    which copies whole where it fits the terminal's width."""
    return Text(f"{sentence}\n  {command}")


class MnistTuiApp(App[None]):
    """Settings, live training and evaluation; a thin layer that starts, follows and steers runs."""

    CSS_PATH = "app.tcss"
    DEFAULT_MODE = "settings"
    """Each screen is a mode (`SCREENS` names them); start-up composes this one only."""
    TITLE = "mnist-tui"
    BINDINGS = [
        # The screens' keys are on the tab line at the top, so the footer keeps its room for the screen's own.
        *(Binding(key.lower(), f"show('{name}')", label, show=False) for name, key, label, _purpose in SCREENS),
        Binding("question_mark", "toggle_keys", "Keys"),
        Binding("f1", "toggle_keys", "Keys", show=False),  # `?` is text in a field that has focus
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(self, data_dir: Path, runs_dir: Path, download: bool,
                 refresh_seconds: float = REFRESH_SECONDS, chart_seconds: float = CHART_SECONDS,
                 attach: RunDir | None = None) -> None:
        super().__init__()
        self.data_dir = data_dir
        self.runs_dir = runs_dir
        self.download = download
        self.refresh_seconds = refresh_seconds
        self.chart_seconds = chart_seconds
        self.session: TrainingSession | None = None
        self.attach_on_start = attach
        self.built_screens: dict[str, Screen[None]] = {}
        for name, *_ in SCREENS:
            self.add_mode(name, partial(self.base_screen, name))
        if OVER_SSH:
            self.animation_level = "none"

    def on_mount(self) -> None:
        if self.attach_on_start is not None:
            self.attach_run(self.attach_on_start)
        elif (live := self.training_run()) is not None:
            self.attach_run(live.run)
            self.notify(f"Reattached to run {escape(live.run.run_id)} ({escape(live.activity)}).")

    def training_run(self) -> LiveRun | None:
        """The newest run whose trainer is alive, whichever screen shows it and whoever started it: one
        run trains at a time, and quitting asks about it."""
        return find_live_run(self.runs_dir)

    def base_screen(self, name: str) -> Screen[None]:
        """The screen of mode `name`, built the first time it is shown or a run is handed to it."""
        if name not in self.built_screens:
            factories: dict[str, Callable[[], Screen[None]]] = {
                "settings": lambda: SettingsScreen(self.data_dir, self.download),
                "training": lambda: TrainingScreen(self.runs_dir, self.refresh_seconds, self.chart_seconds),
                "evaluation": lambda: EvaluationScreen(self.runs_dir, self.data_dir, self.download),
                "runs": lambda: RunsScreen(self.runs_dir),
                "playground": lambda: PlaygroundScreen(self.runs_dir, self.data_dir, self.download),
            }
            self.built_screens[name] = factories[name]()
        return self.built_screens[name]

    @property
    def training_screen(self) -> TrainingScreen:
        screen = self.base_screen("training")
        assert isinstance(screen, TrainingScreen)
        return screen

    @property
    def evaluation_screen(self) -> EvaluationScreen:
        screen = self.base_screen("evaluation")
        assert isinstance(screen, EvaluationScreen)
        return screen

    def show_screen(self, name: str) -> AwaitMount:
        """Switch to a screen by name; await the result to know it is mounted."""
        return self.switch_mode(name)

    async def action_show(self, name: str) -> None:
        await self.show_screen(name)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """A screen's own key does nothing on it, so `?` does not list it."""
        return not (action == "show" and parameters == (self.current_mode,))

    def action_toggle_keys(self) -> None:
        if isinstance(self.screen, KeysScreen):
            self.screen.dismiss()
        else:
            self.push_screen(KeysScreen(self.screen))

    def refuse_while_training(self) -> bool:
        """Say so and return True if a run is training (or paused): a second trainer would halve both."""
        live = self.training_run()
        if live is not None:
            self.notify(f"Run {escape(live.run.run_id)} is {escape(live.activity)}: stop it first (F6, Enter on "
                        "it, then s twice).", title="One run at a time", severity="warning")
        return live is not None

    def start_run(self, config: TrainConfig) -> None:
        """Start a trainer process for `config` and follow it on the training panel."""
        if self.refuse_while_training():
            return
        try:
            session = TrainingSession.start(config, self.runs_dir, self.data_dir, self.download)
        except OSError as error:
            self.notify(f"Cannot start a run in {escape(self.runs_dir)}: {escape(error)}", title="Cannot start",
                        severity="error")
            return
        remember_settings(config)  # the form starts from them next time
        self.follow(session)
        self.show_screen("training")

    def attach_run(self, run: RunDir) -> None:
        """Show a run on the training panel: its history from the log, then live if it is still training.

        Looking at another run does not touch the one training: it goes on in its own process."""
        live = self.training_run()
        if live is not None and live.run.path != run.path:
            self.notify(f"Run {escape(live.run.run_id)} is still {escape(live.activity)}; Enter on it in Runs (F6) "
                        "follows it again.", title="One run at a time")
        self.follow(TrainingSession.attach(run))
        self.show_screen("training")

    def resume_run(self, run: RunDir) -> None:
        """Continue a stopped, failed or crashed run from its last.pt and follow it, once its last.pt is
        found fit to go on from (read off the UI thread: it imports torch and loads the file)."""
        if self.refuse_while_training():
            return
        self._check_resumable(run)

    @work(thread=True, exclusive=True, group="resume")
    def _check_resumable(self, run: RunDir) -> None:
        from mnist_tui.checkpoints import CheckpointError, load_resume_state

        try:  # refused here in words, rather than by a trainer that dies of it
            load_resume_state(run.path / "last.pt", run.config())
        except (CheckpointError, ConfigError, OSError) as error:
            self.call_from_thread(self.notify, escape(error), title=f"Cannot resume {escape(run.run_id)}",
                                  severity="error")
            return
        if not get_current_worker().is_cancelled:  # a second `u` took over
            self.call_from_thread(self._continue_run, run)

    def _continue_run(self, run: RunDir) -> None:
        if self.refuse_while_training():  # another run may have started while last.pt was read
            return
        try:
            session = TrainingSession.continue_run(run, self.data_dir, self.download)
        except (OSError, ConfigError) as error:
            self.notify(f"Cannot resume {escape(run.run_id)}: {escape(error)}", title="Cannot resume", severity="error")
            return
        self.follow(session)
        self.show_screen("training")

    def follow(self, session: TrainingSession) -> None:
        self.session = session
        self.training_screen.follow(session)
        self._feed(session)

    def forget_run(self, run: RunDir) -> None:
        """A deleted run leaves the training panel, which would otherwise offer to evaluate files now gone."""
        if self.session is not None and self.session.run.path.resolve() == run.path.resolve():
            self.workers.cancel_group(self, "feed")
            self.session = None
            self.training_screen.forget(f"Run {escape(run.run_id)} was deleted. Set up a new one on Settings (F2).")

    @work(exclusive=True, group="feed")
    async def _feed(self, session: TrainingSession) -> None:
        """Queue the run's events for the training panel, which drains them on its own timer; a run that
        ended and is resumed elsewhere (`mnist-tui train --resume`) comes back live."""
        async for event in session.events(watch=True):
            self.training_screen.receive(event, replayed=session.replaying)

    def evaluate_checkpoint(self, path: Path) -> None:
        self.show_screen("evaluation")
        self.evaluation_screen.evaluate(path)

    def settings_from(self, config: TrainConfig) -> None:
        screen = self.base_screen("settings")
        assert isinstance(screen, SettingsScreen)
        screen.load_values(config)
        self.show_screen("settings")

    # What the screens ask for -------------------------------------------------------------------------

    @on(StartRun)
    def _start_run(self, message: StartRun) -> None:
        self.start_run(message.config)

    @on(AttachRun)
    def _attach_run(self, message: AttachRun) -> None:
        self.attach_run(message.run)

    @on(ResumeRun)
    def _resume_run(self, message: ResumeRun) -> None:
        self.resume_run(message.run)

    @on(CloneSettings)
    def _clone_settings(self, message: CloneSettings) -> None:
        self.settings_from(message.config)

    @on(EvaluateCheckpoint)
    def _evaluate_checkpoint(self, message: EvaluateCheckpoint) -> None:
        self.evaluate_checkpoint(message.path)

    @on(RunDeleted)
    def _run_deleted(self, message: RunDeleted) -> None:
        self.forget_run(message.run)

    @on(ShowScreen)
    async def _show_screen(self, message: ShowScreen) -> None:
        await self.show_screen(message.name)

    async def action_quit(self) -> None:
        live = self.training_run()
        if live is None:
            self.exit()
            return

        def answered(answer: str | None) -> None:
            if answer == "stop":
                try:
                    live.run.send("stop")
                except OSError as error:  # a full disk, a folder gone: the run goes on, and that must be said
                    self.notify(f"Cannot ask run {escape(live.run.run_id)} to stop: {escape(error)}",
                                title="Still running", severity="error")
                    return
                self.exit(message=parting_words(f"Asked run {live.run.run_id} to stop; it saves last.pt as it does. "
                                                "Resume it with:", self.command_for("train --resume", live.run)))
            elif answer == "leave":
                self.exit(message=parting_words(f"Run {live.run.run_id} is still {live.activity} in the background. "
                                                "Follow it with:", self.command_for("attach", live.run)))

        self.push_screen(quit_dialog(f"Run {escape(live.run.run_id)} is still {escape(live.activity)}. Quit and…",
                                     paused=live.activity == "paused"), answered)

    def command_for(self, command: str, run: RunDir) -> str:
        """The exact `mnist-tui` command line that finds `run` again from the folder the dashboard was
        started in: by id, with `--runs-dir` when the runs folder is not the one found by default."""
        runs_dir = [] if resolve_runs_dir() == self.runs_dir else ["--runs-dir", str(self.runs_dir)]
        return shlex.join(["mnist-tui", *command.split(), run.run_id, *runs_dir])

    def _ask_to_stop(self) -> None:
        self.show_screen("training")
        self.training_screen.action_stop()

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        """Textual's commands and the app's, each offered only where it can act now: pausing, resuming or
        stopping while the training panel's run is live (as its footer offers them), acting on a run
        once there are runs."""
        for command in super().get_system_commands(screen):
            if command.title != "Keys":  # Textual's side panel: ours lists the keys that act now, over the screen
                yield command
        yield SystemCommand("Keys", "The keys that act now on this screen (?)", self.action_toggle_keys)
        for name, key, label, purpose in SCREENS:
            if name != self.current_mode:
                yield SystemCommand(label, f"{purpose} ({key})", partial(self.show_screen, name))
        training = self.built_screens.get("training")
        if not (isinstance(training, TrainingScreen) and training.active):
            yield SystemCommand("Start training", "Start a run with the current settings (F5 on Settings)",
                                lambda: self.base_screen("settings").run_action("start"))
        else:
            for title, parameter in (("Pause the run", "pause"), ("Resume the paused run", "resume")):
                if training.check_action("toggle_pause", (parameter,)):
                    yield SystemCommand(title, "p on Training",
                                        partial(training.run_action, f"toggle_pause({parameter!r})"))
            if training.check_action("stop", ()):
                yield SystemCommand("Stop the run", "s on Training, twice; saves a checkpoint", self._ask_to_stop)
        if next(iter_runs(self.runs_dir), None) is not None:
            for label, action, help_text in (
                    ("Resume a stopped run", "resume", "u on Runs: continue the run under the cursor"),
                    ("Clone the run's settings", "clone", "c on Runs: into Settings"),
                    ("Delete the run", "delete", "d on Runs: asks first"),
                    ("Mark the run to compare", "mark", "space on Runs: overlay its curves"),
                    ("Compare runs", "compare", "v on Runs: overlay the marked runs' curves")):
                yield SystemCommand(label, help_text, partial(self._runs_action, action))
        for preset in PRESETS.values():
            yield SystemCommand(f"Preset: {preset.name}", preset.summary, partial(self._load_preset, preset.name))

    async def _runs_action(self, action: str) -> None:
        """A Runs screen action from the palette, on the run under that screen's cursor once it has listed
        the runs (opening it starts a fresh reading)."""
        await self.show_screen("runs")
        screen = self.base_screen("runs")
        assert isinstance(screen, RunsScreen)
        await screen.loaded()
        await screen.run_action(action)

    async def _load_preset(self, name: str) -> None:
        await self.show_screen("settings")
        await self.base_screen("settings").run_action(f"preset({name!r})")
