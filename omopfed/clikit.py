"""What every command group shares: output formats, tables, JSON, and error mapping.

Commands parse their options, call one library function and render its result with these
helpers. Errors are mapped to exit statuses in one place (:func:`run_app`): an expected error
(:class:`~omopfed.errors.OmopfedError`) prints one line ``error[CODE]: message`` on stderr and
exits with its status; ``--debug`` adds the traceback. Anything else is a bug and shows it.
"""

from __future__ import annotations

import enum
import json
import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from omopfed.errors import EXIT_FAILURE, OmopfedError

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


class Format(enum.StrEnum):
    table = "table"
    json = "json"


FormatOption = typer.Option(Format.table, "--format", help="Output format.")


def new_app(help_text: str) -> typer.Typer:
    """A Typer group with the project's defaults (no rich tracebacks, no completion noise)."""
    return typer.Typer(
        help=help_text,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )


def print_json(data: Any) -> None:
    """JSON on stdout, nothing else, so it can be piped."""
    sys.stdout.write(json.dumps(data, indent=2, default=str, sort_keys=False) + "\n")


def print_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    out.print(table)


@contextmanager
def progress(label: str) -> Iterator[Callable[..., None]]:
    """A progress bar on stderr; yields ``update(done, total, label=None)`` for library
    callbacks (a new ``label`` replaces the description, e.g. with the latest loss)."""
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int, label: str | None = None) -> None:
            bar.update(task, completed=done, total=total, description=label)  # None: unchanged

        yield update


def configure_logging(level: str) -> None:
    """Handlers are set here, in the entry point only; libraries just log."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def run_app(app: typer.Typer, args: list[str] | None = None, *, debug: bool = False) -> int:
    """Run a Typer app and turn what it raises into an exit status."""
    try:
        result = app(args=args, standalone_mode=False, prog_name="omopfed")
    except OmopfedError as exc:
        if debug:
            err.print_exception()
        err.print(f"[bold red]error[{exc.code}][/]: {exc.message}", markup=True, highlight=False)
        if exc.hint:
            err.print(f"  hint: {exc.hint}", markup=False, highlight=False)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        err.print("aborted")
        return EXIT_FAILURE
    return result if isinstance(result, int) else 0
