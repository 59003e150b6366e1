"""How every benchmark prints its figures: a rich table, or one JSON object with --json."""

from __future__ import annotations

import json


def print_figures(title: str, figures: dict, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(figures))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        table.add_row(key, str(value))
    Console().print(table)
