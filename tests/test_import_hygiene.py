"""The core never imports Textual: the headless CLI and the trainer process stay light and UI-free."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO_ROOT

CORE_MODULES = ("config", "data", "batches", "models", "engine", "control", "checkpoints", "evaluation", "events",
                "images", "export", "runs", "reporting", "session", "telemetry", "__main__")


def test_core_does_not_import_textual() -> None:
    imports = "; ".join(f"import mnist_tui.{name}" for name in CORE_MODULES)
    script = (f"import sys, json; {imports}; "
              "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'textual_plotext'))))")
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT,
                               timeout=120, check=True)
    assert json.loads(completed.stdout.strip().splitlines()[-1]) == []


def test_light_modules_do_not_import_torch() -> None:
    # The dashboard steers runs and checks datasets through these without paying for a torch import.
    script = ("import sys; import mnist_tui.control, mnist_tui.events, mnist_tui.config, mnist_tui.runs, "
              "mnist_tui.data; "
              "print('torch' in sys.modules)")
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT,
                               timeout=120, check=True)
    assert completed.stdout.strip() == "False"


def test_telemetry_imports_neither_torch_nor_nvml_nor_psutil_until_it_reads() -> None:
    # Importing the module costs nothing; NVML and psutil are loaded by the first reading, off the UI thread.
    script = ("import sys, json; import mnist_tui.telemetry; "
              "print(json.dumps(sorted(m for m in ('torch', 'pynvml', 'psutil') if m in sys.modules)))")
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT,
                               timeout=120, check=True)
    assert json.loads(completed.stdout.strip()) == []


def test_the_dashboard_draws_its_first_frame_without_importing_torch_or_nvml() -> None:
    # torch takes seconds to import, NVML's first call tens of milliseconds: the app and every screen must
    # defer them to a worker thread.
    script = ("import sys, json; import mnist_tui.__main__, mnist_tui.tui.app, mnist_tui.session, "
              "mnist_tui.reporting; print(json.dumps(sorted(m for m in ('torch', 'pynvml') if m in sys.modules)))")
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT,
                               timeout=120, check=True)
    assert json.loads(completed.stdout.strip()) == []
