"""The run directory: config, append-only event log, status, control requests and checkpoints.

    runs/<run-id>/
        config.json     the TrainConfig the run was started with
        events.jsonl    one JSON event per line, appended as they happen (see events.py)
        status.json     {"status": ..., "pid": ..., "pid_started": ..., "updated": ...}, rewritten atomically
        control.json    {"command": "run" | "pause" | "stop"}, written by whoever steers the run
        trainer.log     stderr of a trainer started in the background (tracebacks, if it crashed)
        trainer.lock    locked (flock) by the run's one trainer for its life; holds its pid
        last.pt, best.pt

A run whose status says `running` but whose process is gone (or whose pid now names a process that started
later) is reported as `crashed`.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import math
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnist_tui.config import ConfigError, TrainConfig, load_config
from mnist_tui.control import DiskFull, read_json_table, saving, write_json_atomic
from mnist_tui.data import dataset_present
from mnist_tui.events import (
    BatchProgress,
    EpochEnded,
    Event,
    EventError,
    RunFailed,
    RunFinished,
    RunStarted,
    dumps,
    parse_line,
)

RUNS_DIR_ENV = "MNIST_TUI_RUNS"
DEFAULT_RUNS_DIR = Path("runs")
ACTIVE_STATUSES = ("starting", "running", "paused")
RESUMABLE_STATUSES = ("stopped", "failed", "crashed")
"""A run in one of these can go on from its last.pt; an active one already is, a completed one is done, and
one whose status cannot be read might still be training."""
PROGRESS_LINE_START = f'{{"event":"{BatchProgress.name}",'.encode()
"""How a batch progress line begins in the log: `dumps` writes the event's name first, without spaces."""


def resolve_runs_dir(explicit: str | Path | None = None) -> Path:
    """`--runs-dir`, else $MNIST_TUI_RUNS, else ./runs."""
    if explicit:
        return Path(explicit).expanduser()
    from_env = os.environ.get(RUNS_DIR_ENV)
    return Path(from_env).expanduser() if from_env else DEFAULT_RUNS_DIR


def process_alive(pid: int) -> bool:
    if pid <= 0:
        return False  # 0 and -1 would ask about a whole process group, not one process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not alive for our purposes.
    fields = _proc_stat_fields(pid)
    return fields is None or fields[0] != b"Z"


def process_start_time(pid: int) -> str | None:
    """When the process started (clock ticks since boot), where /proc tells: with its pid it names one
    process, even after the pid is reused (a reboot, a long-lived box)."""
    fields = _proc_stat_fields(pid)
    return fields[19].decode() if fields is not None and len(fields) > 19 else None


def _proc_stat_fields(pid: int) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the process name (which may hold any bytes), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


