"""The settings pane: every TrainConfig field as a control, checked as you type by the CLI's validator."""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Button, Checkbox, Footer, Input, Label, Select, Static

from mnist_tui import telemetry
from mnist_tui.config import (
    CHOICES,
    FIELD_TYPES,
    PRESETS,
    ConfigError,
    TrainConfig,
    check_value,
    coerce_value,
    field_help,
    load_config,
    save_config,
)
from mnist_tui.data import dataset_present, raw_folder
from mnist_tui.reporting import format_memory, short_gpu_name
from mnist_tui.state import remembered_settings
from mnist_tui.tui.markup import escape
from mnist_tui.tui.messages import StartRun
from mnist_tui.tui.paths import expand_path
from mnist_tui.tui.widgets.tabs import ScreenTabs

BASE_DEVICES = ("auto", "cpu", "cuda", "mps")
GPU_REFRESH_SECONDS = 2.0
"""How often the device list's free memory and utilisation are read again while the pane is shown."""


class TickBox(Checkbox):
    """A checkbox ticked with a character as well as a colour: under NO_COLOR, colour alone shows nothing."""

    def render(self) -> Content:
        self.BUTTON_INNER = "X" if self.value else " "
        return super().render()


def field_error(name: str, raw: Any) -> str | None:
    """The message for a field's raw value, from the same coercion and validator the CLI uses."""
    try:
        return check_value(name, coerce_value(name, raw))
    except ConfigError as error:
        return error.errors[name]


SIDE_HELP = {
    "settings-file": "[b]settings file[/b]: where ctrl+s saves the form and ctrl+o loads it from; "
                     "TOML or JSON, by its suffix.",
    "save": "[b]Save[/b] (Enter, or ctrl+s anywhere): write the form to the settings file.",
    "load": "[b]Load[/b] (Enter, or ctrl+o anywhere): fill the form from the settings file.",
    "start": "[b]Start training[/b] (Enter, or F5 anywhere): start a run with these settings.",
    "preset": "[b]preset[/b]: fill the form from a named starting point, as [b]train --preset NAME[/b] does: "
              + ", ".join(PRESETS) + " (ctrl+t: tutorial, ctrl+n: cnn).",
}
"""What the side panel's controls do, shown when one has the focus, as each field's help is."""


