"""scripts/bench/state_scale.py at toy sizes: --json prints one object with the issue's keys and nothing
else on stdout (the node it starts logs to stderr)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_state_scale_prints_one_json_object_with_every_figure():
    done = subprocess.run([sys.executable, "scripts/bench/state_scale.py", "--sizes", "1000,3000", "--blocks", "1",
                           "--per-block", "200", "--warmup-blocks", "1", "--warmup-reads", "100", "--repeats", "1",
                           "--tasks", "10", "--samples", "3", "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout)  # the whole of stdout is one object
    assert figures["transfers_per_s_1k"] > 0 and figures["transfers_per_s_3k"] > 0
    assert figures["db_bytes_per_account"] > 0 and figures["tasks"] == 10
    for method in ("chain_getHeader", "state_getStorage", "explorer_accountHistory", "training_leaderboard"):
        assert figures[f"rpc_{method}_p99_ms"] > 0
    assert figures["scale_ratio"] == round(figures["transfers_per_s_3k"] / figures["transfers_per_s_1k"], 3)


def test_state_scale_refuses_bad_sizes_with_a_usage_error():
    done = subprocess.run([sys.executable, "scripts/bench/state_scale.py", "--sizes", "ten"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--sizes" in done.stderr and done.stdout == ""
