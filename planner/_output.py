"""Tables that stay readable anywhere: a rich table on a terminal (cells fold, columns are never
dropped or cut to `…`), tab-separated text when stdout is a pipe or a log, or JSON for scripts."""

from __future__ import annotations

import json
from typing import Any, Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

FORMATS = ("table", "tsv", "json")


def choose_format(fmt: str | None, console: Console) -> str:
    """`fmt` if given (validated), else `table` on a terminal and `tsv` otherwise."""
    if fmt is None:
        return "table" if console.is_terminal else "tsv"
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return fmt


def _plain(cell: Any) -> str:
    text = Text.from_markup(cell).plain if isinstance(cell, str) else ("" if cell is None else str(cell))
    return " ".join(text.split("\t")).replace("\n", " ")


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return None
    return value


class Output:
    """Collects one command's notes and tables and prints them in the chosen format.

    Cells are strings that may hold rich markup (shown on a terminal, stripped in TSV and JSON).
    JSON prints one object at `close()`: `{"notes": [...], <key>: [row objects], ...}`, with a
    table's raw values where the caller gives them.
    """

    def __init__(self, console: Console, fmt: str | None = None):
        self.console, self.fmt = console, choose_format(fmt, console)
        self.sections: dict[str, Any] = {"notes": []}
        self._tables = 0

    def note(self, text: str, markup: bool = False) -> None:
        if self.fmt == "table":
            self.console.print(text if markup else escape(text), highlight=False, soft_wrap=True)
        elif self.fmt == "tsv":
            self._line("# " + (Text.from_markup(text).plain if markup else text))
        else:
            self.sections["notes"].append(Text.from_markup(text).plain if markup else text)

    def table(self, key: str, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *,
              caption: str | None = None, left: Sequence[str] = (), styles: Sequence[str | None] | None = None,
              raw: list[dict] | None = None) -> None:
        if self.fmt == "table":
            t = Table(title=title, caption=caption)
            for col in columns:
                t.add_column(col, justify="left" if col in left else "right", overflow="fold")
            for i, row in enumerate(rows):
                t.add_row(*[c if isinstance(c, str) else _plain(c) for c in row],
                          style=styles[i] if styles else None)
            self.console.print(t)
        elif self.fmt == "tsv":
            if self._tables:
                self._line("")
            self._line(f"# {title}")
            self._line("\t".join(columns))
            for row in rows:
                self._line("\t".join(_plain(c) for c in row))
            if caption:
                self._line(f"# {caption}")
        else:
            self.sections[key] = ([{k: _jsonable(v) for k, v in r.items()} for r in raw] if raw is not None
                                  else [dict(zip(columns, (_plain(c) for c in row))) for row in rows])
        self._tables += 1

    def _line(self, text: str) -> None:
        """Plain text to the console's file (rich would expand the tabs)."""
        self.console.file.write(text + "\n")
        self.console.file.flush()

    def close(self) -> None:
        if self.fmt == "json":
            self._line(json.dumps(self.sections, default=str, indent=1))
