"""The settings pane: every TrainConfig field as the control its Setting asks for, with its label and help,
checked as you type by the CLI's validator."""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Sequence
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
from textual.worker import get_current_worker

from mnist_tui import telemetry
from mnist_tui.config import (
    PRESETS,
    SETTINGS,
    ConfigError,
    Setting,
    TrainConfig,
    check_value,
    coerce_value,
    load_config,
    save_config,
)
from mnist_tui.data import dataset_present, raw_folder
from mnist_tui.reporting import short_gpu_name
from mnist_tui.runview import format_memory
from mnist_tui.state import remembered_settings
from mnist_tui.telemetry import GpuSample, pick_freest
from mnist_tui.threads import usable_cores
from mnist_tui.tui.markup import escape
from mnist_tui.tui.messages import StartRun
from mnist_tui.tui.paths import expand_path
from mnist_tui.tui.widgets.tabs import ScreenTabs

BASE_DEVICES = ("auto", "cpu", "cuda", "mps")
DEVICES_ANY_MACHINE_HAS = ("auto", "cpu")
"""Devices a run may start on without asking torch whether this machine has them: `auto` falls back to cpu."""
GPU_REFRESH_SECONDS = 2.0
"""How often the device list's free memory and utilisation are read again while the pane is shown."""


FormControl = Select[str] | Checkbox | Input
"""What the form shows for a setting: a list of its choices, a checkbox for a bool, a text box otherwise."""


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


def setting_help(name: str, spec: Setting) -> str:
    """The help line for a setting, as markup: its label, the name files and flags use when that differs, the
    help written for `--help` too (its `code` spans in bold here) and what values it takes."""
    text = re.sub(r"`([^`]+)`", r"[b]\1[/b]", escape(spec.help))
    key = "" if spec.label == name else f" ({name})"
    bounds = f" [dim]{spec.value_noun().capitalize()} {spec.bounds()}.[/dim]" if spec.bounds() else ""
    return f"[b]{escape(spec.label)}[/b]{key}: {text}{bounds}"


def gpu_label(gpu: GpuSample) -> str:
    """What the device list says of a GPU beside its name: its model, free memory and utilisation."""
    utilization = "" if gpu.utilization is None else f" · {gpu.utilization:.0f}%"
    return f"{short_gpu_name(gpu.name)} · {format_memory(gpu.memory_free)} free{utilization}"


