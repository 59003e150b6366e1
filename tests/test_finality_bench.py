"""scripts/bench/finality.py at toy size: it runs four networked validators and prints one JSON object."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("node.testnet.processes")
pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def test_the_finality_bench_prints_one_json_object_with_the_lag_keys():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench" / "finality.py"), "--seconds", "8",
                             "--slot-ms", "1000", "--no-training", "--json"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    [line] = result.stdout.strip().splitlines()
    figures = json.loads(line)
    assert {"lag_p50_slots", "lag_p99_slots", "vote_bytes_per_s_per_node"} <= set(figures)
    assert 0 < figures["lag_p50_slots"] <= figures["lag_p99_slots"] and figures["vote_bytes_per_s_per_node"] > 0
