"""The `mnist-tui` command: parse arguments, then run the headless core or open the dashboard.

Exit codes: 0 success, 1 runtime failure (a failed run, an aborted one, missing data), 2 bad usage or input,
130 a run stopped before its last epoch (Ctrl+C, SIGTERM, the dashboard's stop).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from contextlib import ExitStack, suppress
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, NoReturn

from mnist_tui.config import (
    DATASETS,
    MODEL_DEFAULTS,
    PRESETS,
    SETTINGS,
    ConfigError,
    Setting,
    TrainConfig,
    check_device,
    read_config_values,
)
from mnist_tui.control import DiskFull
from mnist_tui.events import Event
from mnist_tui.runs import (
    ACTIVE_STATUSES,
    RESUMABLE_STATUSES,
    RunDir,
    RunLocked,
    create_run,
    hold_run,
    list_runs,
    resolve_runs_dir,
)

if TYPE_CHECKING:
    from mnist_tui.tui.app import MnistTuiApp

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """Bad usage or input: reported as one line on stderr with exit code 2."""


class Failure(Exception):
    """A runtime failure (missing data or device, an unwritable folder): one line on stderr, exit code 1."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one clear line rather than the usage block."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(usage_hint(message, self.prog))


def usage_hint(message: str, prog: str) -> str:
    return f"{message} (see `{prog} --help`)"


def _add_locations(parser: argparse.ArgumentParser, command: bool = True) -> None:
    """The options every command takes, before or after its name. A command's own parser must not set
    defaults, or argparse would overwrite the values given before the command with them."""
    parser.add_argument("--data-dir", default=argparse.SUPPRESS if command else None,
                        help="dataset root (default: $MNIST_TUI_DATA, else ./datasets)")
    parser.add_argument("--runs-dir", default=argparse.SUPPRESS if command else None,
                        help="where runs are kept (default: $MNIST_TUI_RUNS, else ./runs)")
    parser.add_argument("--no-download", action="store_true", default=argparse.SUPPRESS if command else False,
                        help="never download a missing dataset (also: MNIST_TUI_NO_DOWNLOAD=1)")


def add_setting_flag(train: argparse.ArgumentParser, name: str, spec: Setting, default: object) -> None:
    """`--batch-size N` and the like, from the setting's declaration: a bool is `--augment/--no-augment`,
    and the help says each model's own default. Values stay strings here: `TrainConfig.from_mapping`
    checks them with the one validator."""
    flag = "--" + name.replace("_", "-")
    help_text = spec.help.replace("%", "%%")
    if spec.kind is bool:
        train.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        return
    metavar = "{" + ",".join(spec.choices) + "}" if spec.choices else name.upper()
    defaults = f"{default}" + "".join(f"; {model}: {values[name]}"
                                      for model, values in MODEL_DEFAULTS.items() if name in values)
    train.add_argument(flag, dest=name, metavar=metavar, help=f"{help_text} (default: {defaults})")


