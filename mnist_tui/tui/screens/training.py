"""The live training panel: bars with ETA, throughput, loss and accuracy charts, a log, pause and stop.

Events arrive through `receive` from the app's feed worker; a timer drains them a few times a second,
folds them into the run's view (runview.py, which the headless CLI renders too) and redraws once inside
`batch_update()`, whatever the training speed. A key that steers the run is acknowledged at once in the
status line, and confirmed when the trainer's answer arrives.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.events import Key
from textual.screen import Screen
from textual.widgets import Footer, Label, ProgressBar, RichLog, Static

from mnist_tui import telemetry
from mnist_tui.events import Event, RunFailed
from mnist_tui.reporting import STATUS_STYLE, TONE_STYLES
from mnist_tui.runs import RunDir, find_live_run, skipped_note
from mnist_tui.runview import (
    LogLine,
    RunView,
    asked,
    fold,
    following,
    format_duration,
    format_loss,
    format_lr,
    format_percent,
    format_throughput,
    heard_live,
)
from mnist_tui.session import TrainingSession
from mnist_tui.telemetry import GpuSample, TelemetrySampler, TelemetrySnapshot, bare_gpu_uuid
from mnist_tui.tui.markup import escape
from mnist_tui.tui.messages import EvaluateCheckpoint, ShowScreen
from mnist_tui.tui.widgets.charts import AccuracyChart, LossChart
from mnist_tui.tui.widgets.tabs import ScreenTabs
from mnist_tui.tui.widgets.telemetry import DeviceStrip

STOP_CONFIRM_SECONDS = 3.0
"""How long after a first `s` a second one stops the run."""


def log_markup(line: LogLine) -> str:
    """A line of the run's story as the panel's log shows it: styled by its tone, a best epoch marked."""
    style = TONE_STYLES.get(line.tone)
    text = f"[{style}]{escape(line.text)}[/]" if style else escape(line.text)
    if line.figures is not None and line.figures.best:
        text += "  [green]best[/]"
    return text


class TrainingScreen(Screen[None]):
    """Watch and steer the current run."""

    BINDINGS = [
        # One key, two names: the footer shows the one the run's state calls for (see check_action).
        Binding("p", "toggle_pause('pause')", "Pause", tooltip="after the current batch"),
        Binding("p", "toggle_pause('resume')", "Resume", tooltip="from the batch it paused at"),
        Binding("s", "stop", "Stop", tooltip="the run: press twice; it saves last.pt"),
        Binding("e", "evaluate_best", "Evaluate", tooltip="the run's best checkpoint"),
        Binding("n", "new_run", "New run", tooltip="from Settings"),
    ]

    def __init__(self, runs_dir: Path, refresh_seconds: float, chart_seconds: float) -> None:
        super().__init__()
        self.runs_dir = runs_dir
        self.refresh_seconds = refresh_seconds
        self.chart_seconds = chart_seconds
        self.charted_at = 0.0
        self.charts_stale = False
        self.pending: list[tuple[Event, bool]] = []
        """Events not yet drawn, each with whether it is replayed history."""
        self.session: TrainingSession | None = None
        self.view = RunView()
        """The run as its events have told it so far: everything drawn comes from it."""
        self.logged = 0
        """Lines of the view's log written to the panel's log."""
        self.stop_confirm_until = 0.0
        self.description = "No run yet: set one up on Settings (F2) and press F5."
        """The title while no run has started."""
        self.device_uuid = ""
        """The run's GPU's UUID, as its trainer recorded it or as found from its ordinal; "" off a GPU."""
        self.sampler: TelemetrySampler | None = None
        """Reads the hardware on its own thread while a run is live; the strip shows its latest reading."""
        self.shown_reading: TelemetrySnapshot | None = None
        self.skipped_shown = 0
        """Unreadable log lines the panel has told of: it says so again when more are skipped."""

    @property
    def active(self) -> bool:
        return self.view.active

    @property
    def state(self) -> str:
        """The run's state as the panel shows it."""
        return self.view.shown_state

    def compose(self) -> ComposeResult:
        yield ScreenTabs("training")
        with Vertical(id="training-top"):
            yield Static(self.description, id="run-title")
            with Horizontal(classes="bar-row"):
                yield Label("run  ", classes="bar-label")
                yield ProgressBar(id="run-bar", total=1, show_eta=False)
                yield Static("", id="run-eta", classes="eta")
            with Horizontal(classes="bar-row"):
                yield Label("epoch", classes="bar-label")
                yield ProgressBar(id="epoch-bar", total=1, show_eta=False)
                yield Static("", id="epoch-eta", classes="eta")
            yield Static("", id="run-stats")
            yield DeviceStrip(id="device-strip")
        with Horizontal(id="charts"):
            yield LossChart(id="loss-chart")
            yield AccuracyChart(id="accuracy-chart")
        yield RichLog(id="run-log", markup=True, wrap=True, max_lines=500)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.set_interval(self.refresh_seconds, self.drain)
        self.query_one("#run-log", RichLog).can_focus = False
        if self.view.state != "idle":  # a run followed before the panel was first shown: say so at once
            self.redraw()

    def on_unmount(self) -> None:
        self._stop_sampler()

    def follow(self, session: TrainingSession) -> None:
        """Reset the panel for a run; its whole history replays from the event log. A run whose trainer was
        just started here (a new run, or one resumed with `u`) is `starting` until that trainer speaks,
        whatever the history says."""
        run_id = session.run.run_id
        self._reset(session, following(run_id, launching=session.process is not None),
                    f"Starting run {escape(run_id)}…")

    def forget(self, description: str) -> None:
        """Empty the panel (its run was deleted), saying why."""
        self._reset(None, RunView(), description)

    def _reset(self, session: TrainingSession | None, view: RunView, description: str) -> None:
        self.session = session
        self.pending.clear()
        self.view, self.logged = view, 0
        self.stop_confirm_until = 0.0
        self.device_uuid = ""
        self._stop_sampler()
        self.skipped_shown = 0
        self.description = description
        if self.is_mounted:
            for chart in (self.query_one(LossChart), self.query_one(AccuracyChart)):
                chart.show(view)
                chart.replot()
            self.query_one(RichLog).clear()
            self.query_one(DeviceStrip).display = False
            self.refresh_bindings()
            self.redraw()

    # Events -----------------------------------------------------------------------------------------

    def receive(self, *events: Event, replayed: bool = False) -> None:
        """Queue events for the next drain. Replayed ones (the log as it was when the panel began to follow
        it) are drawn like the rest but not announced: an old failure gets no toast."""
        self.pending.extend((event, replayed) for event in events)

    def drain(self) -> None:
        """Fold every pending event into the view and redraw once; replot a chart, which costs far more to
        draw than the rest, only when its data changed and at most every `chart_seconds` while the run is
        live. The device strip shows the sampler's latest reading, if it is new."""
        self._show_telemetry()
        skipped = self.session.skipped_lines if self.session is not None else 0
        if not self.pending and not self.charts_stale and skipped == self.skipped_shown:
            return
        try:
            loss_chart, accuracy_chart = self.query_one(LossChart), self.query_one(AccuracyChart)
            log = self.query_one(RichLog)
        except NoMatches:  # the app is closing and the screen is being taken apart
            return
        with self.app.batch_update():
            if self.pending:
                events, self.pending = self.pending, []
                before = self.view
                self.view = self._fold(events)
                for line in self.view.log.since(self.logged):
                    self._write(log, line)
                self.logged = len(self.view.log)
                loss_chart.show(self.view)
                accuracy_chart.show(self.view)
                if (self.view.shown_state, self.view.awaiting) != (before.shown_state, before.awaiting):
                    self.refresh_bindings()  # the footer's pause, resume and stop follow the state
                self._follow_device()
                self.redraw()
            if skipped != self.skipped_shown:
                self.skipped_shown = skipped
                log.write(f"[yellow]{skipped_note(skipped)} in events.jsonl[/]")
            now = time.monotonic()
            self.charts_stale = loss_chart.stale or accuracy_chart.stale
            if self.charts_stale and (now - self.charted_at >= self.chart_seconds or not self.active):
                for chart in (loss_chart, accuracy_chart):
                    if chart.stale:
                        chart.replot()
                self.charted_at, self.charts_stale = now, False

    def _fold(self, events: list[tuple[Event, bool]]) -> RunView:
        """The view after `events`; a live failure is announced (a replayed one is history)."""
        view = self.view
        for event, replayed in events:
            if not replayed:
                view = heard_live(view)
            view = fold(view, event)
            if isinstance(event, RunFailed) and not replayed:
                self.notify(escape(event.message), title=f"Run {view.state}", severity="error", timeout=10)
        return view

    def _write(self, log: RichLog, line: LogLine) -> None:
        text = log_markup(line)
        if line.kind == "finished":  # on the same line: at 80x24 the log has five rows
            evaluate = "its last.pt" if self.view.best is None else "the best checkpoint"
            text += f". Press [b]e[/b] to evaluate {evaluate}."
        log.write(text)
        if line.figures is not None and line.figures.gpu_memory:
            log.write(f"[dim]gpu memory: {line.figures.gpu_memory} (peak allocated/reserved)[/]")

    def redraw(self) -> None:
        view = self.view
        self.query_one("#run-title", Static).update(self._title())
        run_bar, epoch_bar = self.query_one("#run-bar", ProgressBar), self.query_one("#epoch-bar", ProgressBar)
        if view.steps:
            run_bar.update(total=view.epochs * view.steps, progress=view.done_steps)
            epoch_bar.update(total=view.steps, progress=view.step)
            epoch_left, run_left = view.remaining()
            run_eta = f"  eta {format_duration(run_left)}" if view.active else ""
            epoch_eta = f"  eta {format_duration(epoch_left)}" if view.active else ""
            self.query_one("#run-eta", Static).update(f"{view.epoch}/{view.epochs}{run_eta}")
            self.query_one("#epoch-eta", Static).update(f"{view.step}/{view.steps}{epoch_eta}")
        else:
            # Empty bars with no run; the moving "working" bar only while a trainer starts, since it redraws
            # many times a second.
            for bar in (run_bar, epoch_bar):
                bar.update(total=None if view.shown_state == "starting" else 1, progress=0)
            for label in ("#run-eta", "#epoch-eta"):
                self.query_one(label, Static).update("")
        self.draw_status()

    def _title(self) -> str:
        view, started = self.view, self.view.started
        if started is not None:
            config = started.config
            return (f"[b]{escape(started.run_id)}[/b]  {escape(config['model'])} on {escape(config['dataset'])} · "
                    f"{escape(started.device_name)} · {started.parameters:,} params")
        if view.state in ("failed", "crashed") and view.run_id:  # it never began training
            return f"[b]{escape(view.run_id)}[/b] failed before training began"
        return self.description

    def draw_status(self) -> None:
        """The status line, short words first so that the usual run's fits 80 columns; what does not fit is
        left out from the end (the lr, at 80 columns), never cut mid-figure. Drawn at once when a key asks
        something of the trainer, not at the next drain."""
        view = self.view
        stats = self.query_one("#run-stats", Static)
        style = STATUS_STYLE.get(view.shown_state if not view.awaiting else "starting", "white")
        best = f"best {format_percent(view.best.val_accuracy)} (ep {view.best.epoch})" if view.best else "best -"
        # Time in epochs, pauses and data loading left out; the run's wall-clock time is in the log at its end.
        parts = [view.status, f"{format_throughput(view.throughput)} img/s", f"loss {format_loss(view.train_loss)}",
                 f"training {format_duration(view.trained_seconds)}", best, f"lr {format_lr(view.lr)}"]
        while len(parts) > 1 and stats.size.width and len(" · ".join(parts)) > stats.size.width:
            parts.pop()
        stats.update(" · ".join([f"[{style}]{escape(parts[0])}[/]", *parts[1:]]))

    def on_resize(self) -> None:
        """Fit the status line to its new width, once it has it."""
        self.call_after_refresh(self.draw_status)

    # Telemetry --------------------------------------------------------------------------------------

    def _follow_device(self) -> None:
        """Sample the hardware while the run is live and has said what it trains on; stop when it ends."""
        device = self.view.device
        live = self.active and bool(device)
        strip = self.query_one(DeviceStrip)
        strip.display = live
        if not live:
            self._stop_sampler()
        elif self.sampler is None:
            self.sampler = TelemetrySampler()
            self.device_uuid = self.view.device_uuid
            strip.show_message(f"{device}: reading…")
            if self.session is not None:
                self._watch_trainer(self.sampler, self.session.run)
            else:
                self.sampler.start()

    @work(thread=True, group="telemetry")
    def _watch_trainer(self, sampler: TelemetrySampler, run: RunDir) -> None:
        """Point the sampler at the trainer, whose CPU and memory the strip shows, and start it: status.json
        names the trainer's pid, read here rather than on the UI thread."""
        pid = run.recorded_pid() or None
        self.app.call_from_thread(self._start_sampling, sampler, pid)

    def _start_sampling(self, sampler: TelemetrySampler, pid: int | None) -> None:
        if sampler is self.sampler:  # not a run the panel has moved on from
            sampler.set_pid(pid)
            sampler.start()

    def _stop_sampler(self) -> None:
        if self.sampler is not None:
            self.sampler.stop(timeout=0)  # its thread ends after the reading it may be taking: no wait here
            self.sampler = None
        self.shown_reading = None

    def _show_telemetry(self) -> None:
        if self.sampler is None:
            return
        reading = self.sampler.latest()
        if reading is None or reading is self.shown_reading:
            return
        self.shown_reading = reading
        try:
            strip = self.query_one(DeviceStrip)
        except NoMatches:  # the app is closing and the screen is being taken apart
            return
        device = self.view.device
        if not device.startswith("cuda"):
            strip.show_cpu(device, reading.cpu, [r.cpu for r in self.sampler.history()])
            return
        gpu = self._run_gpu(reading)
        if gpu is None:
            strip.show_message(f"{device}: " + (reading.nvml_error or "not among the GPUs NVML sees"))
            return
        history = [g for r in self.sampler.history() for g in r.gpus if bare_gpu_uuid(g.uuid) == self.device_uuid]
        strip.show_gpu(gpu, history)

    def _run_gpu(self, reading: TelemetrySnapshot) -> GpuSample | None:
        """The run's GPU in a reading: by the UUID the trainer recorded, else by its CUDA ordinal as this
        process's CUDA_VISIBLE_DEVICES numbers the GPUs (the trainer inherits it when the dashboard starts
        it), remembered as a UUID from then on."""
        if not self.device_uuid:
            ordinal = self.view.device.partition(":")[2] or "0"
            gpu = telemetry.gpu_for_cuda_ordinal(int(ordinal), reading.gpus, os.environ) \
                if ordinal.isdigit() else None
            if gpu is None or not gpu.uuid:
                return gpu
            self.device_uuid = bare_gpu_uuid(gpu.uuid)
        return next((gpu for gpu in reading.gpus if bare_gpu_uuid(gpu.uuid) == self.device_uuid), None)

    # Actions ----------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Pause and stop only while the run shown is live, left out of the footer otherwise; `p` is named
        Resume while the run is paused or pausing (a second `p` takes a pause back); a stop under way dims
        `s` and leaves out `p`."""
        if action not in ("toggle_pause", "stop"):
            return True
        view = self.view
        if not view.active:
            return False
        if action == "stop":
            return None if view.awaiting == "stop" else True
        if view.awaiting == "stop":
            return False
        named = parameters[0] if parameters else None
        return {"resume": view.pausing_or_paused, "pause": not view.pausing_or_paused}.get(str(named), True)

    def on_key(self, event: Key) -> None:
        """`p` or `s` on a run that has ended: the footer leaves them out, but a key that does nothing at
        all reads as a hung dashboard, so say why."""
        if event.key in ("p", "s") and not self.active:
            event.stop()
            self._not_live()

    def _not_live(self) -> None:
        """Pause or stop asked of a run that has ended (from the command palette): point at one that is live."""
        live = find_live_run(self.runs_dir)
        if live is None:
            self.notify("No run is training.", severity="warning")
        else:
            self.notify(f"This run has ended; run {escape(live.run.run_id)} is live: Enter on it in Runs (F6).",
                        severity="warning")

    def _asked(self, request: str) -> None:
        """Say at once that the trainer was asked (`pausing…`): it answers within a batch or two, but on a
        busy box the next drain and its redraw can be half a second away."""
        self.view = asked(self.view, request)
        self.draw_status()
        self.refresh_bindings()

    def action_toggle_pause(self, shown_as: str = "") -> None:
        """Pause a running run, resume a paused one (`shown_as` only picks the footer's name for it)."""
        if self.session is None or not self.active:
            self._not_live()
            return
        if self.view.awaiting == "stop":  # stopping: there is nothing left to pause
            return
        resume = self.view.pausing_or_paused
        try:
            if resume:
                self.session.resume()
            else:
                self.session.pause()
        except OSError as error:
            self.notify(f"Cannot reach the run's folder: {escape(error)}", severity="error")
            return
        self._asked("resume" if resume else "pause")

    def action_stop(self) -> None:
        """Stop asks first: a second `s` within a few seconds confirms. The question is a toast, not a
        dialog, because a dialog redraws the whole screen under it, which takes a few hundred
        milliseconds on two cores that are busy training."""
        if self.session is None or not self.active:
            self._not_live()
            return
        if self.view.awaiting == "stop":
            return
        now = time.monotonic()
        if now > self.stop_confirm_until:
            self.stop_confirm_until = now + STOP_CONFIRM_SECONDS
            self.notify("Press [b]s[/b] again to stop the run. It saves last.pt.", title="Stop?",
                        timeout=STOP_CONFIRM_SECONDS)
            return
        self.stop_confirm_until = 0.0
        self.app.clear_notifications()  # the question, answered
        try:
            self.session.stop()
        except OSError as error:
            self.notify(f"Cannot reach the run's folder: {escape(error)}", severity="error")
            return
        self._asked("stop")

    def action_evaluate_best(self) -> None:
        """The run's best.pt, else its last.pt, found in the run's folder as this dashboard sees it: the
        paths in the log are the trainer's, relative to wherever it was started."""
        path = None
        if self.session is not None:
            path = next((p for p in (self.session.run.path / "best.pt", self.session.run.path / "last.pt")
                         if p.exists()), None)
        if path is None:
            self.notify("No checkpoint yet: one is saved at the end of each epoch.", severity="warning")
            return
        self.post_message(EvaluateCheckpoint(path))

    def action_new_run(self) -> None:
        self.post_message(ShowScreen("settings"))
