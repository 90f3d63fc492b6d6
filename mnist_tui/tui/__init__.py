"""The Textual dashboard: a thin layer over the headless core."""

import os

if os.environ.get("SSH_CONNECTION"):
    # Over SSH every frame crosses the network: cap Textual's frame rate (read when textual is imported,
    # which is why it is set here, before any textual import) unless the user chose one.
    os.environ.setdefault("TEXTUAL_FPS", "20")
