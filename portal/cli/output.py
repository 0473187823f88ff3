"""What portal-cli prints: tables (rich) or JSON on stdout; warnings and
errors on stderr, one line each."""

from __future__ import annotations

import json
import sys
import webbrowser
from collections.abc import Iterable, Sequence

import typer
from rich.console import Console
from rich.table import Table


def is_terminal() -> bool:
    return sys.stdout.isatty()


def _console() -> Console:
    # Made per call: tests and pipes swap sys.stdout.
    return Console(file=sys.stdout, soft_wrap=False, highlight=False)


def print_json(data) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def print_table(columns: Sequence[str], rows: Iterable[Sequence], *, empty: str) -> None:
    rows = list(rows)
    if not rows:
        typer.echo(empty)
        return
    table = Table(*columns, box=None, header_style="bold", pad_edge=False)
    for row in rows:
        table.add_row(*("" if value is None else str(value) for value in row))
    _console().print(table)


def print_fields(pairs: Iterable[tuple[str, object]]) -> None:
    """A record, one field a line."""
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for label, value in pairs:
        table.add_row(label, "" if value in (None, "") else str(value))
    _console().print(table)


def say(text: str) -> None:
    typer.echo(text)


def warn(text: str) -> None:
    typer.echo(f"portal-cli: {text}", err=True)


def error(text: str) -> None:
    typer.echo(f"portal-cli: error: {text}", err=True)


def open_in_browser(url: str) -> bool:
    """Open ``url`` where a person sits at a browser: only from a terminal
    (a script gets the printed address, and is never handed to a text
    browser), and only if Python finds a browser."""
    if not is_terminal():
        return False
    try:
        return webbrowser.get().open(url)
    except webbrowser.Error:
        return False
