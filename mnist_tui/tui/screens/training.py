"""The live training panel: bars with ETA, throughput, loss and accuracy charts, a log, pause and stop.

Events arrive through `receive` from the app's feed worker; a timer drains them a few times a second
and redraws once inside `batch_update()`, whatever the training speed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.events import Key
from textual.screen import Screen
from textual.widgets import Footer, Label, ProgressBar, RichLog, Static

from mnist_tui import telemetry
from mnist_tui.events import (
    BatchProgress,
    CheckpointSaved,
    EpochEnded,
    Event,
    RunFailed,
    RunFinished,
    RunPaused,
    RunPreparing,
    RunResumed,
    RunStarted,
)
from mnist_tui.reporting import format_duration, format_gpu_memory
from mnist_tui.runs import find_live_run, skipped_note
from mnist_tui.session import TrainingSession
from mnist_tui.telemetry import GpuSample, TelemetrySampler, TelemetrySnapshot
from mnist_tui.tui.markup import escape
from mnist_tui.tui.messages import EvaluateCheckpoint, ShowScreen
from mnist_tui.tui.widgets.charts import AccuracyChart, LossChart
from mnist_tui.tui.widgets.tabs import ScreenTabs
from mnist_tui.tui.widgets.telemetry import DeviceStrip

STOP_CONFIRM_SECONDS = 3.0
"""How long after a first `s` a second one stops the run."""


def _bare_uuid(uuid: str) -> str:
    """A GPU's UUID without NVML's `GPU-` prefix, which torch's `device_properties.uuid` leaves out."""
    return uuid.removeprefix("GPU-")


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
        self.state = "idle"
        self.stage = ""
        """What a starting run's trainer says it is doing (RunPreparing), shown as `starting: <stage>…`."""
        self.epochs = 0
        self.steps = 0
        self.batch_size = 0
        self.epoch = 0
        self.step = 0
        self.samples_per_second = 0.0
        self.last_epoch_throughput = 0.0
        self.lr: float | None = None
        self.epoch_elapsed = 0.0
        self.finished_seconds = 0.0
        self.best: EpochEnded | None = None
        self.stop_confirm_until = 0.0
        self.awaiting: str | None = None
        """"pause" or "stop" while the trainer has been asked to and has not yet: its toast goes when it has."""
        self.description = "No run yet: set one up on Settings (F2) and press F5."
        self.device = ""
        """The live run's device as its trainer named it ("cuda:0", "cpu"); "" until it has started."""
        self.device_uuid = ""
        """Its GPU's UUID, recorded by the trainer or found from its ordinal; "" off a GPU or while unknown."""
        self.sampler: TelemetrySampler | None = None
        """Reads the hardware on its own thread while a run is live; the strip shows its latest reading."""
        self.shown_reading: TelemetrySnapshot | None = None
        self.skipped_shown = 0
        """Unreadable log lines the panel has told of: it says so again when more are skipped."""

    @property
    def active(self) -> bool:
        return self.state in ("starting", "running", "paused")

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
        if self.state != "idle":  # a run followed before the panel was first shown: say so at once
            self.redraw()

    def on_unmount(self) -> None:
        self._stop_sampler()

    def follow(self, session: TrainingSession) -> None:
        """Reset the panel for a run; its whole history replays from the event log."""
        self._reset(session, "starting", f"Starting run {escape(session.run.run_id)}…")

    def forget(self, description: str) -> None:
        """Empty the panel (its run was deleted), saying why."""
        self._reset(None, "idle", description)

    def _reset(self, session: TrainingSession | None, state: str, description: str) -> None:
        self.session = session
        self.pending.clear()
        self.state, self.epoch, self.step, self.best = state, 0, 0, None
        self.stage = "launching the trainer"  # until the trainer says what it is doing
        self.epochs = self.steps = 0
        self.samples_per_second, self.epoch_elapsed, self.finished_seconds, self.lr = 0.0, 0.0, 0.0, None
        self.last_epoch_throughput = 0.0
        self.stop_confirm_until, self.awaiting = 0.0, None
        self.device = self.device_uuid = ""
        self._stop_sampler()
        self.skipped_shown = 0
        self.description = description
        if self.is_mounted:
            self.query_one(LossChart).clear()
            self.query_one(AccuracyChart).clear()
            self.query_one(RichLog).clear()
            self.query_one(DeviceStrip).display = False
            self.redraw()

    # Events -----------------------------------------------------------------------------------------

    def receive(self, *events: Event, replayed: bool = False) -> None:
        """Queue events for the next drain. Replayed ones (the log as it was when the panel began to follow
        it) are drawn like the rest but not announced: an old failure gets no toast."""
        self.pending.extend((event, replayed) for event in events)

    def drain(self) -> None:
        """Fold every pending event into the panel's state and redraw once; replot a chart, which costs far
        more to draw than the rest, only when its data changed and at most every `chart_seconds` while
        the run is live. The device strip shows the sampler's latest reading, if it is new."""
        self._show_telemetry()
        skipped = self.session.skipped_lines if self.session is not None else 0
        if not self.pending and not self.charts_stale and skipped == self.skipped_shown:
            return
        try:
            loss_chart, accuracy_chart = self.query_one(LossChart), self.query_one(AccuracyChart)
        except NoMatches:  # the app is closing and the screen is being taken apart
            return
        with self.app.batch_update():
            if self.pending:
                events, self.pending = self.pending, []
                log = self.query_one(RichLog)
                was_state = self.state
                for event, replayed in events:
                    self.apply(event, log, loss_chart, accuracy_chart, replayed)
                if self.state != was_state:
                    self.refresh_bindings()  # the footer's pause, resume and stop follow the state
                self._follow_device()
                self.redraw()
            if skipped != self.skipped_shown:
                self.skipped_shown = skipped
                self.query_one(RichLog).write(f"[yellow]{skipped_note(skipped)} in events.jsonl[/]")
            now = time.monotonic()
            self.charts_stale = loss_chart.stale or accuracy_chart.stale
            if self.charts_stale and (now - self.charted_at >= self.chart_seconds or not self.active):
                for chart in (loss_chart, accuracy_chart):
                    if chart.stale:
                        chart.replot()
                self.charted_at, self.charts_stale = now, False

    def apply(self, event: Event, log: RichLog, loss_chart: LossChart, accuracy_chart: AccuracyChart,
              replayed: bool = False) -> None:
        if isinstance(event, RunPreparing):
            self.stage = event.stage
        elif isinstance(event, RunStarted):
            # A trainer that crashed or failed got further than its last checkpoint: the resumed one redoes
            # that part. (One that stopped saved where it was; and logs from before `start_step` lack it.)
            if self.state != "stopped":
                loss_chart.train.cut_after(event.start_epoch + event.start_step / event.steps_per_epoch)
            config = event.config
            self.epochs, self.steps, self.state = config["epochs"], event.steps_per_epoch, "running"
            self.batch_size = config["batch_size"]
            self.epoch = event.start_epoch
            # Read from a log that may be damaged: strings, whatever it holds.
            self.device, self.device_uuid = str(event.device), _bare_uuid(str(event.device_uuid or ""))
            self.description = (f"[b]{escape(event.run_id)}[/b]  {config['model']} on {config['dataset']} · "
                                f"{escape(event.device_name)} · {event.parameters:,} params")
            log.write(f"started: batch {config['batch_size']}, {config['optimizer']} lr {config['lr']}, "
                      f"{escape(config.get('precision', 'fp32'))}, "
                      f"{event.train_size:,} train / {event.val_size:,} {escape(event.val_source)}")
            if event.note:
                log.write(f"[yellow]note: {escape(event.note)}[/]")
        elif isinstance(event, BatchProgress):
            self.epoch, self.step = event.epoch, event.step
            self.samples_per_second, self.lr, self.epoch_elapsed = event.samples_per_second, event.lr, event.elapsed
            loss_chart.train.add(event.epoch - 1 + event.step / event.steps, event.loss)
            loss_chart.stale = True
        elif isinstance(event, EpochEnded):
            self.epoch, self.step = event.epoch, self.steps
            loss_chart.val_epochs.append(event.epoch)
            loss_chart.val_loss.append(event.val_loss)
            accuracy_chart.epochs.append(event.epoch)
            accuracy_chart.train.append(event.train_accuracy)
            accuracy_chart.val.append(event.val_accuracy)
            loss_chart.stale = accuracy_chart.stale = True
            if event.is_best:
                self.best = event
                accuracy_chart.best_epoch = event.epoch
            self.finished_seconds += event.epoch_seconds
            self.epoch_elapsed = 0.0  # now counted in finished_seconds
            self.last_epoch_throughput = event.samples_per_second
            mark = "  [green]best[/]" if event.is_best else ""
            # One line in 80 columns: a wrapped line would take a row of the five the log has there.
            log.write(f"epoch {event.epoch:>{len(str(event.epochs))}}/{event.epochs}  "
                      f"loss {event.train_loss:.4f} (val {event.val_loss:.4f})  "
                      f"acc {event.train_accuracy:.2%} (val {event.val_accuracy:.2%})  "
                      f"{event.epoch_seconds:.1f}s{mark}")
            if event.gpu_memory_peak is not None:
                log.write(f"[dim]gpu memory: {format_gpu_memory(event)} (peak allocated/reserved)[/]")
        elif isinstance(event, CheckpointSaved):
            log.write(f"[dim]saved {escape(event.kind)}.pt (epoch {event.position})[/]")
        elif isinstance(event, RunPaused):
            self.state = "paused"
            self._answered("pause")
            log.write(f"[yellow]paused at epoch {event.epoch}, step {event.step}[/]")
        elif isinstance(event, RunResumed):
            self.state = "running"
            log.write("[green]resumed[/]")
        elif isinstance(event, RunFinished):
            self.state = event.status
            self._answered("stop")
            if event.best_val_accuracy is None:
                best, evaluate = "-", "its last.pt"
            else:
                best, evaluate = f"{event.best_val_accuracy:.2%} at epoch {event.best_epoch}", "the best checkpoint"
            log.write(f"[b]{event.status}[/b] after {event.epochs_done} epoch(s) in "
                      f"{format_duration(event.duration)} (wall clock); best val accuracy {best}. "
                      f"Press [b]e[/b] to evaluate {evaluate}.")
        elif isinstance(event, RunFailed):
            if not self.steps and self.session is not None:  # no RunStarted: it never began training
                self.description = f"[b]{escape(self.session.run.run_id)}[/b] failed before training began"
            # A trainer that died without a word is `crashed`, as Runs lists it; one that said why, `failed`.
            crashed = self.session is not None and self.session.run.status() == "crashed"
            self.state = "crashed" if crashed else "failed"
            self._answered("stop")
            log.write(f"[red][b]failed:[/b] {escape(event.message)}[/]")
            if not replayed:
                self.notify(escape(event.message), title=f"Run {self.state}", severity="error", timeout=10)

    def _answered(self, request: str) -> None:
        """The trainer did what it was asked: the "Pausing…" or "Stopping…" toast has said its piece."""
        if self.awaiting == request:
            self.app.clear_notifications()
            self.awaiting = None

    def redraw(self) -> None:
        self.query_one("#run-title", Static).update(self.description)
        run_bar, epoch_bar = self.query_one("#run-bar", ProgressBar), self.query_one("#epoch-bar", ProgressBar)
        if self.steps:
            done = (self.epoch - 1) * self.steps + self.step if self.epoch else 0
            run_bar.update(total=self.epochs * self.steps, progress=done)
            epoch_bar.update(total=self.steps, progress=self.step)
            epoch_left, run_left = self._remaining(done)
            run_eta = f"  eta {format_duration(run_left)}" if self.active else ""
            epoch_eta = f"  eta {format_duration(epoch_left)}" if self.active else ""
            self.query_one("#run-eta", Static).update(f"{self.epoch}/{self.epochs}{run_eta}")
            self.query_one("#epoch-eta", Static).update(f"{self.step}/{self.steps}{epoch_eta}")
        else:
            # Empty bars with no run; the moving "working" bar only while a trainer starts, since it redraws
            # many times a second.
            for bar in (run_bar, epoch_bar):
                bar.update(total=None if self.state == "starting" else 1, progress=0)
            for label in ("#run-eta", "#epoch-eta"):
                self.query_one(label, Static).update("")
        state = {"running": "[green]running[/]", "paused": "[yellow]paused[/]", "failed": "[red]failed[/]",
                 "crashed": "[red]crashed[/]", "completed": "[green]completed[/]",
                 "stopped": "[yellow]stopped[/]",
                 "starting": f"[cyan]starting: {escape(self.stage)}…[/]"}.get(self.state, self.state)
        best = f"best {self.best.val_accuracy:.2%} (ep {self.best.epoch})" if self.best else "best -"
        # Time in epochs, pauses and data loading left out; the run's wall-clock time is in the log at its end.
        trained = self.finished_seconds + self.epoch_elapsed
        lr = f"{self.lr:.3g}" if self.lr is not None else "-"
        # Live while it runs; once it has ended, its last epoch's average; nothing while paused.
        throughput = {"running": self.samples_per_second, "completed": self.last_epoch_throughput}.get(self.state)
        speed = f"{throughput:,.0f}" if throughput else "-"
        self.query_one("#run-stats", Static).update(
            # Short words, so the usual run's line fits 80 columns.
            f"{state} · {speed} img/s · training {format_duration(trained)} · lr {lr} · {best}")

    # Telemetry --------------------------------------------------------------------------------------

    def _follow_device(self) -> None:
        """Sample the hardware while the run is live and has said what it trains on; stop when it ends."""
        live = self.active and bool(self.device)
        strip = self.query_one(DeviceStrip)
        strip.display = live
        if not live:
            self._stop_sampler()
        elif self.sampler is None:
            # The trainer's pid, for its CPU and memory: its status.json names it once it has started.
            pid = self.session.run.recorded_pid() if self.session is not None else 0
            self.sampler = TelemetrySampler(pid=pid or None)
            self.sampler.start()
            strip.show_message(f"{self.device}: reading…")

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
        if not self.device.startswith("cuda"):
            strip.show_cpu(self.device, reading.cpu, [r.cpu for r in self.sampler.history()])
            return
        gpu = self._run_gpu(reading)
        if gpu is None:
            strip.show_message(f"{self.device}: " + (reading.nvml_error or "not among the GPUs NVML sees"))
            return
        history = [g for r in self.sampler.history() for g in r.gpus if _bare_uuid(g.uuid) == self.device_uuid]
        strip.show_gpu(gpu, history)

    def _run_gpu(self, reading: TelemetrySnapshot) -> GpuSample | None:
        """The run's GPU in a reading: by the UUID the trainer recorded, else by its CUDA ordinal as this
        process's CUDA_VISIBLE_DEVICES numbers the GPUs (the trainer inherits it when the dashboard starts
        it), remembered as a UUID from then on."""
        if not self.device_uuid:
            ordinal = self.device.partition(":")[2] or "0"
            gpu = telemetry.gpu_for_cuda_ordinal(int(ordinal), reading.gpus, os.environ) \
                if ordinal.isdigit() else None
            if gpu is None or not gpu.uuid:
                return gpu
            self.device_uuid = _bare_uuid(gpu.uuid)
        return next((gpu for gpu in reading.gpus if _bare_uuid(gpu.uuid) == self.device_uuid), None)

    def _remaining(self, done: int) -> tuple[float | None, float | None]:
        """Seconds left in the epoch and the run, from this epoch's throughput once a tenth of it is done,
        before that from the last epoch's; None until one is known. An epoch's first steps pay for warming
        up and would put the estimate minutes off."""
        early = self.step < max(2, self.steps // 10)
        rate = self.last_epoch_throughput if early else self.samples_per_second
        if rate <= 0 or self.state == "paused":
            return None, None
        per_step = self.batch_size / rate
        return (self.steps - self.step) * per_step, (self.epochs * self.steps - done) * per_step

    # Actions ----------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Pause and stop only while the run shown is live, dimmed in the footer otherwise; `p` is named
        Resume while the run is paused."""
        if action == "toggle_pause" and parameters:
            paused = self.state == "paused"
            if parameters[0] == "resume":
                return paused
            return None if not self.active else not paused
        return None if action in ("toggle_pause", "stop") and not self.active else True

    def on_key(self, event: Key) -> None:
        """`p` or `s` on a run that has ended: the footer dims them, but a key that does nothing at all
        reads as a hung dashboard (and dimming is lost under NO_COLOR), so say why."""
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

    def action_toggle_pause(self, shown_as: str = "") -> None:
        """Pause a running run, resume a paused one (`shown_as` only picks the footer's name for it)."""
        if self.session is None or not self.active:
            self._not_live()
            return
        try:
            if self.state == "paused":
                self.session.resume()
            else:
                self.session.pause()
                self.awaiting = "pause"
                self.notify("Pausing after the current batch…")
        except OSError as error:
            self.notify(f"Cannot reach the run's folder: {escape(error)}", severity="error")

    def action_stop(self) -> None:
        """Stop asks first: a second `s` within a few seconds confirms. The question is a toast, not a
        dialog, because a dialog redraws the whole screen under it, which takes a few hundred
        milliseconds on two cores that are busy training."""
        if self.session is None or not self.active:
            self._not_live()
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
        self.awaiting = "stop"
        self.notify("Stopping: saving last.pt…")

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