@dataclass
class EventLog:
    """What an event log holds: its valid events in order, and how many lines were not valid events."""

    events: list[Event]
    skipped: int


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def events_path(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def control_path(self) -> Path:
        return self.path / "control.json"

    @property
    def log_path(self) -> Path:
        return self.path / "trainer.log"

    def config(self) -> TrainConfig:
        """The run's settings. Raises ConfigError (a ValueError), naming config.json, if it is missing,
        damaged or invalid."""
        return load_config(self.path / "config.json")

    def append_event(self, event: Event) -> None:
        """Append one line and flush it, so followers see whole lines as soon as they exist. A line a
        killed trainer left half-written is ended first, so it spoils only itself."""
        line = (dumps(event) + "\n").encode("utf-8")
        with saving(self.events_path), open(self.events_path, "ab+") as stream:
            end = stream.seek(0, os.SEEK_END)
            if end:
                stream.seek(end - 1)
                if stream.read(1) != b"\n":
                    line = b"\n" + line
            stream.write(line)

    def read_events(self, *, progress: bool = True) -> list[Event]:
        """The events logged so far (see `read_log`)."""
        return self.read_log(progress=progress).events

    def read_log(self, *, progress: bool = True, complete: bool = False) -> EventLog:
        """The events logged so far, and how many lines were skipped. A last line without its newline is
        still being written and is left for the next read, unless `complete` (its trainer is gone, so the
        line never will be whole). A line that is not a valid event (cut short by a crash, edited by hand,
        the wrong types) is skipped and counted, as the dashboard does, rather than costing the run its
        whole history.

        Without `progress`, batch progress lines (ten a second, nearly all of a long run's log) are passed
        over unparsed, so neither checked nor counted: summaries need only the starts, epochs and ends, and
        the Runs screen re-reads the logs every two seconds while a run trains."""
        try:
            data = self.events_path.read_bytes()
        except FileNotFoundError:
            return EventLog([], 0)
        lines = data.split(b"\n")
        if not complete or not lines[-1]:
            lines.pop()
        log = EventLog([], 0)
        for line in filter(bytes.strip, lines):  # an empty line ends one a killed trainer cut short
            if not progress and line.startswith(PROGRESS_LINE_START):
                continue
            try:
                log.events.append(parse_line(line))
            except EventError:
                log.skipped += 1
        return log

    def data_root(self, dataset: str) -> Path | None:
        """The data root the run last trained from, if it still holds `dataset`: a resume that finds its
        data there trains on the same files, wherever it is started from."""
        started = [e for e in self.read_events(progress=False) if isinstance(e, RunStarted) and e.data_dir]
        return Path(started[-1].data_dir) if started and dataset_present(dataset, Path(started[-1].data_dir)) else None

    def epoch_events(self) -> list[EpochEnded]:
        return [e for e in self.read_events(progress=False) if isinstance(e, EpochEnded)]

    def set_status(self, status: str, pid: int | None = None) -> None:
        """Replace status.json atomically; on a disk too full for a second copy, in place (its own space is
        freed as it is rewritten), rather than leave a failed run saying `running`."""
        pid = pid if pid is not None else os.getpid()
        record = {"status": status, "pid": pid, "pid_started": process_start_time(pid),
                  "updated": dt.datetime.now().isoformat(timespec="seconds")}
        path = self.path / "status.json"
        try:
            write_json_atomic(path, record)
        except DiskFull:
            if not path.exists():
                raise
            with saving(path):
                path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")

    def _status_record(self) -> dict[str, Any]:
        """status.json as a table, or {} if it is missing, unreadable or not one: bytes that are not UTF-8
        or nesting too deep to parse are as unreadable as malformed JSON (see `read_json_table`)."""
        return read_json_table(self.path / "status.json")

    def recorded_pid(self) -> int:
        """The pid of the process that last wrote the status, or 0."""
        return _pid_of(self._status_record())

    def status(self) -> str:
        """The recorded status, with `crashed` for an active run whose process is gone."""
        record = self._status_record()
        status = str(record.get("status", "unknown"))
        if status in ACTIVE_STATUSES and not self._trainer_alive(record):
            return "crashed"
        return status

    def _trainer_alive(self, record: dict[str, Any]) -> bool:
        """Both the pid and its start time from one reading: another trainer may rewrite the file."""
        pid = _pid_of(record)
        if not process_alive(pid):
            return False
        started = record.get("pid_started")
        return started is None or process_start_time(pid) in (None, started)

    def remove_leftovers(self) -> None:
        """Delete the temporary files of checkpoint saves a killed trainer never finished
        (`.last.pt.x1y2.tmp`): the run's one trainer calls this as it starts, when none of its own can be
        under way. (The JSON files' temporaries are left alone: a dashboard may be writing one.)"""
        for leftover in self.path.glob(".*.pt.*.tmp"):
            leftover.unlink(missing_ok=True)

    def send(self, command: str) -> None:
        """Ask the run's trainer to `run`, `pause` or `stop`; it acts within about a tenth of a second."""
        write_json_atomic(self.control_path, {"command": command})


def _pid_of(record: dict[str, Any]) -> int:
    try:
        return int(record.get("pid") or 0)
    except (TypeError, ValueError):
        return 0


class RunLocked(OSError):
    """Another process trains the run: one trainer per run folder."""

    def __init__(self, run: RunDir, pid: int) -> None:
        holder = f"process {pid}" if pid else "another process"
        super().__init__(f"run {run.run_id} is being trained by {holder}; follow it with "
                         f"`mnist-tui attach {run.run_id}`")
        self.pid = pid


def hold_run(run: RunDir) -> int:
    """Lock the run for this process's trainer and return the lock's descriptor: the lock lasts until it is
    closed or the process ends, however it ends (the kernel lets go of a killed process's locks), so two
    trainers started together on one run can never both train it, as a check of status.json could not
    promise. A descriptor handed down by `spawn_trainer` (see TRAINER_LOCK_ENV) is taken over instead.

    Raises:
        RunLocked: another process holds the run, naming it.
        OSError: the lock file cannot be made (a read-only or full folder).
    """
    path = run.path / "trainer.lock"
    inherited = _inherited_lock(path)
    if inherited is not None:
        descriptor = inherited
    else:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _pid_in(descriptor)
            os.close(descriptor)
            raise RunLocked(run, pid) from None
        except BaseException:
            os.close(descriptor)
            raise
    mine = f"{os.getpid()}\n".encode()
    os.pwrite(descriptor, mine, 0)
    os.ftruncate(descriptor, len(mine))
    return descriptor


PID_READ_TRIES = 50
"""Times (10 ms apart) a trainer that lost the race reads the winner's pid before it says "another process"."""
TRAINER_LOCK_ENV = "MNIST_TUI_TRAINER_LOCK"
"""The descriptor of a run's lock, held, that a process starting a trainer hands down to it: the run is
never unlocked between the two."""


def _inherited_lock(path: Path) -> int | None:
    """The lock descriptor this process was handed for `path`, if it was handed one and it is that file's."""
    value = os.environ.pop(TRAINER_LOCK_ENV, "")
    try:
        descriptor = int(value)
        held, there = os.fstat(descriptor), os.stat(path)
    except (ValueError, OSError):
        return None
    if (held.st_dev, held.st_ino) != (there.st_dev, there.st_ino):
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)  # already held through it: a no-op
    except OSError:
        return None
    return descriptor


