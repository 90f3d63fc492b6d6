"""The async wrapper around a training run: start a trainer process, stream its events, steer it.

The trainer is `mnist-tui train --run-dir DIR`, the same engine and code path as headless training, in its
own process and session: a crash, a NaN or CUDA running out of memory ends the trainer, never the
dashboard, and closing the terminal does not stop training. The wrapper follows the run's event log and
steers through the run's control file, so it works the same for a run it started and one it attaches to.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import suppress
from pathlib import Path

from mnist_tui.config import TrainConfig
from mnist_tui.events import FINISHED_STATUSES, TERMINAL_EVENTS, Event, EventError, RunFailed, parse_line
from mnist_tui.runs import ACTIVE_STATUSES, TRAINER_LOCK_ENV, RunDir, create_run, hold_run, untold_ending

POLL_SECONDS = 0.1
WATCH_SECONDS = 1.0
"""How often a session watching an ended run checks whether it was resumed elsewhere."""


def spawn_trainer(run: RunDir, data_root: Path, download: bool, resume: bool = False,
                  lock: int | None = None) -> subprocess.Popen[bytes]:
    """Start `mnist-tui train` on a run folder (fresh, or resuming from its last.pt) in a new session, so
    closing the terminal never stops it; its stderr goes to trainer.log. The run's lock (`lock`, held by
    the caller, else taken here: RunLocked if another process has it) is handed down to the trainer, so
    no other can slip in between."""
    held = lock if lock is not None else hold_run(run)
    try:
        return _spawn(run, data_root, download, resume, held)
    finally:
        if lock is None:
            os.close(held)  # the trainer holds it now


def _spawn(run: RunDir, data_root: Path, download: bool, resume: bool, lock: int) -> subprocess.Popen[bytes]:
    where = ["--resume" if resume else "--run-dir", str(run.path.absolute())]
    command = [sys.executable, "-m", "mnist_tui", "train", *where, "--data-dir", str(data_root.absolute()), "--json"]
    if not download:
        command.append("--no-download")
    with open(run.log_path, "ab") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                                   start_new_session=True, pass_fds=(lock,),
                                   env={**os.environ, "PYTHONUNBUFFERED": "1", TRAINER_LOCK_ENV: str(lock)})
    run.set_status("starting", pid=process.pid)
    return process


class TrainingSession:
    """One run, seen from the dashboard: `events()` replays the log from the start, then follows it live."""

    def __init__(self, run: RunDir, process: subprocess.Popen[bytes] | None = None, log_offset: int = 0,
                 status_before: str | None = None) -> None:
        self.run = run
        self.process = process
        self.log_offset = log_offset
        """Where this trainer's events begin in the log: an end before it belongs to an earlier trainer."""
        self.status_before = status_before
        """A resumed run's status before its trainer was spawned: the run's again if the trainer refuses."""
        self.replaying = False
        """True while `events()` yields what the log held when following began: history, not news."""
        self.skipped_lines = 0
        """Lines of the log read so far that are not valid events, skipped (see `skipped_note`)."""

    @classmethod
    def start(cls, config: TrainConfig, runs_root: Path, data_root: Path, download: bool) -> TrainingSession:
        """Create the run folder and start its trainer, detached from this terminal."""
        run = create_run(runs_root, config)
        try:
            return cls(run, spawn_trainer(run, data_root, download))
        except OSError as error:  # the run must not go on looking as if it were starting
            run.append_event(RunFailed(f"could not start the trainer: {error}", str(run.path)))
            run.set_status("failed")
            raise

    @classmethod
    def continue_run(cls, run: RunDir, data_root: Path, download: bool) -> TrainingSession:
        """Continue a stopped, failed or crashed run from its last.pt; its log goes on where it ended. It
        trains on the data it trained on, if that is still where it was, else on `data_root`'s."""
        data_root = run.data_root(run.config().dataset) or data_root
        lock = hold_run(run)  # first: a run another process trains is not to be steered from here
        try:
            run.send("run")
            offset = run.events_path.stat().st_size if run.events_path.exists() else 0
            status = run.status()
            return cls(run, spawn_trainer(run, data_root, download, resume=True, lock=lock), log_offset=offset,
                       status_before=status)
        finally:
            os.close(lock)

    @classmethod
    def attach(cls, run: RunDir) -> TrainingSession:
        """Follow a run started elsewhere (another dashboard, `mnist-tui train`)."""
        return cls(run)

    def pause(self) -> None:
        self.run.send("pause")

    def resume(self) -> None:
        self.run.send("run")

    def stop(self) -> None:
        self.run.send("stop")

    def trainer_exit_code(self) -> int | None:
        """The trainer's exit code once it has ended, else None; -1 when it ended but the code is unknown."""
        if self.process is not None:
            return self.process.poll()
        return None if self.run.status() in ACTIVE_STATUSES else -1

    async def events(self, *, watch: bool = False) -> AsyncIterator[Event]:
        """Every event of the run in order (a resumed run's log holds several starts and ends), until the
        trainer is gone and the log read to its end. A trainer that died without a last word yields a
        RunFailed carrying the end of its log.

        With `watch` the stream does not end there: it waits for the run to train again, resumed from
        elsewhere (`mnist-tui train --resume`, another dashboard), and streams on."""
        offset = 0
        pending = b""
        ended = False
        first_poll = True
        gone_before = False  # the trainer had ended before following began: its silent death is history too
        while True:
            try:
                exit_code, chunk = await asyncio.to_thread(self._poll, offset)
            except OSError as error:  # not missing (that is a run not started yet) but unreadable
                yield RunFailed(f"cannot read the run's event log: {error}", str(self.run.path))
                return
            offset += len(chunk)
            if first_poll:
                gone_before = exit_code is not None
            self.replaying, first_poll = first_poll, False
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            if exit_code is not None and not chunk and pending:  # its trainer is gone: it stays cut short
                lines.append(pending)
                pending = b""
            for line in filter(bytes.strip, lines):  # an empty line is the end of one cut short before
                try:
                    event = parse_line(line)
                except EventError:
                    self.skipped_lines += 1
                    continue
                ended = isinstance(event, TERMINAL_EVENTS) and offset > self.log_offset
                yield event
            if exit_code is not None and not chunk:
                if not ended:
                    before = self.status_before if offset <= self.log_offset else None
                    if before is not None:
                        # It refused before its first word (say, an unreadable last.pt): the run is as it was.
                        await asyncio.to_thread(self.run.set_status, before, 0)
                    self.replaying = gone_before
                    yield await asyncio.to_thread(self._untold_end, exit_code, before is not None)
                self.status_before = None
                if not watch or not await self._until_it_goes_on(offset):
                    return
                # Whatever trainer wrote the status, the log from here on is its own.
                self.process, self.log_offset, ended, gone_before = None, offset, False, False
                continue
            await asyncio.sleep(POLL_SECONDS)

    async def _until_it_goes_on(self, offset: int) -> bool:
        """Wait until the run trains again or its log grows (a resume that failed at once still says why);
        False once it never can: completed, or its folder deleted."""
        while True:
            status = await asyncio.to_thread(self.run.status)
            if status in ACTIVE_STATUSES or await asyncio.to_thread(self._log_size) > offset:
                return True
            if status == "completed" or not self.run.path.is_dir():
                return False
            await asyncio.sleep(WATCH_SECONDS)

    def _log_size(self) -> int:
        try:
            return self.run.events_path.stat().st_size
        except FileNotFoundError:
            return 0

    def _poll(self, offset: int) -> tuple[int | None, bytes]:
        """The trainer's exit code, then the log from `offset`: in that order, so the chunk read after an
        exit holds the trainer's last words. One trip off the event loop for both, ten times a second."""
        return self.trainer_exit_code(), self._read_from(offset)

    def _read_from(self, offset: int) -> bytes:
        """The log from `offset`; nothing while it does not exist yet, OSError if it cannot be read."""
        try:
            with open(self.run.events_path, "rb") as stream:
                stream.seek(offset)
                return stream.read()
        except FileNotFoundError:
            return b""

    def _untold_end(self, exit_code: int, refused: bool) -> Event:
        """How a run ended whose log does not say: as status.json says (see runs.untold_ending), where that
        is a finish and the log's last line was cut short; otherwise the trainer died without a word."""
        status = self.run.status()
        if not refused and status in FINISHED_STATUSES:
            with suppress(OSError, ValueError):  # a log or config that cannot be read: the failure it is
                return untold_ending(self.run, status)
        return RunFailed(self._crash_message(exit_code), str(self.run.path), crashed=status == "crashed")

    def _crash_message(self, exit_code: int) -> str:
        try:
            tail = [line for line in self.run.log_path.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            tail = []
        reason = tail[-1] if tail else "no output"
        how = f"was killed by signal {-exit_code}" if exit_code < -1 else f"exited with code {exit_code}"
        if exit_code == -1:
            how = "is gone"
        return f"the trainer {how} without finishing: {reason} (log: {self.run.log_path})"
