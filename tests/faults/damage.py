"""Builders of damaged inputs for the fault tests: run folders as a finished trainer leaves them, then
broken one way each, the way a crash, a full disk, a hand edit or a hostile user leaves them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from conftest import dead_pid, small_config

from mnist_tui.events import BatchProgress, CheckpointSaved, EpochEnded, Event, RunFinished, RunStarted
from mnist_tui.runs import RunDir, create_run

ACCURACIES = (0.9259, 0.9431)


def run_events(run_dir: str, steps: int = 4) -> list[Event]:
    """What a trainer logs for a two-epoch run of `small_config`, whole and in order."""
    config = small_config(epochs=2).to_dict()
    events: list[Event] = [RunStarted(Path(run_dir).name, run_dir, config, "cpu", "CPU (1 thread)", 109386, 512,
                                      128, "test", steps, 0, 0.0)]
    for epoch, accuracy in enumerate(ACCURACIES, start=1):
        events += [BatchProgress(epoch, step, steps, 1 / step, 0.8, 5000.0, 0.01, 0.1 * step)
                   for step in range(1, steps + 1)]
        events.append(EpochEnded(epoch, 2, 0.5 / epoch, 0.9, 0.25 / epoch, accuracy, 0.01, 0.4, 5000.0, True))
        events += [CheckpointSaved(epoch, kind, f"{run_dir}/{kind}.pt") for kind in ("last", "best")]
    events.append(RunFinished("completed", run_dir, 2, 2, ACCURACIES[-1], ACCURACIES[-1], [0.4, 0.4], 1.0))
    return events

NOT_UTF8 = b'\xff\xfe{"status": "\x80"}'
"""Bytes that are no UTF-8 text (nor any JSON a parser accepts)."""
DEEP = b"[" * 100_000 + b"]" * 100_000
"""Valid JSON nested deeper than Python's parser goes: a RecursionError, not a ValueError."""
WRONG_TYPES = (
    # The two: a string where a number belongs, and a null epoch.
    '{"event":"epoch_end","epoch":2,"epochs":2,"train_loss":0.25,"train_accuracy":0.95,"val_loss":0.12,'
    '"val_accuracy":"high","lr":0.001,"epoch_seconds":1.2,"samples_per_second":50000.0,"is_best":true}',
    '{"event":"checkpoint_saved","epoch":null,"kind":"last","path":"last.pt","step":0}',
)
"""Event lines that parse as JSON but hold the wrong types."""
OUT_OF_RANGE = (
    '{"event":"epoch_end","epoch":2,"epochs":2,"train_loss":0.25,"train_accuracy":0.95,"val_loss":0.12,'
    '"val_accuracy":97.5,"lr":0.001,"epoch_seconds":1.2,"samples_per_second":50000.0,"is_best":true}',
    '{"event":"batch_progress","epoch":1,"step":3,"steps":0,"loss":0.5,"accuracy":0.8,'
    '"samples_per_second":1.0,"lr":0.001,"elapsed":0.1}',
    '{"event":"run_started","run_id":"x","run_dir":"x","config":{"epochs":"many"},"device":"cpu",'
    '"device_name":"CPU","parameters":1,"train_size":1,"val_size":1,"val_source":"test","steps_per_epoch":1}',
    '{"event":"run_finished","status":"exploded","run_dir":"x","epochs_done":1,"best_epoch":1,'
    '"best_val_accuracy":0.5,"final_val_accuracy":0.5}',
    '["not", "an", "object"]',
    '{"event":["unhashable"]}',
    '{"event":"batch_progress","epoch":1,"step":3,"steps":10,"loss":0.5,"accuracy":0.8,'
    '"samples_per_second":1e999999,"lr":0.001,"elapsed":0.1}',
)
"""Event lines of the right types whose values cannot be (or are not events at all)."""


def finished_run(runs_dir: Path, status: str = "completed", name: str = "") -> RunDir:
    """A run folder as a trainer that has exited leaves it: config, the whole event log, its status; named
    `name` rather than a generated id, if given."""
    run = create_run(runs_dir, small_config(epochs=2))
    if name:
        run = RunDir(run.path.rename(runs_dir / name))
    for event in run_events(str(run.path)):
        run.append_event(event)
    run.set_status(status, pid=dead_pid())
    return run


def insert_lines(run: RunDir, lines: list[str | bytes], after: int = 3) -> None:
    """Put raw lines into the event log after its first `after` lines, as a hand edit or a bad disk would."""
    kept = run.events_path.read_bytes().split(b"\n")
    raw = [line.encode() if isinstance(line, str) else line for line in lines]
    run.events_path.write_bytes(b"\n".join([*kept[:after], *raw, *kept[after:]]))


def cut_last_line(run: RunDir, keep: int = 20) -> None:
    """End the event log in the middle of its last line, as a trainer killed while writing leaves it."""
    data = run.events_path.read_bytes().rstrip(b"\n")
    start = data.rfind(b"\n") + 1
    run.events_path.write_bytes(data[:start + keep])


def symlink_loop(path: Path) -> None:
    """Replace `path` with a link to itself (`last.pt -> last.pt`)."""
    path.unlink(missing_ok=True)
    path.symlink_to(path.name)


DAMAGES: dict[str, Callable[[RunDir], object]] = {
    "status.json not UTF-8": lambda run: (run.path / "status.json").write_bytes(NOT_UTF8),
    "status.json nested too deep": lambda run: (run.path / "status.json").write_bytes(DEEP),
    "status.json a list": lambda run: (run.path / "status.json").write_text("[1, 2]"),
    "status.json empty": lambda run: (run.path / "status.json").write_bytes(b""),
    "control.json not UTF-8": lambda run: run.control_path.write_bytes(NOT_UTF8),
    "control.json nested too deep": lambda run: run.control_path.write_bytes(DEEP),
    "config.json not UTF-8": lambda run: (run.path / "config.json").write_bytes(NOT_UTF8),
    "config.json a list": lambda run: (run.path / "config.json").write_text("[]"),
    "events.jsonl not UTF-8": lambda run: insert_lines(run, [NOT_UTF8]),
    "events.jsonl nested too deep": lambda run: insert_lines(run, [DEEP]),
    "events.jsonl wrong types": lambda run: insert_lines(run, list(WRONG_TYPES)),
    "events.jsonl out of range": lambda run: insert_lines(run, list(OUT_OF_RANGE)),
    "events.jsonl cut short": cut_last_line,
    "events.jsonl missing": lambda run: run.events_path.unlink(),
    "trainer.log not UTF-8": lambda run: run.log_path.write_bytes(NOT_UTF8),
    "last.pt a symlink loop": lambda run: symlink_loop(run.path / "last.pt"),
    "status.json a symlink loop": lambda run: symlink_loop(run.path / "status.json"),
    "events.jsonl a symlink loop": lambda run: symlink_loop(run.events_path),
}
"""Each way a run folder is found damaged, by what it does to a finished run."""