def auto_device_guess(gpus: Sequence[GpuSample] | None, cores: int, platform: str = sys.platform) -> str:
    """What `auto` will pick, as far as NVML (`gpus`, None before it answers) and the core count say:
    the line shown at once, while torch, which has the last word, loads (seconds)."""
    if gpus is None:
        return f"Device: {cores} CPU cores; looking for GPUs…"
    if gpus:
        ordinal = pick_freest([gpu.memory_free for gpu in gpus])
        return f"Device: auto → [b]cuda:{ordinal}[/b], {escape(gpu_label(gpus[ordinal]))}"
    if platform == "darwin":
        return f"Device: auto → [b]mps[/b] if this Mac has it, else cpu ({cores} cores)"
    return f"Device: auto → [b]cpu[/b] ({cores} cores)"


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
        self.torch_answered = False
        """Whether the device line is torch's word on `auto`, rather than the guess from NVML and the cores."""

    def compose(self) -> ComposeResult:
        yield ScreenTabs("settings")
        with Horizontal(id="settings-body"):
            with VerticalScroll(id="settings-form", can_focus=False):
                defaults = TrainConfig()
                for name, spec in SETTINGS.items():
                    with Vertical(classes="field", id=f"field-{name}"):
                        with Horizontal(classes="field-row"):
                            yield Label(spec.label, classes="field-label")
                            yield self._make_control(name, spec, getattr(defaults, name))
                        yield Static("", classes="field-error")
            with Vertical(id="settings-side"):
                yield Select([(name, name) for name in PRESETS], prompt="Preset…", id="preset", compact=True)
                yield Static("", id="help-text")
                yield Static(auto_device_guess(None, usable_cores()), id="device-status")
                yield Static("", id="dataset-status")
                yield Label("Settings file (^s save, ^o load):")
                yield Input("mnist-tui.toml", id="settings-file", placeholder="path to a .toml or .json file",
                            compact=True)
                with Horizontal(classes="buttons"):
                    yield Button("Save", id="save", compact=True)
                    yield Button("Load", id="load", compact=True)
                yield Button("Start training (F5)", id="start", variant="success", compact=True)
        yield Footer(compact=True)

    def _make_control(self, name: str, spec: Setting, default: Any) -> FormControl:
        """The control its Setting asks for; the device's list is this machine's devices."""
        control_id = f"input-{name}"
        if spec.choices:
            return Select([(choice, choice) for choice in spec.choices], value=default, allow_blank=False,
                          id=control_id, compact=True)
        if name == "device":
            return Select(self._device_options(), value=default, allow_blank=False, id=control_id, compact=True)
        if spec.kind is bool:
            return TickBox(spec.caption, value=default, id=control_id, compact=True)
        return Input(str(default), id=control_id, compact=True)

    def control(self, name: str) -> FormControl:
        """A setting's control in the form."""
        control = self.query_one(f"#input-{name}")
        if not isinstance(control, Select | Checkbox | Input):
            raise TypeError(f"#input-{name} is a {type(control).__name__}, not a form control")
        return control

    def on_mount(self) -> None:
        remembered = remembered_settings()
        if remembered is not None:  # the last run started from here; ctrl+t gives the tutorial's
            self.load_values(remembered)
        self._show_dataset_status()
        # The GPUs' figures, read again while the pane is shown, once the first reading found GPUs.
        self.gpu_timer = self.set_interval(GPU_REFRESH_SECONDS, self._read_gpus, pause=True)
        # NVML answers in milliseconds, off the UI thread: the GPUs and the guess at `auto` come at once.
        self._read_gpus()
        # Importing torch holds the GIL for a second or two: start only once the first frame is out.
        self.set_timer(0.3, self._probe_torch)
        self.query_one("#input-model").focus()

    def on_screen_resume(self) -> None:
        if any(device.startswith("cuda:") for device in self.device_labels):
            self.gpu_timer.resume()
            self._read_gpus()

    def on_screen_suspend(self) -> None:
        self.gpu_timer.pause()

    # Values -----------------------------------------------------------------------------------------

    def raw_values(self) -> dict[str, Any]:
        return {name: self.control(name).value for name in SETTINGS}

    def set_value(self, name: str, value: Any) -> None:
        """Show a typed value in a setting's control."""
        control = self.control(name)
        if isinstance(control, Select):
            if name == "device" and value not in self.devices:
                self._set_devices([*self.devices, value])
            control.value = value
        elif isinstance(control, Checkbox):
            control.value = bool(value)
        else:
            control.value = str(value)

    def load_values(self, config: TrainConfig) -> None:
        """Fill the form from a config (a preset, a file, a run being cloned)."""
        self.model = config.model
        for name, value in config.to_dict().items():
            self.set_value(name, value)
        for name in SETTINGS:
            self._mark(name, None)

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
            shown = self.control(name).value
            if field_error(name, shown) is None and coerce_value(name, shown) == old[name]:
                self.set_value(name, new[name])

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
        name = control_id.removeprefix("input-")
        if control_id.startswith("input-") and name in SETTINGS:
            self.query_one("#help-text", Static).update(setting_help(name, SETTINGS[name]))
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
        config = self.current_config()
        if config is None:
            self._refuse_start()
            return
        data_found = self.download or dataset_present(config.dataset, self.data_dir)
        if not data_found:  # marked here, rather than failing a run
            self._mark("dataset", f"{config.dataset} is missing from {raw_folder(config.dataset, self.data_dir)} "
                       "and downloads are off (see the side panel)")
        if config.device not in DEVICES_ANY_MACHINE_HAS:
            self._start_if_device_exists(config, data_found)
        elif data_found:
            self.post_message(StartRun(config))
        else:
            self._refuse_start()

    @work(thread=True, exclusive=True, group="start")
    def _start_if_device_exists(self, config: TrainConfig, data_found: bool) -> None:
        """Likewise a device this machine lacks, which only torch can tell: asked off the UI thread, as
        torch may still be loading (seconds) when F5 is pressed."""
        from mnist_tui.batches import DeviceError, resolve_device

        try:
            resolve_device(config.device)
        except DeviceError as error:
            self.app.call_from_thread(self._mark, "device", str(error))
            data_found = False
        if get_current_worker().is_cancelled:  # F5 again meanwhile: that press decides
            return
        if data_found:
            self.post_message(StartRun(config))
        else:
            self.app.call_from_thread(self._refuse_start)

    def _refuse_start(self) -> None:
        self.notify("Fix the marked settings before starting.", title="Cannot start", severity="error")
        invalid = self.query(".field.-invalid")
        if invalid:
            invalid.first().query_one("Input, Select, Checkbox").focus()

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
    def _probe_torch(self) -> None:
        """Import torch off the UI thread (it takes seconds) and say what `auto` picks, in its words: until
        then the line is NVML's and the cores' guess."""
        import torch

        from mnist_tui.batches import describe_device, resolve_device

        device = resolve_device("auto")
        cuda = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
        text = f"Device: auto → [b]{device}[/b], {escape(describe_device(device))}"
        self.app.call_from_thread(self._show_torch_answer, text, cuda)

    def _show_torch_answer(self, text: str, cuda: list[str]) -> None:
        with contextlib.suppress(NoMatches):  # the probe can outlive the screen's widgets when the app quits
            self.torch_answered = True
            self.query_one("#device-status", Static).update(text)
            self._set_devices([*self.devices, *(d for d in cuda if d not in self.devices)])

    @work(thread=True, exclusive=True, group="gpus")
    def _read_gpus(self) -> None:
        """The GPUs a trainer started from here sees, in CUDA's order. NVML blocks: off the UI thread."""
        gpus, _ = telemetry.read_gpus()
        visible = telemetry.visible_gpus(gpus, os.environ.get("CUDA_VISIBLE_DEVICES"))
        self.app.call_from_thread(self._gpus_found, visible)

    def _gpus_found(self, gpus: list[GpuSample]) -> None:
        """The GPUs' new figures: the list follows, unless it is open (it would close under the user), and
        the device line guesses from them until torch has spoken."""
        try:
            expanded = self.query_one("#input-device", Select).expanded
        except NoMatches:  # the app is quitting: the screen's widgets are gone
            return
        if not self.torch_answered:
            self.query_one("#device-status", Static).update(auto_device_guess(gpus, usable_cores()))
        labels = {f"cuda:{ordinal}": gpu_label(gpu) for ordinal, gpu in enumerate(gpus)}
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

