"""The explorer's views of training: tasks, one task's rounds, updates, models and trainers, leaderboards.

    task_report(client, task_id) -> dict       everything about one task, from the node's training_* RPC
    print_task(console, report)                 that report as terminal tables
    render_task_page(report, chain_name)        that report as one self-contained HTML page with a plot
    task_list / print_tasks, leaderboard / print_leaderboard

A report is plain JSON-like data (ints, strings, lists), so the demo can gather it once
and render it both ways. Accuracy on chain is measured on each round's held-out subset,
in parts per million; it is shown as a percentage.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from rpc.client import Client
from runtime.pallets import training
from scripts._common import ChainInfo, CliError, short_hex
from scripts._explorer_render import PAGE_STYLE, key_value_table

TASK_STATUS = {training.STATUS_ACTIVE: "active", training.STATUS_FINISHED: "finished",
               training.STATUS_CANCELLED: "cancelled"}
UPDATE_STATUS = {training.UPDATE_OK: "ok", training.UPDATE_MISSING: "missing",
                 training.UPDATE_MALFORMED: "malformed", training.UPDATE_COPY: "copy"}
FIXED_POINT_ONE = 2**24  # max_update_norm is fixed point


# --- gathering ------------------------------------------------------------------------------


def task_list(client: Client, chain: ChainInfo) -> list[dict]:
    """One row per task: what `explorer.py tasks` shows."""
    return [{"id": int(t["id"]), "creator": chain.address(t["creator"]), "architecture": architecture(t["config"]),
             "round": int(t["round"]), "rounds": int(t["config"]["rounds"]), "status": status_name(t["status"]),
             "remaining_pool": int(t["remaining_pool"]), "accuracy_ppm": accuracy_of(t["model_score"])}
            for t in client.call("training_tasks")]


def task_report(client: Client, task_id: int, chain: ChainInfo | None = None) -> dict:
    """Everything the node knows about one task: config, closed rounds with their updates, the open
    round's revealed updates, model versions and the task's trainers by reward. CliError if no such task."""
    chain = chain or ChainInfo.of(client)
    task = client.call("training_task", task_id)
    if task is None:
        ids = [int(t["id"]) for t in client.call("training_tasks")]
        known = f"the chain has tasks {ids[0]} to {ids[-1]}" if ids else "the chain has no tasks"
        raise CliError(f"no task {task_id}: {known}")
    config, status = task["config"], status_name(task["status"])
    minimum = max(int(config["min_improvement_ppm"]), 1)
    closed = []
    for summary in client.call("training_rounds", task_id):
        round_number, adopted = int(summary["round"]), bool(summary["adopted"])
        updates = [update_row(u, chain, adopted, minimum) for u in client.call("training_updates", task_id,
                                                                                   round_number)]
        paid, to_trainers = int(summary["paid"]), sum(u["reward"] for u in updates)
        closed.append({
            "round": round_number, "closed_at": int(summary["closed_at"]), "subset_seed": summary["subset_seed"],
            "base_accuracy_ppm": accuracy_of(summary["base"]),
            "candidate_accuracy_ppm": accuracy_of(summary["candidate"]),
            "adopted": adopted, "model": summary["model"], "model_accuracy_ppm": accuracy_of(summary["model_score"]),
            "revealed": int(summary["revealed"]), "accepted": int(summary["accepted"]), "paid": paid,
            "paid_to_trainers": to_trainers, "paid_to_validators": paid - to_trainers,
            "rejected": {fate: sum(1 for u in updates if u["status"] == fate)
                         for fate in ("missing", "malformed", "copy")}
            | {"not accepted": sum(1 for u in updates if u["status"] == "ok" and not u["accepted"])},
            "updates": updates})
    open_round, current = None, int(task["round"])
    if status == "active" and current not in (r["round"] for r in closed):  # (it may close while we read)
        pending = client.call("training_updates", task_id, current)
        open_round = {"round": current, "updates": [update_row(u, chain, False, minimum) for u in pending]}
    first_base = closed[0]["base_accuracy_ppm"] if closed else None
    models = [{"round": None, "model": config["initial_model"], "accuracy_ppm": first_base, "contributors": []}]
    models += [{"round": int(m["round"]), "model": m["model"], "accuracy_ppm": accuracy_of(m["score"]),
                "contributors": [chain.address(c) for c in m["contributors"]]}
               for m in client.call("training_models", task_id)]
    return {
        "chain": {"symbol": chain.symbol, "decimals": chain.decimals, "ss58_prefix": chain.ss58_prefix,
                  "exact": chain.exact},
        "id": int(task["id"]), "creator": chain.address(task["creator"]), "status": status,
        "round": int(task["round"]), "round_start": int(task["round_start"]), "rounds": int(config["rounds"]),
        "architecture": architecture(config), "metric": training.METRICS.get(int(config["metric"]), "?"),
        "aggregation": training.AGGREGATIONS.get(int(config["aggregation"]), "?"), "trim": int(config["trim"]),
        "reward_per_round": int(config["reward_per_round"]), "bond": int(config["bond"]),
        "commit_blocks": int(config["commit_blocks"]), "reveal_blocks": int(config["reveal_blocks"]),
        "min_improvement_ppm": int(config["min_improvement_ppm"]), "held_out_subset": int(config["held_out_subset"]),
        "held_out": config["held_out"], "validators": len(config["sealed_keys"]),
        "max_update_bytes": int(config["max_update_bytes"]),
        "max_update_norm": int(config["max_update_norm"]) / FIXED_POINT_ONE,
        "initial_model": config["initial_model"], "model": task["model"],
        "model_accuracy_ppm": accuracy_of(task["model_score"]), "remaining_pool": int(task["remaining_pool"]),
        "closed_rounds": closed, "open_round": open_round, "models": models,
        "trainers": trainer_board(closed + ([open_round] if open_round else [])),
    }


def update_row(update: dict, chain: ChainInfo, adopted: bool, minimum_ppm: int) -> dict:
    """One revealed update; before its round closes it has no status, contribution or reward yet."""
    scored = "status" in update
    status = UPDATE_STATUS.get(int(update["status"]), "?") if scored else "pending"
    contribution = int(update["contribution_ppm"]) if scored else None
    if not scored:
        fate = "pending: the round is open"
    elif status != "ok":
        fate = f"{status}: bond slashed"
    elif update["accepted"]:
        fate = "accepted"
    elif contribution >= minimum_ppm and not adopted:
        fate = "not accepted: the aggregate did not beat the base model"
    else:
        fate = "not accepted: contribution below the minimum"
    return {"update": update["update"], "submitter": chain.address(update["submitter"]), "status": status,
            "num_samples": int(update["num_samples"]), "contribution_ppm": contribution,
            "accepted": bool(update["accepted"]) if scored else None,
            "reward": int(update["reward"]) if scored else 0, "fate": fate}


def trainer_board(rounds: list[dict]) -> list[dict]:
    """The task's trainers by reward earned in it (the sum of their update records' rewards)."""
    board: dict[str, dict] = {}
    for u in (u for round_ in rounds for u in round_["updates"]):
        row = board.setdefault(u["submitter"], dict(address=u["submitter"], earned=0, updates=0, accepted=0, slashed=0))
        for key, add in (("earned", u["reward"]), ("updates", 1), ("accepted", bool(u["accepted"])),
                         ("slashed", u["status"] in ("missing", "malformed"))):
            row[key] += add
    return sorted(board.values(), key=lambda r: (-r["earned"], -r["accepted"], r["address"]))


def leaderboard(client: Client) -> list[dict]:
    """The chain-wide leaderboard: every account by all the rewards it ever earned (trainers and validators)."""
    return [{"address": row["address"], "account": row["account"], "earned": int(row["earned"])}
            for row in client.call("training_leaderboard")]


def status_name(status: Any) -> str:
    return TASK_STATUS.get(int(status), f"status {status}")


def architecture(config: dict) -> str:
    spec = config["spec"]
    return f"{spec['architecture']}({', '.join(str(p) for p in spec['params'])})"


def accuracy_of(score: dict | None) -> int | None:
    return None if score is None else int(score["accuracy_ppm"])


def percent(ppm: int | None) -> str:
    """656250 ppm -> '65.63%' (integers, rounded half up)."""
    if ppm is None:
        return "-"
    hundredths = (ppm + 50) // 100
    return f"{hundredths // 100}.{hundredths % 100:02d}%"


def chain_of(report: dict) -> ChainInfo:
    return ChainInfo(**report["chain"])


def global_accuracy(round_: dict) -> int | None:
    """The global model's accuracy after a round, on that round's subset (the base when it was kept)."""
    return round_["model_accuracy_ppm"] if round_["adopted"] else round_["base_accuracy_ppm"]


def rejected_text(round_: dict) -> str:
    parts = [f"{n} {fate}{' (bond slashed)' if fate != 'not accepted' else ''}"
             for fate, n in round_["rejected"].items() if n]
    return ", ".join(parts) or "-"


def summary_rows(report: dict) -> list[tuple[str, str]]:
    chain, status = chain_of(report), report["status"]
    if status == "active":
        commit_end = report["round_start"] + report["commit_blocks"]
        status += (f", round {report['round']} open (commits until #{commit_end}, "
                   f"reveals until #{commit_end + report['reveal_blocks']})")
    paid = sum(r["paid"] for r in report["closed_rounds"])
    trainers = sum(r["paid_to_trainers"] for r in report["closed_rounds"])
    accuracy_text = "not measured yet" if report["model_accuracy_ppm"] is None else \
        f"accuracy {percent(report['model_accuracy_ppm'])}"
    aggregation = report["aggregation"] + (f" (trim {report['trim']})" if report["trim"] else "")
    return [("creator", report["creator"]), ("status", status), ("model", report["architecture"]),
            ("rounds", f"{len(report['closed_rounds'])} of {report['rounds']} closed"),
            ("windows", f"commit {report['commit_blocks']} blocks, reveal {report['reveal_blocks']} blocks"),
            ("metric", f"{report['metric']} (contributions are measured in it)"), ("aggregation", aggregation),
            ("min improvement", f"{report['min_improvement_ppm']:,} ppm"),
            ("reward per round", chain.format_balance(report["reward_per_round"])),
            ("remaining pool", chain.format_balance(report["remaining_pool"])),
            ("paid", f"{chain.format_balance(paid)} (trainers {chain.format_balance(trainers)}, "
                     f"validators {chain.format_balance(paid - trainers)})"),
            ("bond", chain.format_balance(report["bond"])),
            ("held-out set", f"{report['held_out_subset']:,} examples per round, key sealed to "
                             f"{report['validators']} validator(s), {short_hex(report['held_out'], 16)}"),
            ("update limits", f"{report['max_update_bytes']:,} bytes, L2 norm {report['max_update_norm']:g}"),
            ("initial model", report["initial_model"]),
            ("current model", f"{report['model']} ({accuracy_text})")]


# --- the tables, shared by the terminal and the page ------------------------------------------

NUMBER_COLUMNS = {"id", "round/rounds", "remaining pool", "round", "closed at", "revealed", "accepted",
                  "base accuracy", "new model", "to trainers", "to validators", "samples", "contribution (ppm)",
                  "reward", "accuracy", "#", "updates", "slashed", "earned"}
CODE_COLUMNS = {"creator", "update", "submitter", "model", "contributors", "address"}  # hashes and addresses


@dataclass(frozen=True)
class View:
    """One table of cells (text; a newline breaks a cell's lines)."""

    title: str
    name: str  # the page's table class
    columns: tuple[str, ...]
    rows: list[tuple[str, ...]]
    caption: str = ""
    round: int | None = None  # an updates table's round


def task_views(report: dict) -> list[View]:
    """The rounds, each round's updates, the model versions and the task's trainers."""
    chain = chain_of(report)
    # on a network (the demo adds them): which validators verified each round's block, and who finalized it
    networked = any("verified_by" in r for r in report["closed_rounds"])
    views = [View("Rounds (accuracy on each round's held-out subset)", "rounds",
                  ("round", "closed at", "revealed", "accepted", "rejected", "base accuracy", "new model",
                   "to trainers", "to validators") + (("verified by", "finalized") if networked else ()),
                  [(str(r["round"]), f"#{r['closed_at']}", str(r["revealed"]), str(r["accepted"]), rejected_text(r),
                    percent(r["base_accuracy_ppm"]), percent(r["model_accuracy_ppm"]) if r["adopted"] else "kept",
                    chain.format_balance(r["paid_to_trainers"]), chain.format_balance(r["paid_to_validators"]))
                   + ((verifiers_text(r.get("verified_by", {})), finalized_text(r.get("finality"))) if networked else ())
                   for r in report["closed_rounds"]], "" if report["closed_rounds"] else "no round has closed yet")]
    for r in report["closed_rounds"] + ([report["open_round"]] if report["open_round"] else []):
        scored = "closed_at" in r
        views.append(View(f"Round {r['round']} updates{'' if scored else ' (open)'}", "updates",
                          ("update", "submitter", "samples", "status", "contribution (ppm)", "accepted", "reward",
                           "fate"),
                          [(short_hex(u["update"], 12), u["submitter"], str(u["num_samples"]), u["status"],
                            f"{u['contribution_ppm']:,}" if scored else "-", yes_no(u["accepted"]),
                            chain.format_balance(u["reward"]) if scored else "-", u["fate"]) for u in r["updates"]],
                          "" if r["updates"] else "no update was revealed", r["round"]))
    views.append(View("Model versions", "models", ("round", "model", "accuracy", "contributors"),
                      [("initial" if m["round"] is None else str(m["round"]), m["model"], percent(m["accuracy_ppm"]),
                        "\n".join(m["contributors"])) for m in report["models"]]))
    views.append(View(f"Trainers of task {report['id']} (by reward earned in it)", "trainers",
                      ("#", "address", "updates", "accepted", "slashed", "earned"),
                      [(str(rank), t["address"], str(t["updates"]), str(t["accepted"]), str(t["slashed"]),
                        chain.format_balance(t["earned"])) for rank, t in enumerate(report["trainers"], 1)],
                      "" if report["trainers"] else "no update was revealed"))
    return views


def verifiers_text(verified_by: dict[str, str]) -> str:
    """One line per validator: 'Alice: verified' (or pending, disputed, unverifiable)."""
    return "\n".join(f"{name}: {status}" for name, status in verified_by.items()) or "-"


def finalized_text(finality: dict | None) -> str:
    if not finality:
        return "not final yet"
    # the justification's precommits: the first set over 2/3 of the stake, not every validator that verified
    return (f"#{finality['block']}, precommits of {len(finality['signers'])}/{finality['validators']} "
            f"({finality['stake_percent']:g}% of stake): {', '.join(finality['signers'])}")


def fate_style(fate: str) -> str | None:
    return "ok" if fate == "accepted" else "slashed" if fate.endswith("bond slashed") else None


def yes_no(value: bool | None) -> str:
    return "-" if value is None else "yes" if value else "no"


# --- the terminal ---------------------------------------------------------------------------


def rich_table(view: View) -> Table:
    table = Table(title=view.title, title_justify="left", caption=view.caption or None)
    for name in view.columns:
        table.add_column(name, justify="right" if name in NUMBER_COLUMNS else "left", overflow="fold")
    colours = {"ok": "green", "slashed": "red"}
    for row in view.rows:
        styles = [colours.get(fate_style(cell)) if name == "fate" else None for name, cell in zip(view.columns, row)]
        table.add_row(*(Text(cell, style=style or "") for cell, style in zip(row, styles)))
    return table


def print_tasks(console: Console, tasks: list[dict], chain: ChainInfo) -> None:
    console.print(rich_table(View(
        f"Training tasks ({len(tasks)})", "tasks",
        ("id", "creator", "architecture", "round/rounds", "status", "remaining pool", "accuracy"),
        [(str(t["id"]), t["creator"], t["architecture"], f"{t['round']}/{t['rounds']}", t["status"],
          chain.format_balance(t["remaining_pool"]), percent(t["accuracy_ppm"])) for t in tasks],
        "" if tasks else "no tasks on this chain")))


def print_task(console: Console, report: dict) -> None:
    overview = key_value_table(f"Task {report['id']}")
    for key, value in summary_rows(report):
        overview.add_row(key, Text(value))
    console.print(overview)
    for view in task_views(report):
        console.print(rich_table(view))


def print_leaderboard(console: Console, rows: list[dict], chain: ChainInfo) -> None:
    console.print(rich_table(View(
        "Leaderboard (all rewards ever earned, by trainers and validators)", "leaderboard", ("#", "address", "earned"),
        [(str(rank), row["address"], chain.format_balance(row["earned"])) for rank, row in enumerate(rows, 1)],
        "" if rows else "no rewards were paid yet")))


# --- the static page --------------------------------------------------------------------------

TASK_PAGE_STYLE = PAGE_STYLE + """
.baseline { stroke: #cc0000; stroke-width: 1.5; stroke-dasharray: 6 4; }
.ok { color: #2a7a2a; } .slashed { color: #b00; } caption { caption-side: bottom; color: #555; }
"""


def html_table(view: View) -> str:
    def cell(name: str, text: str) -> str:
        body = "<br>".join(f"<code>{html.escape(line)}</code>" if name in CODE_COLUMNS else html.escape(line)
                           for line in text.split("\n") if line)
        style = fate_style(text) if name == "fate" else None
        return (f"<td{' class=n' if name in NUMBER_COLUMNS else ''}>"
                f"{f'<span class={style}>{body}</span>' if style else body}</td>")

    head = "".join(f"<th>{html.escape(name)}</th>" for name in view.columns)
    body = "".join("<tr>" + "".join(cell(n, c) for n, c in zip(view.columns, row)) + "</tr>" for row in view.rows)
    caption = f"<caption>{html.escape(view.caption)}</caption>" if view.caption else ""
    level, data = (2, "") if view.round is None else (3, f' data-round="{view.round}"')
    return (f"<h{level}>{html.escape(view.title)}</h{level}>"
            f"<table class={view.name}{data}>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>\n")


def render_task_page(report: dict, chain_name: str, baseline: float | None = None) -> str:
    """One self-contained page (inline CSS and SVG, no scripts, no network): the task's summary, a plot
    of the global model's accuracy per round (with the centralized `baseline` accuracy, a fraction, if
    given), and the same tables as the terminal."""
    points = [(r["round"], global_accuracy(r)) for r in report["closed_rounds"] if global_accuracy(r) is not None]
    plot = svg_accuracy_plot("Global model accuracy after each round (%)", points, report["rounds"],
                             None if baseline is None else round(baseline * 1_000_000))
    summary = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in summary_rows(report))
    title = html.escape(f"{chain_name}: task {report['id']} ({report['architecture']}, {report['status']})")
    return (f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>{title}</title>"
            f"<style>{TASK_PAGE_STYLE}</style></head><body>\n<h1>{title}</h1>\n"
            f"<h2>Task</h2><table class=summary>{summary}</table>\n<h2>Accuracy</h2>\n{plot}\n"
            f"<p class=label>Accuracy is measured on each round's held-out subset "
            f"({report['held_out_subset']:,} examples); a kept model is shown at its base accuracy.</p>\n"
            f"{''.join(html_table(view) for view in task_views(report))}</body></html>\n")


