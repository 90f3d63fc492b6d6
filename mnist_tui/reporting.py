"""Rich output for the headless CLI: live progress for `train`, tables for `eval` and `runs`."""

from __future__ import annotations

import math
import os
import sys
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from mnist_tui.config import TrainConfig
from mnist_tui.events import EpochEnded, Event, RunFailed, RunFinished
from mnist_tui.runs import RunSummary
from mnist_tui.runview import (
    EpochFigures,
    LogLine,
    RunView,
    fold,
    format_duration,
    format_loss,
    format_memory,
    format_percent,
    format_throughput,
)
from mnist_tui.telemetry import TelemetrySnapshot, visible_gpus

if TYPE_CHECKING:  # torch-free at run time, so the dashboard can use the formatters without importing torch
    from mnist_tui.checkpoints import Checkpoint
    from mnist_tui.evaluation import EvaluationResult


STATUS_STYLE = {"completed": "green", "running": "cyan", "starting": "cyan", "paused": "yellow", "stopped": "yellow",
                "failed": "red", "crashed": "red", "unreadable": "red"}


TONE_STYLES = {"good": "green", "warning": "yellow", "error": "red", "quiet": "dim"}
"""How the CLI and the dashboard show a log line's tone (see runview.LogLine)."""


def toned(text: str, tone: str) -> str:
    """Plain `text` as Rich markup in its tone's style."""
    style = TONE_STYLES.get(tone)
    return f"[{style}]{escape(text)}[/]" if style else escape(text)


def styled_status(status: str) -> str:
    """A run status as Rich markup, coloured the same in the CLI and the dashboard."""
    return f"[{STATUS_STYLE.get(status, 'white')}]{escape(status)}[/]"


def format_confidence(probability: float) -> str:
    """How sure a model was of a prediction, `99.9%`, the same in `eval` and on the dashboard. Rounded
    down, so that a mistake never reads 100% unless the model left no doubt at all; `-` from weights
    gone NaN, which say nothing."""
    if not math.isfinite(probability):
        return "-"
    return f"{math.floor(probability * 1000 + 1e-9) / 10:.1f}%"  # the 1e-9: 0.995 * 1000 is 994.999...


def format_score(value: float) -> str:
    """A per-class precision, recall or F1 to three decimals (a tenth of a percent), the same in `eval` and
    on the dashboard, where ten rows of them fit beside the confusion matrix."""
    return f"{value:.3f}"


def short_gpu_name(name: str) -> str:
    """`NVIDIA H100 80GB HBM3` as `H100 80GB HBM3`: every board here is NVIDIA's."""
    return name.removeprefix("NVIDIA ").strip() or name


def threads_note(threads: int, requested: int) -> str:
    """How many threads torch trains with, and why that many."""
    why = "as set" if requested else "fitted to the cores free"
    return f"{threads} torch thread{'s' if threads != 1 else ''} ({why})"


def quiet_stdout() -> None:
    """Point stdout at /dev/null once its reader has gone (`| head`), or Python fails again flushing it."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


class PipeSafeConsole(Console):
    """A console that falls silent when its reader goes away, where rich's would exit the process: the
    run it reports on goes on."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        quiet_stdout()


