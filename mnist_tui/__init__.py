"""mnist-tui: train and inspect an image classifier from a terminal."""

__version__ = "0.1.0"