def svg_accuracy_plot(title: str, points: list[tuple[int, int]], rounds: int, baseline_ppm: int | None = None,
                      *, width: int = 560, height: int = 240) -> str:
    """(round, accuracy ppm) on a 0-100 % axis across all the task's rounds, one circle per point, and the
    centralized baseline as a dashed horizontal line."""
    left, right, top, bottom = 48, 12, 28, 32
    inner_w, inner_h = width - left - right, height - top - bottom
    last = max([rounds - 1] + [n for n, _ in points])

    def x_of(round_number: int) -> float:
        return left + (inner_w / 2 if last == 0 else round_number * inner_w / last)

    def y_of(ppm: int) -> float:
        return top + inner_h - min(max(ppm, 0), 1_000_000) * inner_h / 1_000_000

    parts = [f'<svg class=plot width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{html.escape(title)}">',
             f'<text class=label x="{left}" y="16" style="font-size:13px;fill:#222">{html.escape(title)}</text>',
             f'<line class=axis x1="{left}" y1="{top + inner_h}" x2="{left + inner_w}" y2="{top + inner_h}"/>',
             f'<line class=axis x1="{left}" y1="{top}" x2="{left}" y2="{top + inner_h}"/>']
    parts += [f'<text class=label x="{left - 6}" y="{y_of(value * 10_000) + 4:.1f}" text-anchor="end">{value}%</text>'
              for value in (0, 25, 50, 75, 100)]
    parts += [f'<text class=label x="{x_of(n):.1f}" y="{height - 10}" text-anchor="middle">round {n}</text>'
              for n in sorted({0, last})]
    if baseline_ppm is not None:
        y, label = y_of(baseline_ppm), percent(baseline_ppm)
        parts.append(f'<line class=baseline x1="{left}" y1="{y:.1f}" x2="{left + inner_w}" y2="{y:.1f}" '
                     f'data-accuracy="{label[:-1]}"><title>centralized baseline: {label}</title></line>'
                     f'<text class=label x="{left + inner_w - 4}" y="{y - 4:.1f}" text-anchor="end">'
                     f'centralized baseline {label}</text>')
    if not points:
        parts.append(f'<text class=label x="{left + 10}" y="{top + inner_h / 2}">no round has closed yet</text>')
    else:
        coordinates = " ".join(f"{x_of(n):.1f},{y_of(v):.1f}" for n, v in points)
        parts.append(f'<polyline class=line points="{coordinates}"/>')
        parts.extend(f'<circle class="point" cx="{x_of(n):.1f}" cy="{y_of(v):.1f}" r="3" data-round="{n}" '
                     f'data-accuracy="{percent(v)[:-1]}"><title>round {n}: {percent(v)}</title></circle>'
                     for n, v in points)
    parts.append("</svg>")
    return "".join(parts)


# --- the explorer's commands (explorer.py hooks them in) ------------------------------------------


def cmd_tasks(explorer) -> None:
    print_tasks(explorer.console, task_list(explorer.client, explorer.chain), explorer.chain)


def cmd_task(explorer) -> None:
    args = explorer.args
    if args.baseline is not None and not 0 < args.baseline <= 1:
        raise CliError(f"bad --baseline {args.baseline}: give the centralized accuracy as a fraction, like 0.962")
    if args.task < 0:
        raise CliError(f"bad task id {args.task}: task ids are whole numbers from 0")
    report = task_report(explorer.client, args.task, explorer.chain)
    print_task(explorer.console, report)
    if args.html:
        page, path = render_task_page(report, explorer.client.call("system_chain"), args.baseline), Path(args.html)
        try:
            path.write_text(page, encoding="utf-8")
        except OSError as exc:
            raise CliError(f"cannot write {path}: {exc.strerror}") from None
        explorer.console.print(f"wrote {path}")


def cmd_leaderboard(explorer) -> None:
    print_leaderboard(explorer.console, leaderboard(explorer.client), explorer.chain)
