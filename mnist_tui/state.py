"""What the dashboard remembers between launches: the settings of the last run it started.

Kept under the user's state folder (platformdirs: `~/.local/state/mnist-tui` on Linux), or
`$MNIST_TUI_STATE`. A file there that is missing, damaged or from another version is the same as none: the
form starts from the tutorial's settings. Torch-free, so reading it costs the first frame nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from mnist_tui.config import ConfigError, TrainConfig, known_settings
from mnist_tui.control import read_json_table, write_json_atomic

STATE_DIR_ENV = "MNIST_TUI_STATE"


def state_dir() -> Path:
    from_env = os.environ.get(STATE_DIR_ENV)
    if from_env:
        return Path(from_env).expanduser()
    import platformdirs

    return Path(platformdirs.user_state_dir("mnist-tui"))


def last_settings_path() -> Path:
    return state_dir() / "last-settings.json"


def remember_settings(config: TrainConfig) -> None:
    """Keep `config` for the next launch. Best effort: a state folder that cannot be written (read-only
    home, full disk) must not stop a run from starting."""
    path = last_settings_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, config.to_dict())
    except OSError:
        return


def remembered_settings() -> TrainConfig | None:
    """The settings of the last run started from the dashboard, or None (none yet, or unusable)."""
    values = read_json_table(last_settings_path())
    if not values:
        return None
    try:
        return TrainConfig.from_mapping(known_settings(values))
    except ConfigError:
        return None
