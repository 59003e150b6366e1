"""`python -m tests.faults [KIND ...]`: run the fault scenarios and print their outcomes as a Markdown table.

KIND is kill, pause, partition or double_vote (default: all). Each scenario starts its own
4-validator testnet in a temporary directory, under transfer load and a training task with
two trainers, and stops it by pid; a scenario takes 2-4 minutes.
Exit code 1 if any invariant was violated (the violations and log tails on stderr).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from tests.faults.harness import run_scenario
from tests.faults.harness import ROOT
from tests.faults.scenarios import SCENARIOS, WRAPPERS


def main(kinds: list[str]) -> int:
    chosen = [s for s in SCENARIOS if (not kinds or s.fault.kind in kinds)
              and (ROOT / WRAPPERS.get(s.fault.kind, "")).exists()]  # the double voter comes with finality
    print("| scenario | recovered after heal | transfers acknowledged / included once | rounds closed (after the fault) | "
          "a round after the fault verified by all and finalized | issuance drop = burned | wall time | violations |")
    print("|---|---|---|---|---|---|---|---|")
    failed = False
    for scenario in chosen:
        base = Path(tempfile.mkdtemp(prefix="gradchain-fault-"))
        outcome, tails = run_scenario(scenario, base / "net")
        if not outcome.violations:
            shutil.rmtree(base, ignore_errors=True)  # a failed scenario keeps its nodes' data and full logs
        m = outcome.measured
        name = scenario.name.replace("|", "\\|")  # a pipe would split the Markdown cell
        drop, burned = m.get("issuance_drop", "-"), m.get("burned", "-")
        recovered = m.get("recovered_s", f"{m['recovered_late_s']} (late)" if "recovered_late_s" in m else "-")
        if "caught_up_s" in m and m["caught_up_s"] != m.get("recovered_s"):
            recovered = f"{recovered} (faulted node: {m['caught_up_s']})"
        print(f"| {name} | {recovered} s | "
              f"{m.get('transfers_acknowledged', '-')} / {m.get('transfers_included', '-')} | "
              f"{m.get('rounds_closed', '-')} ({m.get('rounds_after_fault', '-')}) | {m.get('round_after_fault', 'no')} | "
              f"{drop} = {burned} {m.get('burned_by', '')} | {m.get('wall_s', '-')} s | "
              f"{'; '.join(outcome.violations) or 'none'} |", flush=True)
        if outcome.violations:
            failed = True
            print("\n".join(outcome.violations) + f"\n(full logs kept under {base})\n" + tails, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