def _pid_in(descriptor: int) -> int:
    """The pid the lock's holder wrote, or 0; it writes it just after it locks, so an empty, half-written
    or stale file (the pid of an earlier holder, now gone) is read again for a moment: a trainer started at
    the same instant is the usual loser."""
    for _ in range(PID_READ_TRIES):
        try:
            pid = int(os.pread(descriptor, 32, 0).decode())
        except (OSError, ValueError):
            pid = 0
        if process_alive(pid):
            return pid
        time.sleep(0.01)
    return 0


def new_run_id(config: TrainConfig) -> str:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{config.model}-{secrets.token_hex(2)}"


def create_run(runs_root: Path, config: TrainConfig) -> RunDir:
    """A fresh run folder holding the config, ready for a trainer."""
    runs_root.mkdir(parents=True, exist_ok=True)
    while True:
        run = RunDir(runs_root / new_run_id(config))
        try:
            run.path.mkdir()
            break
        except FileExistsError:
            continue
    try:
        write_json_atomic(run.path / "config.json", config.to_dict())
        run.send("run")
        run.set_status("starting")
    except BaseException:  # a full disk, say: no empty run folder is left for every try
        shutil.rmtree(run.path, ignore_errors=True)
        raise
    return run


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    path: Path
    status: str
    model: str
    dataset: str
    epochs_done: int
    epochs: int
    best_val_accuracy: float | None
    duration: float | None
    message: str = ""
    val_accuracies: list[float] = field(default_factory=list)
    """Validation accuracy of each epoch, for comparing runs' curves."""
    skipped_lines: int = 0
    """Lines of its event log that are not valid events (progress reports not counted: not read)."""
    started: float | None = None
    """When it first began training (Unix time, from its log's first `run_started`); None before that."""
    train_losses: list[float] = field(default_factory=list)
    """Training loss of each epoch, for comparing runs' loss curves."""
    val_losses: list[float] = field(default_factory=list)
    """Validation loss of each epoch."""

    @property
    def skipped_note(self) -> str:
        """What the CLI and the Runs screen say of its damaged log lines, or ""."""
        return skipped_note(self.skipped_lines)

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "path": str(self.path), "status": self.status, "model": self.model,
                "dataset": self.dataset, "epochs_done": self.epochs_done, "epochs": self.epochs,
                "best_val_accuracy": self.best_val_accuracy, "duration": self.duration, "message": self.message,
                "val_accuracies": self.val_accuracies, "skipped_lines": self.skipped_lines, "started": self.started,
                "train_losses": [_json_number(v) for v in self.train_losses],
                "val_losses": [_json_number(v) for v in self.val_losses]}


def _json_number(value: float) -> float | None:
    """A loss as JSON can hold it: a diverged run's NaN or infinity is null, where `json.dumps` would write
    `NaN`, which no JSON reader takes."""
    return value if math.isfinite(value) else None