class ConsoleReporter:
    """Shows a run as two progress bars (run, epoch) with ETA and samples/s, and its story as the training
    panel tells it (see runview), the epochs as a table."""

    COLUMNS = ("epoch", "train loss", "train acc", "val loss", "val acc", "lr", "time", "samples/s")
    LEFT_OUT = ("saved", "failed")
    """Log lines left out: a checkpoint after every epoch would split the table, and the CLI says why a
    run failed on stderr."""

    def __init__(self, config: TrainConfig, console: Console | None = None) -> None:
        self.config = config
        # soft_wrap: a line longer than the terminal, or sent to a file, is never broken mid-phrase.
        self.console = console or PipeSafeConsole(stderr=False, soft_wrap=True)
        self.progress = Progress(
            TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=self.console, transient=True)
        self.run_task: TaskID | None = None
        self.epoch_task: TaskID | None = None
        self.view = RunView()
        self.printed = 0
        """Lines of the view's log printed so far."""
        self.headed = False
        """Whether the epochs' table has its header: it comes before the first epoch's row."""

    def show(self, event: Event) -> None:
        self.view = fold(self.view, event)
        ended = isinstance(event, RunFinished | RunFailed)
        if ended:
            self.close()  # before the last words, which would otherwise print under the bars
        for line in self.view.log.since(self.printed):
            self._print(line)
        self.printed = len(self.view.log)
        if isinstance(event, RunFinished):
            self.console.print(f"run folder: {escape(event.run_dir)}")
        elif not ended and self.run_task is not None and self.epoch_task is not None:
            view = self.view
            if isinstance(event, EpochEnded):
                self.progress.reset(self.epoch_task, total=view.steps, note="")
            else:
                self.progress.update(self.run_task, completed=view.done_steps, note=f"epoch {view.epoch}/{view.epochs}")
                self.progress.update(self.epoch_task, completed=view.step,
                                     note=f"loss {format_loss(view.train_loss)}  "
                                          f"{format_throughput(view.samples_per_second)} samples/s")

    def _print(self, line: LogLine) -> None:
        if line.kind in self.LEFT_OUT:
            return
        if line.kind == "started":
            self._started()
        if line.figures is not None:
            if not self.headed:
                self._head_table()
            self.console.print(epoch_row(line.figures))
            return
        self.console.print(toned(line.text, line.tone))

    def _started(self) -> None:
        """Say what the run is and put the bars up."""
        event, view = self.view.started, self.view
        assert event is not None  # a started line comes with its start
        self.console.print(
            f"run {escape(event.run_id)}: {self.config.model} ({event.parameters:,} parameters) on "
            f"{self.config.dataset}, {escape(event.device)} {escape(event.device_name)}"
            + (f"; {threads_note(event.threads, self.config.num_threads)}" if event.threads else ""))
        if self.run_task is None:
            self.progress.start()
            self.run_task = self.progress.add_task("run", total=view.epochs * view.steps, completed=view.done_steps,
                                                   note="")
            self.epoch_task = self.progress.add_task("epoch", total=view.steps, completed=view.step, note="")

    def _head_table(self) -> None:
        on_gpu = self.view.device.startswith("cuda")
        header = "{:>9} {:>10} {:>9} {:>9} {:>8}   {:>9} {:>7} {:>10}".format(*self.COLUMNS)
        self.console.print("[bold]" + header + (f" {'gpu peak/reserved':>17}" if on_gpu else ""))
        self.headed = True

    def close(self) -> None:
        """Take the bars down; once, and only if they went up (rich prints an empty line for each stop)."""
        if self.progress.live.is_started:
            self.progress.stop()


def epoch_row(figures: EpochFigures) -> str:
    """An epoch as a row of the CLI's table (see ConsoleReporter.COLUMNS): the panel's figures, in columns."""
    best = " *" if figures.best else ""
    memory = f" {figures.gpu_memory:>17}" if figures.gpu_memory else ""
    return (f"{figures.epoch:>5}/{figures.epochs:<3} {figures.train_loss:>10} {figures.train_accuracy:>9} "
            f"{figures.val_loss:>9} {figures.val_accuracy:>8}{best:<2} {figures.lr:>9} {figures.seconds:>7} "
            f"{figures.throughput:>10}{memory}")


def print_evaluation(result: EvaluationResult, checkpoint: Checkpoint, mistakes: int,
                     console: Console | None = None) -> None:
    from mnist_tui.checkpoints import BARE_STATE_DICT_NOTE

    console = console or Console(soft_wrap=True)
    note = f" ({BARE_STATE_DICT_NOTE})" if checkpoint.bare_state_dict else ""
    console.print(f"[bold]{escape(result.checkpoint)}[/]: {checkpoint.model_name} on {result.dataset} {result.split} "
                  f"({result.samples:,} images){note}")
    if result.warning:
        console.print(f"[bold yellow]warning:[/] {escape(result.warning)}")
    console.print(f"loss {format_loss(result.loss)}   accuracy [bold]{format_percent(result.accuracy)}[/] "
                  f"({result.samples - len(result.mistakes):,}/{result.samples:,})   {result.seconds:.2f}s")
    labels = [score.label for score in result.per_class]
    # Columns by class number: Fashion-MNIST's names ("Ankle boot") would not fit ten across 80 columns.
    confusion = Table(title="confusion matrix (rows: true, columns: predicted)", show_edge=False)
    confusion.add_column("", no_wrap=True)
    for number in range(len(labels)):
        confusion.add_column(str(number), justify="right")
    for number, (label, row) in enumerate(zip(labels, result.confusion_matrix, strict=True)):
        cells = [f"[bold]{v}[/]" if i == number else (f"[red]{v}[/]" if v else "[dim]0[/]") for i, v in enumerate(row)]
        confusion.add_row(label if label == str(number) else f"{number} {label}", *cells)
    console.print(confusion)
    scores = Table(title="per-class scores", show_edge=False)
    for column in ("class", "precision", "recall", "f1", "support"):
        scores.add_column(column, justify="left" if column == "class" else "right")
    for score in result.per_class:
        scores.add_row(score.label, format_score(score.precision), format_score(score.recall), format_score(score.f1),
                       str(score.support))
    console.print(scores)
    if mistakes and result.mistakes:
        wrong = Table(title=f"most confident mistakes ({min(mistakes, len(result.mistakes))} of "
                      f"{len(result.mistakes)})", show_edge=False)
        for column in ("index", "true", "predicted", "confidence"):
            wrong.add_column(column, justify="right")
        for mistake in result.mistakes[:mistakes]:
            wrong.add_row(str(mistake.index), labels[mistake.true], labels[mistake.predicted],
                          format_confidence(mistake.confidence))
        console.print(wrong)


