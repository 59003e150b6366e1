"""The useful-work benchmark runs and prints one JSON object keyed by architecture."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_benchmark_prints_verify_over_train_per_architecture():
    result = subprocess.run([sys.executable, "scripts/bench/useful_work.py", "--json", "--repeats", "2",
                             "--architectures", "mlp", "small_cnn"], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == {"mlp", "small_cnn"}
    for row in report.values():
        assert row["verify_over_train"] > 0
        assert abs(row["verify_over_train"] - row["verify_ms"] / row["train_ms"]) < 1e-3
        assert row["updates_per_s_per_core"] > 0 and row["shard_examples"] > 0