def build_parser() -> Parser:
    parser = Parser(prog="mnist-tui", description="Train and inspect an MNIST classifier from a terminal. "
                    "With no command, opens the dashboard.")
    _add_locations(parser, command=False)
    commands = parser.add_subparsers(dest="command", parser_class=Parser, metavar="COMMAND")

    train = commands.add_parser("train", help="train headless with progress bars (or JSON lines)")
    _add_locations(train)
    train.add_argument("--preset", choices=PRESETS, metavar="NAME",
                       help="start from a preset; a settings file and flags override it. "
                       + "; ".join(f"{p.name}: {p.summary}" for p in PRESETS.values()).replace("%", "%%"))
    train.add_argument("--config", type=Path, help="settings file (TOML or JSON); flags override it")
    tutorial = TrainConfig()
    for name, spec in SETTINGS.items():
        add_setting_flag(train, name, spec, getattr(tutorial, name))
    train.add_argument("--json", action="store_true", help="print one JSON event per line instead of progress bars")
    train.add_argument("--resume", metavar="RUN", help="continue a stopped, failed or crashed run (an id or folder) "
                       "from its last.pt, in the same folder")
    train.add_argument("--detach", action="store_true", help="train in the background, print the run id and return")
    train.add_argument("--run-dir", type=Path, help=argparse.SUPPRESS)

    attach = commands.add_parser("attach", help="open the dashboard on a run (live or not) by id or folder")
    _add_locations(attach)
    attach.add_argument("run", help="run id or folder")

    evaluate = commands.add_parser("eval", help="evaluate a checkpoint: loss, accuracy, confusion matrix")
    _add_locations(evaluate)
    evaluate.add_argument("checkpoint", type=Path, help="a .pt file: an mnist-tui checkpoint or a state_dict")
    evaluate.add_argument("--split", choices=("test", "train"), default="test")
    evaluate.add_argument("--dataset", choices=DATASETS, help="evaluate on another dataset")
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--mistakes", type=int, help="how many misclassified samples to list, most confident "
                          "first (default: 10 in the table, all with --json)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")

    _add_use_commands(commands)

    runs = commands.add_parser("runs", help="list runs with status, model, epochs and best accuracy")
    _add_locations(runs)
    runs.add_argument("--json", action="store_true", help="print a JSON array")

    devices = commands.add_parser("devices", help="the GPUs (through NVML) and the CPU: memory, utilisation, "
                                  "temperature, power, processes")
    devices.add_argument("--json", action="store_true", help="print one JSON object: cpu, gpus, nvml")

    data = commands.add_parser("data", help="manage datasets")
    data_commands = data.add_subparsers(dest="data_command", parser_class=Parser, required=True,
                                        metavar="{import}")
    import_ = data_commands.add_parser("import", help="check a folder of IDX files and install it as a dataset")
    _add_locations(import_)
    import_.add_argument("source", type=Path, help="folder with the four IDX files, gzipped or not")
    import_.add_argument("--dataset", choices=DATASETS, default="mnist")
    import_.add_argument("--replace", action="store_true", help="overwrite different files already installed")
    return parser


def make_app(args: argparse.Namespace | None = None, attach: RunDir | None = None) -> MnistTuiApp:
    """The one factory for the dashboard, used by the CLI and the tests."""
    from mnist_tui.data import download_allowed, resolve_data_dir
    from mnist_tui.tui.app import MnistTuiApp

    args = args or build_parser().parse_args([])
    return MnistTuiApp(data_dir=resolve_data_dir(args.data_dir), runs_dir=resolve_runs_dir(args.runs_dir),
                       download=download_allowed(args.no_download), attach=attach)