def print_runs(summaries: list[RunSummary], console: Console | None = None) -> None:
    console = console or Console(soft_wrap=True)
    if not summaries:
        console.print("no runs yet: start one with `mnist-tui train` or from the dashboard")
        return
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    # Ids are what `attach` and `--resume` take: never cut them, however narrow the terminal or pipe.
    table.add_column("run", no_wrap=True, min_width=max(len(s.run_id) for s in summaries))
    for column in ("status", "model", "dataset", "epochs", "best acc", "duration"):
        table.add_column(column)
    for s in summaries:
        table.add_row(escape(s.run_id), styled_status(s.status), escape(s.model), escape(s.dataset),
                      f"{s.epochs_done}/{s.epochs}", format_percent(s.best_val_accuracy), format_duration(s.duration))
    console.print(table)
    # Why the failed and unreadable ones are so, and damage in a log, which the table has no room for.
    for s in summaries:
        if s.message:
            console.print(f"{escape(s.run_id)}: {escape(s.message)}", style="red", highlight=False)
        if s.skipped_lines:
            console.print(f"{escape(s.run_id)}: {s.skipped_note} in {escape(str(s.path / 'events.jsonl'))}",
                          style="yellow", highlight=False)


def print_devices(snapshot: TelemetrySnapshot, cuda_visible_devices: str | None,
                  console: Console | None = None) -> None:
    """The CPU on one line, a row per GPU, and why NVML is unavailable if it is; `cuda` is the name a
    run started from this shell gives each GPU (CUDA_VISIBLE_DEVICES taken into account)."""
    console = console or Console(soft_wrap=True)
    cpu = snapshot.cpu
    load = " ".join(f"{value:.2f}" for value in cpu.load_average)
    console.print(f"CPU: {cpu.utilization:.0f}% of {cpu.cores} cores · load {load}", highlight=False)
    if snapshot.gpus:
        ordinals = {gpu.index: n for n, gpu in enumerate(visible_gpus(snapshot.gpus, cuda_visible_devices))}
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
        for column in ("gpu", "cuda", "name", "free / total", "util", "temp", "power / limit", "procs"):
            table.add_column(column, justify="left" if column in ("cuda", "name") else "right", no_wrap=True)
        for gpu in snapshot.gpus:
            cuda = f"cuda:{ordinals[gpu.index]}" if gpu.index in ordinals else "-"
            power = "-" if gpu.power_draw is None else f"{gpu.power_draw:.0f} W"
            if gpu.power_limit is not None:
                power += f" / {gpu.power_limit:.0f} W"
            table.add_row(str(gpu.index), cuda, escape(short_gpu_name(gpu.name)),
                          f"{format_memory(gpu.memory_free)} / {format_memory(gpu.memory_total)}",
                          "-" if gpu.utilization is None else f"{gpu.utilization:.0f}%",
                          "-" if gpu.temperature is None else f"{gpu.temperature}°C", power, str(len(gpu.processes)))
        console.print(table)
    elif snapshot.nvml_error is None:
        console.print("GPUs: none (NVML sees no GPU)")
    if snapshot.nvml_error is not None:
        console.print(f"GPUs: {escape(snapshot.nvml_error)}", style="yellow", highlight=False)
