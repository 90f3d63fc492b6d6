"""Outside text in the dashboard's markup: paths, run ids, error messages and whatever a run folder holds."""

from __future__ import annotations

from rich.markup import escape as rich_escape


def escape(text: object) -> str:
    """`text` as markup that shows it as it is, in Rich's markup (RichLog) and Textual's (Static, notify):
    Rich's escape, and Textual's `[$name]` variables too, which Rich's leaves alone and Textual would
    replace with nothing. A data folder named `x[/zz]y` would otherwise stop the dashboard (MarkupError)."""
    return rich_escape(str(text)).replace("[$", "\\[$")