def main(argv: Sequence[str] | None = None) -> int:
    # cuda:N numbers GPUs as nvidia-smi and NVML do (CUDA's own default puts the fastest first), so the
    # device list, telemetry and `--device cuda:N` agree; CUDA_VISIBLE_DEVICES still applies on top.
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    try:
        words = list(sys.argv[1:] if argv is None else argv)
        args, extra = build_parser().parse_known_args(words)
        if extra:  # argparse would send the user to the top-level help, even for a flag after the command
            after_command = args.command in words and words.index(extra[0]) > words.index(args.command)
            where = f"mnist-tui {args.command}" if after_command else "mnist-tui"
            raise UsageError(usage_hint(f"unrecognized arguments: {' '.join(extra)}", where))
        if args.command is None:
            return run_app(make_app(args))
        handler = {"train": command_train, "eval": command_eval, "runs": command_runs, "data": command_data,
                   "attach": command_attach, "devices": command_devices, "predict": command_predict,
                   "export": command_export}
        return handler[args.command](args)
    except (UsageError, ConfigError) as error:
        print(f"mnist-tui: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Failure as error:
        print(f"mnist-tui: error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:  # the output's reader went away (`| head`): nothing more to say to it
        from mnist_tui.reporting import quiet_stdout

        quiet_stdout()
        return EXIT_FAILURE
    except OSError as error:  # a full disk, a folder that cannot be read or written: say so, not a traceback
        print(f"mnist-tui: error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:  # Ctrl+C before a run began (a run handles its own), or in a listing
        print("mnist-tui: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def find_run(name: str, runs_dir: str | None) -> RunDir:
    """A run by folder path or by id under the runs folder; UsageError if there is none."""
    for candidate in (Path(name), resolve_runs_dir(runs_dir) / name):
        if (candidate / "config.json").is_file():
            return RunDir(candidate)
    raise UsageError(f"no run {name!r} (give a run id from `mnist-tui runs` or a run folder)")


def command_attach(args: argparse.Namespace) -> int:
    return run_app(make_app(args, attach=find_run(args.run, args.runs_dir)))


def run_app(app: MnistTuiApp) -> int:
    """Run the dashboard; its exit code is 1 if it crashed (Textual has printed the traceback)."""
    app.run()
    return app.return_code or 0


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The preset's settings, the settings file's values on top, then the flags, checked once, so the model
    named by the file or a flag brings its own defaults for whatever none of them sets."""
    values = read_config_values(args.config) if args.config else {}
    flags = {name: getattr(args, name) for name in SETTINGS if getattr(args, name) is not None}
    from_file = set(values) - set(flags)
    values.update(flags)
    try:
        return TrainConfig.from_mapping(values, base=PRESETS[args.preset].config() if args.preset else None)
    except ConfigError as error:  # say which of the values came from the file, and which file
        raise ConfigError({key: f"{args.config}: {message}" if key in from_file else message
                           for key, message in error.errors.items()}) from None


def command_train(args: argparse.Namespace) -> int:
    """Train, resume or detach; the run's lock, once taken, is let go as this returns (and by the kernel,
    however the process ends)."""
    with ExitStack() as held:
        return train_run(args, held)


def take_run(run: RunDir, held: ExitStack) -> int:
    """Lock `run` for this trainer until `held` closes (see runs.hold_run); a run another process trains is
    a usage error naming that process."""
    try:
        lock = hold_run(run)
    except RunLocked as error:
        raise UsageError(str(error)) from None
    except OSError as error:
        raise Failure(f"cannot lock run {run.run_id} for training: {error}") from None
    held.callback(os.close, lock)
    return lock


def train_run(args: argparse.Namespace, held: ExitStack) -> int:
    from mnist_tui.batches import DeviceError, resolve_device
    from mnist_tui.checkpoints import CheckpointError, ResumeState, load_resume_state
    from mnist_tui.control import FileControl
    from mnist_tui.data import DatasetError, download_allowed, require_dataset, resolve_data_dir
    from mnist_tui.engine import train
    from mnist_tui.events import RunFailed, RunFinished, RunPaused, RunPreparing, RunResumed, dumps
    from mnist_tui.reporting import ConsoleReporter, quiet_stdout
    from mnist_tui.session import spawn_trainer

    resume: ResumeState | None = None
    data_root, download = resolve_data_dir(args.data_dir), download_allowed(args.no_download)
    if args.resume is not None:
        run = find_run(args.resume, args.runs_dir)
        lock = take_run(run, held)  # before anything is read: the answers hold while it is held
        status = run.status()
        if status in ACTIVE_STATUSES and run.recorded_pid() != os.getpid():
            raise UsageError(f"run {run.run_id} is still {status}; attach to it with `mnist-tui attach`")
        if status == "completed":
            raise UsageError(f"run {run.run_id} completed; clone its settings into a new run instead")
        if status not in (*RESUMABLE_STATUSES, *ACTIVE_STATUSES):
            raise UsageError(f"run {run.run_id} has no readable status.json, so it might still be training; "
                             "only a stopped, failed or crashed run can be resumed")
        if args.preset or args.config or any(getattr(args, name) is not None for name in SETTINGS):
            raise UsageError("--resume continues a run with its own settings; it takes no settings flags")
        if not os.path.lexists(run.path / "last.pt"):  # a link that leads nowhere is refused below, saying so
            raise UsageError(f"run {run.run_id} ended before it saved a checkpoint (last.pt comes at each epoch's "
                             "end and on a stop), so there is nothing to resume; start a new run instead")
        config = run_config(run)
        try:
            resume = load_resume_state(run.path / "last.pt", config)
        except CheckpointError as error:
            raise UsageError(f"cannot resume {run.run_id}: {error}") from None
        if not args.data_dir:  # the data it trained on, if that is still where it was
            data_root = run.data_root(config.dataset) or data_root
        run.send("run")  # the stop that ended it must not end the continuation
    elif args.run_dir is not None:
        run = RunDir(args.run_dir)
        lock = take_run(run, held)
        config = run_config(run)
    else:
        config = config_from_args(args)
        try:  # before the run folder exists: a device this machine lacks is a usage error, not a failed run
            resolve_device(config.device)
        except DeviceError as error:
            raise UsageError(str(error)) from None
        try:  # as the dashboard's Start does: no run folder for a run that cannot begin
            require_dataset(config.dataset, data_root, download)
        except DatasetError as error:
            raise UsageError(str(error)) from None
        try:
            run = create_run(resolve_runs_dir(args.runs_dir), config)
        except OSError as error:
            raise Failure(f"cannot create a run folder: {error}") from None
        lock = take_run(run, held)
    if args.detach:
        process = spawn_trainer(run, data_root, download, resume=resume is not None, lock=lock)
        print(run.run_id)
        print(f"training in the background (pid {process.pid}); follow it with `mnist-tui attach {run.run_id}`, "
              "list runs with `mnist-tui runs`", file=sys.stderr)
        return 0
    control = FileControl(run.control_path)

    def request_stop(signum: int, frame: FrameType | None) -> None:
        if control.stopping:
            raise KeyboardInterrupt
        control.stop()

    def show(event: Event) -> None:
        try:
            if reporter is None:
                print(dumps(event), flush=True)
            else:
                reporter.show(event)
        except BrokenPipeError:  # whoever read the output went away (`| head`); the run goes on
            quiet_stdout()  # (the rich reporter's console does the same itself)

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    reporter = None if args.json else ConsoleReporter(config)
    run.set_status("running")
    outcome: RunFinished | RunFailed | None = None
    try:
        run.remove_leftovers()
        def preparing(stage: str) -> None:
            event = RunPreparing(stage)
            run.append_event(event)
            show(event)

        for event in train(config, run.path, data_root, download=download, control=control, resume=resume,
                           on_stage=preparing):
            run.append_event(event)
            if isinstance(event, RunPaused | RunResumed):
                run.set_status("paused" if isinstance(event, RunPaused) else "running")
            if isinstance(event, RunFinished | RunFailed):
                outcome = event
            show(event)
    except DiskFull as error:  # its log or status could not be written: the run cannot go on, and says why
        outcome = RunFailed(str(error), str(run.path))
        log_if_room(run, outcome)
        show(outcome)
    except (Exception, KeyboardInterrupt) as error:
        message = "interrupted" if isinstance(error, KeyboardInterrupt) else f"{type(error).__name__}: {error}"
        outcome = RunFailed(f"trainer crashed: {message}", str(run.path))
        log_if_room(run, outcome)
        if not isinstance(error, KeyboardInterrupt):
            traceback.print_exc()
        show(outcome)
    finally:
        if reporter is not None:
            reporter.close()
        run.set_status(outcome.status if isinstance(outcome, RunFinished) else "failed")
        # The run has ended and its status says how: a Ctrl+C from here on only interrupts the exit.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if isinstance(outcome, RunFinished):
        # Stopped before its last epoch (Ctrl+C, SIGTERM, the dashboard): not done, so `train && eval` stops.
        return EXIT_INTERRUPTED if outcome.status == "stopped" else 0
    if isinstance(outcome, RunFailed):
        print(f"mnist-tui: run failed: {outcome.message}", file=sys.stderr)
    return EXIT_FAILURE


def log_if_room(run: RunDir, event: Event) -> None:
    """Log how a run ended, if the disk has room: when it has not, stderr (and the exit code) still say it."""
    with suppress(DiskFull):
        run.append_event(event)


def run_config(run: RunDir) -> TrainConfig:
    """A run's saved settings; UsageError, naming the file, if they are unreadable or invalid."""
    try:
        return run.config()
    except ConfigError as error:
        raise UsageError(str(error)) from None


def command_eval(args: argparse.Namespace) -> int:
    from mnist_tui.batches import DeviceError, resolve_device
    from mnist_tui.checkpoints import CheckpointError, load_checkpoint
    from mnist_tui.data import DatasetError, download_allowed, resolve_data_dir
    from mnist_tui.evaluation import evaluate
    from mnist_tui.reporting import print_evaluation

    args.device = args.device.strip().lower()  # as a settings field is read
    device_problem = check_device(args.device)
    if device_problem:
        raise UsageError(device_problem)
    try:  # a device this machine lacks is a usage error, as for train
        resolve_device(args.device)
    except DeviceError as error:
        raise UsageError(str(error)) from None
    if args.mistakes is not None and args.mistakes < 0:
        raise UsageError(f"--mistakes must be 0 or more, got {args.mistakes}")
    try:
        checkpoint = load_checkpoint(args.checkpoint)
    except CheckpointError as error:
        raise UsageError(str(error)) from None
    try:
        result = evaluate(checkpoint, args.split, resolve_data_dir(args.data_dir), download_allowed(args.no_download),
                          args.device, args.dataset)
    except (DatasetError, DeviceError) as error:
        raise Failure(str(error)) from None
    if args.json:
        print(json.dumps(result.to_json(args.mistakes)))
    else:
        print_evaluation(result, checkpoint, 10 if args.mistakes is None else args.mistakes)
    return 0


def command_runs(args: argparse.Namespace) -> int:
    from mnist_tui.reporting import print_runs

    summaries = list_runs(resolve_runs_dir(args.runs_dir))
    if args.json:
        print(json.dumps([s.to_json() for s in summaries]))
    else:
        print_runs(summaries)
    return 0


def command_devices(args: argparse.Namespace) -> int:
    """What each GPU and the CPU are doing; no driver is a normal answer (exit 0), said in `nvml`."""
    from mnist_tui.reporting import print_devices
    from mnist_tui.telemetry import sample, to_json

    snapshot = sample()
    if args.json:
        print(json.dumps(to_json(snapshot)))
    else:
        print_devices(snapshot, os.environ.get("CUDA_VISIBLE_DEVICES"))
    return 0


def command_data(args: argparse.Namespace) -> int:
    from mnist_tui.data import DatasetError, import_idx_folder, resolve_data_dir

    try:
        target = import_idx_folder(args.source, args.dataset, resolve_data_dir(args.data_dir), args.replace)
    except DatasetError as error:
        raise UsageError(str(error)) from None
    except OSError as error:
        raise Failure(f"cannot write the dataset: {error}") from None
    print(f"imported {args.dataset} into {target}")
    return 0


def _add_use_commands(commands: argparse._SubParsersAction[Parser]) -> None:
    """`predict` and `export`: using a trained model outside mnist-tui."""
    predict = commands.add_parser("predict", help="classify your own images (PNG, JPEG, BMP) with a checkpoint")
    _add_locations(predict)
    predict.add_argument("images", nargs="+", type=Path, metavar="IMAGE_OR_FOLDER",
                         help="image files, or folders whose PNG, JPEG and BMP files are all classified")
    predict.add_argument("--checkpoint", type=Path, help="a .pt file eval takes (default: the newest run's best.pt)")
    predict.add_argument("--json", action="store_true",
                         help='print one JSON object per image: {"path", "prediction", "probabilities"}')

    export = commands.add_parser("export", help="write a checkpoint as ONNX, TorchScript or an ExportedProgram, "
                                 "verified against it")
    _add_locations(export)
    export.add_argument("checkpoint", type=Path, help="a .pt file eval takes")
    export.add_argument("--format", choices=("onnx", "torchscript", "exported-program"), default="onnx",
                        help="default: onnx (needs the export extra: pip install 'mnist-tui[export]')")
    export.add_argument("-o", "--output", type=Path, help="the file to write (default: beside the checkpoint, "
                        "best.onnx, best.torchscript.pt or best.pt2)")


def default_checkpoint(args: argparse.Namespace) -> Path:
    """--checkpoint, else the best.pt of the newest run that has one; UsageError if there is none."""
    from mnist_tui.runs import latest_best

    if args.checkpoint is not None:
        return Path(args.checkpoint)
    runs_dir = resolve_runs_dir(args.runs_dir)
    found = latest_best(runs_dir)
    if found is None:
        raise UsageError(f"no run in {runs_dir} has a best.pt yet; train one, or pass --checkpoint FILE")
    return found


def command_predict(args: argparse.Namespace) -> int:
    """Classify images with MNIST's own preprocessing; a file that cannot be classified is one line on
    stderr, the others are still classified, and the exit code is then 2."""
    import torch

    from mnist_tui.checkpoints import CheckpointError, load_checkpoint
    from mnist_tui.data import DATASET_SPECS
    from mnist_tui.evaluation import classify
    from mnist_tui.images import IMAGE_SUFFIXES, ImageError, image_files, load_digit

    try:
        checkpoint = load_checkpoint(default_checkpoint(args))
    except CheckpointError as error:
        raise UsageError(str(error)) from None
    failures: list[str] = []
    paths: list[Path] = []
    for given in args.images:
        if given.is_dir():
            try:
                found = image_files(given)
            except OSError as error:
                failures.append(f"{given}: cannot list the folder ({error.strerror or error})")
                continue
            if not found:
                failures.append(f"{given}: no images in this folder ({', '.join(sorted(IMAGE_SUFFIXES))})")
            paths.extend(found)
        else:
            paths.append(given)
    digits: list[tuple[Path, torch.Tensor]] = []
    for path in paths:
        try:
            digits.append((path, load_digit(path)))
        except ImageError as error:
            failures.append(str(error))
    classes = DATASET_SPECS[checkpoint.config.dataset].classes
    model = checkpoint.build_model()
    probabilities = classify(model, torch.stack([d for _, d in digits]), checkpoint.mean, checkpoint.std) \
        if digits else torch.zeros(0, len(classes))
    for (path, _), row in zip(digits, probabilities.tolist(), strict=True):
        ranked = sorted(range(len(row)), key=row.__getitem__, reverse=True)
        if args.json:
            print(json.dumps({"path": str(path), "prediction": ranked[0], "probabilities": row}))
        else:
            top, second = ranked[0], ranked[1]
            print(f"{path}: {classes[top]} ({row[top]:.1%}), then {classes[second]} ({row[second]:.1%})")
    for failure in failures:
        print(f"mnist-tui: error: {failure}", file=sys.stderr)
    return EXIT_USAGE if failures else 0


def command_export(args: argparse.Namespace) -> int:
    """Export, then verify on the test set's first 1,000 images; where the test set is not available, on
    1,000 random images, which still proves the logits match but gives no accuracy."""
    import torch

    from mnist_tui.batches import load_split, prepare
    from mnist_tui.checkpoints import CheckpointError, load_checkpoint
    from mnist_tui.data import DATASET_SPECS, DatasetError, download_allowed, resolve_data_dir
    from mnist_tui.export import SUFFIXES, VERIFY_SAMPLES, ExportError, export, missing_onnx_modules

    if args.format == "onnx" and (missing := missing_onnx_modules()):
        raise Failure(f"--format onnx needs {', '.join(missing)}: pip install 'mnist-tui[export]'")
    try:
        checkpoint = load_checkpoint(args.checkpoint)
    except CheckpointError as error:
        raise UsageError(str(error)) from None
    target = args.output or args.checkpoint.with_name(args.checkpoint.stem + SUFFIXES[args.format])
    if target.exists() and target.resolve() == args.checkpoint.resolve():
        raise UsageError(f"{target} is the checkpoint itself; choose another -o")
    if target.is_dir() or not target.parent.is_dir():
        raise UsageError(f"{target}: {'a folder' if target.is_dir() else 'its folder does not exist'}; "
                         "-o names the file to write")
    dataset = checkpoint.config.dataset
    data_root = resolve_data_dir(args.data_dir)
    labels: torch.Tensor | None
    try:
        test = load_split(dataset, False, data_root, download_allowed(args.no_download))
        images, labels = prepare(test.images[:VERIFY_SAMPLES], 0.0, 1.0), test.labels[:VERIFY_SAMPLES]
        source = f"{dataset} test images"
    except DatasetError:
        images = torch.rand(VERIFY_SAMPLES, 1, 28, 28, generator=torch.Generator().manual_seed(0))
        labels, source = None, f"random images ({dataset}'s test set is not in {data_root}, so no accuracies)"
    try:
        result = export(checkpoint, args.format, target, images, labels, source)
    except ExportError as error:
        raise Failure(str(error)) from None
    print(f"wrote {target} ({args.format}, {target.stat().st_size / 1e6:.1f} MB): input image float32 "
          f"[N, 1, 28, 28] in [0, 1], output logits [N, {len(DATASET_SPECS[dataset].classes)}]")
    accuracies = "" if result.checkpoint_accuracy is None or result.exported_accuracy is None else (
        f"; accuracy {result.checkpoint_accuracy:.2%} (checkpoint), {result.exported_accuracy:.2%} (exported)")
    print(f"verified on {result.samples:,} {result.source}: largest logit difference "
          f"{result.largest_difference:.2g}{accuracies}")
    return 0


def entry() -> NoReturn:
    """The `mnist-tui` command: `main`, then out at once. After the dashboard, a worker thread may still be
    importing torch (which cannot be interrupted) and torch's own teardown takes its time: quitting took
    1.6-2.8 s. By then every file is written and closed, and a run trains in a process of its own."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with suppress(BrokenPipeError, ValueError):  # a reader gone, or a stream already closed
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
