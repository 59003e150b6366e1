"""Each benchmark runs at tiny sizes and its --json prints one JSON object with its figures, and nothing
else, on stdout. The measured runs are `make bench`'s; nothing here times anything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def bench_json(script: str, *args: str, timeout: float = 300) -> dict:
    result = subprocess.run([sys.executable, f"scripts/bench/{script}", "--json", *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # one object: anything else on stdout fails to parse
    assert isinstance(report, dict)
    return report


def test_import_transfers_prints_its_figures():
    report = bench_json("import_transfers.py", "--accounts", "100", "--blocks", "2", "--per-block", "50")
    assert (report["accounts"], report["blocks"], report["transfers_per_block"]) == (100, 2, 50)
    for key in ("transfers_per_s", "block_import_ms_mean", "verify_per_s", "import_over_verify", "peak_rss_mb",
                "import_cpu_s_per_1k_transfers", "verify_cpu_s_per_1k", "import_over_verify_cpu"):
        assert report[key] > 0, key
    assert isinstance(report["goal_met"], bool)


def test_useful_work_prints_verify_over_train_per_architecture():
    report = bench_json("useful_work.py", "--repeats", "1", "--architectures", "mlp", "small_cnn")
    assert set(report) == {"mlp", "small_cnn"}
    for row in report.values():
        assert row["verify_over_train"] > 0
        assert abs(row["verify_over_train"] - row["verify_ms"] / row["train_ms"]) < 1e-3
        assert row["updates_per_s_per_core"] > 0 and row["shard_examples"] > 0


@pytest.mark.slow
def test_node_throughput_prints_its_figures():
    report = bench_json("node_throughput.py", "--seconds", "3", "--accounts", "50", "--rate-guess", "300")
    assert 0 <= report["submitted"] <= 900  # of what it signed: how much a loaded machine does in 3 s is no test
    for key in ("seconds", "blocks", "included_per_s", "admission_per_s", "block_ms_p50", "block_ms_p99",
                "missed_slots"):
        assert isinstance(report[key], (int, float)), key
    assert isinstance(report["goal_met"], bool)


@pytest.mark.slow
def test_rpc_prints_requests_per_second_per_method_and_the_fanout():
    report = bench_json("rpc.py", "--seconds", "1", "--connections", "2", "--subscribers", "5")
    for method in ("chain_getHeader", "state_getStorage", "author_submitExtrinsic"):
        assert report[method]["errors"] == 0, method
        for key in ("requests_per_s", "p50_ms", "p99_ms", "requests"):
            assert isinstance(report[method][key], (int, float)), (method, key)
    assert report["websocket_fanout"]["subscribers"] == 5
    assert isinstance(report["goal_met"], bool)