def skipped_note(count: int) -> str:
    """`2 unreadable lines skipped`, said the same by every front-end; "" for none."""
    return f"{count} unreadable line{'s' if count != 1 else ''} skipped" if count else ""


def summarize(run: RunDir) -> RunSummary:
    config = run.config()
    status = run.status()
    log = run.read_log(progress=False, complete=status not in ACTIVE_STATUSES)
    events = log.events
    epochs = [e for e in events if isinstance(e, EpochEnded)]
    # A resumed run's log holds one session after another; the last one that began training counts. (A
    # resume that failed before it began, say for want of data, leaves the run's time as it was.)
    started = next((e for e in reversed(events) if isinstance(e, RunStarted)), None)
    session = events[events.index(started):] if started is not None else events
    finished = next((e for e in reversed(session) if isinstance(e, RunFinished | RunFailed)), None)
    trained = next((e for e in reversed(session) if isinstance(e, RunFinished)), None)
    if trained is not None and status not in ACTIVE_STATUSES:
        duration: float | None = trained.duration
    elif started is None:
        duration = None
    else:  # still training: until now; otherwise until its last event
        last = time.time() if status in ACTIVE_STATUSES else run.events_path.stat().st_mtime
        duration = started.elapsed_before + last - started.time
    best = max((e.val_accuracy for e in epochs), default=None)
    message = finished.message if isinstance(finished, RunFailed) else ""
    first = next((e for e in events if isinstance(e, RunStarted) and e.time), None)  # 0: a log from before `time`
    return RunSummary(run.run_id, run.path, status, config.model, config.dataset,
                      epochs[-1].epoch if epochs else 0, config.epochs, best, duration, message,
                      [e.val_accuracy for e in epochs], log.skipped, first.time if first else None,
                      [e.train_loss for e in epochs], [e.val_loss for e in epochs])


def untold_ending(run: RunDir, status: str) -> RunFinished:
    """The end of a run whose status.json says it finished (`completed` or `stopped`) while its log does not
    (the last line cut short or damaged), rebuilt from the log's epochs. One rule for every front-end:
    status.json says how a run ended, as `runs` lists it; the log tells the story up to there."""
    epochs = run.epoch_events()
    best = max(epochs, key=lambda e: e.val_accuracy, default=None)
    return RunFinished(status, str(run.path), epochs[-1].epoch if epochs else 0, best.epoch if best else 0,
                       best.val_accuracy if best else None, epochs[-1].val_accuracy if epochs else None,
                       [e.epoch_seconds for e in epochs], summarize(run).duration or 0.0)


def iter_runs(runs_root: Path) -> Iterator[RunDir]:
    """Run folders (those with a config.json), newest first."""
    if not runs_root.is_dir():
        return
    for path in sorted(runs_root.iterdir(), reverse=True):
        if (path / "config.json").is_file():
            yield RunDir(path)


def latest_best(runs_root: Path) -> Path | None:
    """The best.pt of the newest run that has saved one: a run still in its first epoch has none yet."""
    return next((run.path / "best.pt" for run in iter_runs(runs_root) if (run.path / "best.pt").is_file()), None)


@dataclass(frozen=True)
class LiveRun:
    """A run whose trainer is alive, and what it is doing in words (training, paused, starting), read
    together so that a message never pairs one run with another moment's status."""

    run: RunDir
    activity: str


def find_live_run(runs_root: Path) -> LiveRun | None:
    """The newest run whose trainer is alive, whoever started it: one run trains at a time."""
    for run in iter_runs(runs_root):
        status = run.status()
        if status in ACTIVE_STATUSES:
            return LiveRun(run, "training" if status == "running" else status)
    return None


def list_runs(runs_root: Path) -> list[RunSummary]:
    """Every run, newest first; one whose files cannot be read is listed as `unreadable`, with why."""
    summaries = []
    for run in iter_runs(runs_root):
        try:
            summaries.append(summarize(run))
        except (OSError, ValueError, KeyError, TypeError) as error:
            why = str(error) if isinstance(error, ConfigError) else f"{type(error).__name__}: {error}"
            summaries.append(RunSummary(run.run_id, run.path, "unreadable", "-", "-", 0, 0, None, None, why))
    return summaries