class SettingsScreen(Screen[None]):
    """Set up a run. F5 starts it; presets, save and load are a key away."""

    BINDINGS = [
        Binding("f5", "start", "Start", tooltip="training with these settings"),
        Binding("ctrl+t", "preset('tutorial')", "Tutorial", tooltip="preset: the MLP, as the tutorial trains it"),
        Binding("ctrl+n", "preset('cnn')", "CNN", tooltip="preset: the small convnet, 3 epochs to 99.4%"),
        Binding("ctrl+s", "save", "Save", tooltip="the settings to the file named in the side panel"),
        Binding("ctrl+o", "load", "Load", tooltip="the settings from the file named in the side panel"),
    ]

    def __init__(self, data_dir: Path, download: bool) -> None:
        super().__init__()
        self.data_dir = data_dir
        self.download = download
        self.devices: list[str] = list(BASE_DEVICES)
        self.device_labels: dict[str, str] = {}
        """What the device list says of a device beside its name: a GPU's model, free memory, utilisation."""
        self.model = TrainConfig.model

    def compose(self) -> ComposeResult:
        yield ScreenTabs("settings")
        with Horizontal(id="settings-body"):
            with VerticalScroll(id="settings-form", can_focus=False):
                for f in fields(TrainConfig):
                    with Vertical(classes="field", id=f"field-{f.name}"):
                        with Horizontal(classes="field-row"):
                            yield Label(f.name.replace("_", " "), classes="field-label")
                            yield self._control(f.name, f.default)
                        yield Static("", classes="field-error")
            with Vertical(id="settings-side"):
                yield Select([(name, name) for name in PRESETS], prompt="Preset…", id="preset", compact=True)
                yield Static("", id="help-text")
                yield Static("Device: probing…", id="device-status")
                yield Static("", id="dataset-status")
                yield Label("Settings file (^s save, ^o load):")
                yield Input("mnist-tui.toml", id="settings-file", placeholder="path to a .toml or .json file",
                            compact=True)
                with Horizontal(classes="buttons"):
                    yield Button("Save", id="save", compact=True)
                    yield Button("Load", id="load", compact=True)
                yield Button("Start training (F5)", id="start", variant="success", compact=True)
        yield Footer(compact=True)

    def _control(self, name: str, default: Any) -> Select[str] | Checkbox | Input:
        control_id = f"input-{name}"
        if name in CHOICES:
            return Select([(choice, choice) for choice in CHOICES[name]], value=default, allow_blank=False,
                          id=control_id, compact=True)
        if name == "device":
            return Select(self._device_options(), value=default, allow_blank=False, id=control_id, compact=True)
        if FIELD_TYPES.get(name) is bool:
            return TickBox("shifts, rotations", value=default, id=control_id, compact=True)
        return Input(str(default), id=control_id, compact=True)

    def on_mount(self) -> None:
        remembered = remembered_settings()
        if remembered is not None:  # the last run started from here; ctrl+t gives the tutorial's
            self.load_values(remembered)
        self._show_dataset_status()
        # Importing torch holds the GIL for a second or two: start only once the first frame is out.
        self.set_timer(0.3, self._probe_devices)
        # The GPUs' figures, read again while the pane is shown, once the first reading found GPUs.
        self.gpu_timer = self.set_interval(GPU_REFRESH_SECONDS, self._read_gpus, pause=True)
        self.query_one("#input-model").focus()

    def on_screen_resume(self) -> None:
        if any(device.startswith("cuda:") for device in self.device_labels):
            self.gpu_timer.resume()
            self._read_gpus()

    def on_screen_suspend(self) -> None:
        self.gpu_timer.pause()

    # Values -----------------------------------------------------------------------------------------

    def raw_values(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for f in fields(TrainConfig):
            control = self.query_one(f"#input-{f.name}")
            values[f.name] = control.value  # type: ignore[attr-defined]
        return values

    def load_values(self, config: TrainConfig) -> None:
        """Fill the form from a config (a preset, a file, a run being cloned)."""
        self.model = config.model
        for name, value in config.to_dict().items():
            control = self.query_one(f"#input-{name}")
            if isinstance(control, Select):
                if name == "device" and value not in self.devices:
                    self._set_devices([*self.devices, value])
                control.value = value
            elif isinstance(control, Checkbox):
                control.value = bool(value)
            elif isinstance(control, Input):
                control.value = str(value)
        for f in fields(TrainConfig):
            self._mark(f.name, None)

    def _mark(self, name: str, message: str | None) -> None:
        field = self.query_one(f"#field-{name}")
        field.set_class(message is not None, "-invalid")
        field.query_one(".field-error", Static).update(escape(message or ""))

    # Validation -------------------------------------------------------------------------------------

    @on(Input.Changed, "#settings-form Input")
    def input_changed(self, event: Input.Changed) -> None:
        name = (event.input.id or "").removeprefix("input-")
        self._mark(name, field_error(name, event.value))
        if name in ("batch_size", "val_split"):
            self._check_batch_against_split()

    def _check_batch_against_split(self) -> None:
        """The one check across two fields, as each of them changes: a batch the split leaves room for."""
        values = {name: self.query_one(f"#input-{name}", Input).value for name in ("batch_size", "val_split")}
        if field_error("batch_size", values["batch_size"]):
            return  # its own error is marked
        if field_error("val_split", values["val_split"]):
            self._mark("batch_size", None)  # no split to check it against
            return
        try:
            TrainConfig.from_mapping(values)
        except ConfigError as error:
            self._mark("batch_size", error.errors.get("batch_size"))
        else:
            self._mark("batch_size", None)

    @on(Select.Changed, "#input-dataset")
    def dataset_changed(self) -> None:
        self._mark("dataset", None)  # whether it is there is checked again at start
        self._show_dataset_status()

    @on(Select.Changed, "#input-device")
    def device_changed(self) -> None:
        self._mark("device", None)  # whether it exists is checked again at start

    @on(Select.Changed, "#input-model")
    def model_changed(self, event: Select.Changed) -> None:
        """Move the fields still at the old model's defaults to the new model's, leaving edits alone."""
        new_model = str(event.value)
        old = TrainConfig.defaults_for(self.model).to_dict()
        new = TrainConfig.defaults_for(new_model).to_dict()
        self.model = new_model
        for name in (n for n in old if n != "model" and old[n] != new[n]):
            control = self.query_one(f"#input-{name}")
            if field_error(name, control.value) is None and coerce_value(name, control.value) == old[name]:  # type: ignore[attr-defined]
                control.value = new[name] if isinstance(control, Select | Checkbox) else str(new[name])  # type: ignore[attr-defined]

    @on(Input.Changed, "#settings-form Input")
    @on(Select.Changed, "#settings-form Select")
    @on(Checkbox.Changed, "#settings-form Checkbox")
    def show_help(self, event: Input.Changed | Select.Changed | Checkbox.Changed) -> None:
        if event.control.has_focus_within:  # not for the fields a preset or a settings file fills in
            self._help_for(event.control.id or "")

    def on_descendant_focus(self, event: Any) -> None:
        self._help_for(getattr(event.widget, "id", "") or "")
        # The field being edited is marked as a whole (its label stands out), not just its control.
        field = next((node for node in event.widget.ancestors_with_self if node.has_class("field")), None)
        for marked in self.query(".field.-focused"):
            if marked is not field:
                marked.remove_class("-focused")
        if field is not None:
            field.add_class("-focused")

    def _help_for(self, control_id: str) -> None:
        if control_id.startswith("input-"):
            name = control_id.removeprefix("input-")
            # The help is written for `--help` too: its `code` spans become bold here.
            text = re.sub(r"`([^`]+)`", r"[b]\1[/b]", escape(field_help(name)))
            self.query_one("#help-text", Static).update(f"[b]{name}[/b]: {text}")
        elif control_id in SIDE_HELP:
            self.query_one("#help-text", Static).update(SIDE_HELP[control_id])

    def current_config(self) -> TrainConfig | None:
        """The form as a validated config, or None after marking every invalid field."""
        try:
            return TrainConfig.from_mapping(self.raw_values())
        except ConfigError as error:
            for name, message in error.errors.items():
                self._mark(name, message)
            return None

    # Actions ----------------------------------------------------------------------------------------

    def action_start(self) -> None:
        from mnist_tui.batches import DeviceError, resolve_device

        config = self.current_config()
        if config is not None:
            try:  # a device this machine lacks is marked here, rather than failing a run
                resolve_device(config.device)
            except DeviceError as error:
                self._mark("device", str(error))
                config = None
        if config is not None and not self.download and not dataset_present(config.dataset, self.data_dir):
            # Likewise data that is not there and may not be downloaded.
            self._mark("dataset", f"{config.dataset} is missing from {raw_folder(config.dataset, self.data_dir)} "
                       "and downloads are off (see the side panel)")
            config = None
        if config is None:
            self.notify("Fix the marked settings before starting.", title="Cannot start", severity="error")
            invalid = self.query(".field.-invalid")
            if invalid:
                invalid.first().query_one("Input, Select, Checkbox").focus()
            return
        self.post_message(StartRun(config))

    def action_preset(self, name: str) -> None:
        preset = PRESETS[name]
        self.load_values(preset.config())
        with self.prevent(Select.Changed):
            self.query_one("#preset", Select).value = name
        self.notify(f"{preset.summary}.", title=f"Loaded the {name} preset")

    @on(Select.Changed, "#preset")
    def preset_chosen(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            self.action_preset(event.value)

    def _settings_path(self) -> Path:
        return expand_path(self.query_one("#settings-file", Input).value.strip() or "mnist-tui.toml")

    def action_save(self) -> None:
        config = self.current_config()
        if config is None:
            self.notify("Fix the marked settings before saving.", severity="error")
            return
        path = self._settings_path()
        try:
            save_config(config, path)
        except ConfigError as error:
            self.notify(escape(error), title="Cannot save settings", severity="error")
            return
        except OSError as error:
            self.notify(f"Cannot write {escape(path)}: {escape(error.strerror)}", severity="error")
            return
        self.notify(f"Saved settings to {escape(path)}")

    def action_load(self) -> None:
        path = self._settings_path()
        try:
            self.load_values(load_config(path))
        except ConfigError as error:
            self.notify(escape(error), title="Cannot load settings", severity="error")
            return
        self.notify(f"Loaded settings from {escape(path)}")

    @on(Button.Pressed, "#start")
    def start_pressed(self) -> None:
        self.action_start()

    @on(Button.Pressed, "#save")
    def save_pressed(self) -> None:
        self.action_save()

    @on(Button.Pressed, "#load")
    def load_pressed(self) -> None:
        self.action_load()

    # Environment ------------------------------------------------------------------------------------

    def _show_dataset_status(self) -> None:
        dataset = str(self.query_one("#input-dataset", Select).value)
        folder = raw_folder(dataset, self.data_dir)
        if dataset_present(dataset, self.data_dir):
            text = f"Dataset: [green]{dataset} present[/] in {escape(folder)}"
        elif self.download:
            text = f"Dataset: [yellow]{dataset} will be downloaded[/] into {escape(folder)} when the run starts"
        else:
            text = (f"Dataset: [red]{dataset} missing[/] from {escape(folder)} and downloads are off. Import it with "
                    f"`mnist-tui data import DIR --dataset {dataset}`")
        self.query_one("#dataset-status", Static).update(text)

    @work(thread=True, exclusive=True, group="probe")
    def _probe_devices(self) -> None:
        """List the GPUs through NVML (fast, torch-free), then import torch off the UI thread (it takes
        seconds) and describe what `auto` will pick."""
        from mnist_tui.batches import describe_device, resolve_device

        gpus = self._gpu_labels()
        self.app.call_from_thread(self._gpus_found, gpus)
        if gpus:
            found = f"{len(gpus)} GPU{'s' if len(gpus) > 1 else ''}"
            self.app.call_from_thread(self._show_device_status, f"Device: {found} found; checking what auto picks…")
        device = resolve_device("auto")
        extra = []
        import torch

        if torch.cuda.is_available():
            extra = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        text = f"Device: auto → [b]{device}[/b], {escape(describe_device(device))}"
        self.app.call_from_thread(self._devices_found, text, extra)

    def _show_device_status(self, text: str) -> None:
        with contextlib.suppress(NoMatches):  # the probe can outlive the screen's widgets when the app quits
            self.query_one("#device-status", Static).update(text)

    def _devices_found(self, text: str, extra: list[str]) -> None:
        with contextlib.suppress(NoMatches):  # as above
            self.query_one("#device-status", Static).update(text)
            self._set_devices([*self.devices, *(d for d in extra if d not in self.devices)])

    @staticmethod
    def _gpu_labels() -> dict[str, str]:
        """`cuda:N` (as CUDA numbers the GPUs for a trainer started from here) to what the list says of it.
        It blocks on NVML: call it off the UI thread."""
        gpus, _ = telemetry.read_gpus()
        labels = {}
        for ordinal, gpu in enumerate(telemetry.visible_gpus(gpus, os.environ.get("CUDA_VISIBLE_DEVICES"))):
            utilization = "" if gpu.utilization is None else f" · {gpu.utilization:.0f}%"
            labels[f"cuda:{ordinal}"] = (f"{short_gpu_name(gpu.name)} · {format_memory(gpu.memory_free)} free"
                                         f"{utilization}")
        return labels

    @work(thread=True, exclusive=True, group="gpus")
    def _read_gpus(self) -> None:
        self.app.call_from_thread(self._gpus_found, self._gpu_labels())

    def _gpus_found(self, labels: dict[str, str]) -> None:
        """The GPUs' new figures: the list follows, unless it is open (it would close under the user)."""
        try:
            expanded = self.query_one("#input-device", Select).expanded
        except NoMatches:  # the app is quitting: the screen's widgets are gone
            return
        if labels and self.is_current:
            self.gpu_timer.resume()
        if expanded:
            return
        if labels != self.device_labels:
            self.device_labels = labels
            self._set_devices([*self.devices, *(d for d in labels if d not in self.devices)], relabel=True)

    def _device_options(self) -> list[tuple[Text, str]]:
        """The device list: each name, and for a GPU its model, free memory and utilisation. Plain text:
        a GPU's name is not markup."""
        return [(Text(f"{d} · {self.device_labels[d]}" if d in self.device_labels else d), d) for d in self.devices]

    def _set_devices(self, devices: list[str], relabel: bool = False) -> None:
        """New choices, the same value: quietly, so a mark on the field (no CUDA here) stays."""
        if devices == self.devices and not relabel:
            return
        select = self.query_one("#input-device", Select)
        current = select.value
        self.devices = devices
        with self.prevent(Select.Changed):
            select.set_options(self._device_options())
            select.value = current

