"""How the explorer shows what it read: terminal rows and tables, and the static block page.

The page is one file, readable offline: inline CSS and SVG drawn here, no scripts, no
external URLs.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from rich.table import Table

from scripts._common import format_time, short_hex

if TYPE_CHECKING:
    from scripts.explorer import BlockSummary, WindowStats


PAGE_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { padding: 3px 10px; border-bottom: 1px solid #ddd; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 12px; }
svg { background: #fafafa; border: 1px solid #ddd; margin: 0.5em 1em 0.5em 0; }
.line { fill: none; stroke: #3465a4; stroke-width: 1.5; }
.point { fill: #3465a4; }
.axis { stroke: #888; }
.label { font-size: 11px; fill: #555; }
"""


def render_page(chain_name: str, blocks: list[BlockSummary], stats: list[tuple[str, str]]) -> str:
    oldest_first = blocks[::-1]
    timed = [(b.number, b.interval_ms / 1000) for b in oldest_first if b.interval_ms is not None]
    plots = (svg_plot("Block time (s)", timed)
             + svg_plot("Transactions per block", [(b.number, b.transactions) for b in oldest_first],
                        whole_numbers=True))
    stats_html = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in stats)
    rows = "".join(
        f"<tr><td class=n>{b.number}</td><td><code>{html.escape(short_hex(b.hash, 16))}</code></td>"
        f"<td class=n>{b.extrinsics}</td><td class=n>{b.transactions}</td><td class=n>{b.events}</td>"
        f"<td><code>{html.escape(b.author)}</code></td><td>{html.escape(format_time(b.timestamp_ms))}</td>"
        f"<td class=n>{'' if b.interval_ms is None else f'{b.interval_ms / 1000:.2f} s'}</td></tr>"
        for b in blocks)
    title = html.escape(f"{chain_name}: blocks #{blocks[-1].number}-#{blocks[0].number}" if blocks else chain_name)
    return (f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>{title}</title>"
            f"<style>{PAGE_STYLE}</style></head><body>\n<h1>{title}</h1>\n"
            f"<h2>Statistics</h2><table class=stats>{stats_html}</table>\n<h2>Plots</h2>\n{plots}\n"
            f"<h2>Blocks</h2><table class=blocks id=blocks><thead><tr><th>number</th><th>hash</th>"
            f"<th>extrinsics</th><th>tx</th><th>events</th><th>author</th><th>time</th><th>block time</th>"
            f"</tr></thead><tbody>{rows}</tbody></table>\n</body></html>\n")


def svg_plot(title: str, points: list[tuple[int, float]], *, whole_numbers: bool = False,
             width: int = 560, height: int = 220) -> str:
    """A line plot of (block number, value), one circle with a tooltip per point."""
    value_format = "{:.0f}" if whole_numbers else "{:.2f}"
    left, right, top, bottom = 48, 12, 28, 32
    inner_w, inner_h = width - left - right, height - top - bottom
    parts = [f'<svg class=plot width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{html.escape(title)}">',
             f'<text class=label x="{left}" y="16" style="font-size:13px;fill:#222">{html.escape(title)}</text>',
             f'<line class=axis x1="{left}" y1="{top + inner_h}" x2="{left + inner_w}" y2="{top + inner_h}"/>',
             f'<line class=axis x1="{left}" y1="{top}" x2="{left}" y2="{top + inner_h}"/>']
    if not points:
        parts.append(f'<text class=label x="{left + 10}" y="{top + inner_h / 2}">no data</text></svg>')
        return "".join(parts)
    low_x, high_x = points[0][0], points[-1][0]
    high_y = max(v for _, v in points) or 1

    def x_of(number: int) -> float:
        return left + (inner_w / 2 if high_x == low_x else (number - low_x) * inner_w / (high_x - low_x))

    def y_of(value: float) -> float:
        return top + inner_h - value * inner_h / high_y

    ticks = sorted({0, high_y // 2, high_y}) if whole_numbers else [0, high_y / 2, high_y]
    for value in ticks:
        parts.append(f'<text class=label x="{left - 6}" y="{y_of(value) + 4:.1f}" text-anchor="end">'
                     f'{value_format.format(value)}</text>')
    for number in sorted({low_x, high_x}):
        parts.append(f'<text class=label x="{x_of(number):.1f}" y="{height - 10}" text-anchor="middle">'
                     f'#{number}</text>')
    coordinates = " ".join(f"{x_of(n):.1f},{y_of(v):.1f}" for n, v in points)
    parts.append(f'<polyline class=line points="{coordinates}"/>')
    parts.extend(f'<circle class="point" cx="{x_of(n):.1f}" cy="{y_of(v):.1f}" r="3" data-block="{n}">'
                 f'<title>#{n}: {value_format.format(v)}</title></circle>' for n, v in points)
    parts.append("</svg>")
    return "".join(parts)


def stats_rows(stats: WindowStats) -> list[tuple[str, str]]:
    def seconds(ms: float | None) -> str:
        return "-" if ms is None else f"{ms / 1000:.3f} s"

    return [("best block", f"#{stats.best}"), ("finalized block", f"#{stats.finalized}"),
            ("blocks in window", str(stats.blocks)), ("average block time", seconds(stats.average_interval_ms)),
            ("min / max block time", f"{seconds(stats.min_interval_ms)} / {seconds(stats.max_interval_ms)}"),
            ("extrinsics per block", f"{stats.extrinsics_per_block:.2f}"),
            ("transactions per block", f"{stats.transactions_per_block:.2f}"),
            ("transactions", str(stats.transactions)),
            ("transactions per second", "-" if stats.transactions_per_second is None
             else f"{stats.transactions_per_second:.2f}")]


def describe_verification(status: dict | None) -> str:
    """This node's verdict on the block's useful-work reports (chain_getBlockVerification)."""
    if status is None:
        return "(unknown to this node)"
    state = status["status"]
    if state == "disputed":
        return "disputed: " + "; ".join(status["reasons"])
    if state == "unverifiable":
        return f"unverifiable: {len(status['missing'])} blob(s) missing since block #{status['since']}"
    if state == "verified" and status["unchecked"]:
        return "verified, except rounds this node cannot check: " + "; ".join(status["unchecked"])
    return state


def short_address(address: str) -> str:
    return address if len(address) <= 16 else f"{address[:8]}…{address[-6:]}"


def key_value_table(title: str) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("key", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    return table
