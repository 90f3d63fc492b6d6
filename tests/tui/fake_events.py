"""A deterministic run, as a trainer reports it, for tests and snapshots of the training panel."""

from __future__ import annotations

from mnist_tui.config import TrainConfig
from mnist_tui.events import BatchProgress, CheckpointSaved, EpochEnded, Event, RunFinished, RunStarted


def run_events(run_dir: str = "runs/demo", epochs: int = 2, steps: int = 10) -> list[Event]:
    """A deterministic run (two epochs unless told), as a trainer would report it."""
    config = TrainConfig(epochs=epochs).to_dict()  # the tutorial's settings, complete as a trainer logs them
    events: list[Event] = [RunStarted("demo", run_dir, config, "cpu", "CPU (2 threads)", 109386, 60000, 10000,
                                      "test", steps, 0, 0.0)]
    accuracies = [0.9259, 0.9431] + [0.9431 + 0.001 * n for n in range(1, epochs - 1)]
    for epoch in range(1, epochs + 1):
        for step in range(1, steps + 1):
            loss = 2.3 / (1 + (epoch - 1) * steps + step)
            events.append(BatchProgress(epoch, step, steps, loss, 1 - loss / 3, 50000.0, 0.001, step * 0.05))
        train_accuracy = min(0.85 + 0.05 * epoch, 0.95 + 0.001 * (epoch - 2))
        events.append(EpochEnded(epoch, epochs, 0.5 / epoch, train_accuracy, 0.25 / epoch, accuracies[epoch - 1],
                                 0.001, 1.2, 50000.0, True))
        events.append(CheckpointSaved(epoch, "last", f"{run_dir}/last.pt"))
        events.append(CheckpointSaved(epoch, "best", f"{run_dir}/best.pt"))
    events.append(RunFinished("completed", run_dir, epochs, epochs, accuracies[-1], accuracies[-1], [1.2] * epochs,
                              2.5))
    return events
