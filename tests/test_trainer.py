"""The trainer client as a participant meets it: a process that is killed and restarted, a missed window,
bad flags and files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from consensus.useful_work import ModelSpec, build_model, state_of
from consensus.useful_work.data import load_dataset, split_held_out
from runtime import crypto
from runtime.pallets import balances
from scripts._tasks import ChainAccount, TaskOptions, get_task, publish_task, unhex
from tests.helpers.dev_node import RunningNode
from tests.helpers.processes import LineReader

ROOT = Path(__file__).resolve().parent.parent
SPEC = ModelSpec("mlp", input_dim=64, hidden=64, classes=10)


class TrainerProcess:
    """`scripts/trainer.py` as a subprocess whose output is read line by line under deadlines."""

    def __init__(self, url: str, uri: str, task: int, state: Path, *extra: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "scripts/trainer.py", "--url", url, "--uri", uri, "--task", str(task),
             "--shard", extra[0] if extra else "1/2", "--state", str(state), *extra[1:]],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
        self.output = LineReader(self.process.stdout)

    def read_until(self, text: str, timeout: float = 60) -> list[str]:
        return self.output.read_until(text, timeout)

    def finish(self, timeout: float = 120) -> str:
        """Wait for a clean exit; all of its output."""
        self.process.wait(timeout)
        self.output.drain()
        out = "\n".join(self.output.lines)
        assert self.process.returncode == 0, out
        return out

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


@pytest.mark.slow
def test_a_killed_trainer_reveals_after_restart_and_a_late_one_waits_for_the_next_round(tmp_path):
    processes: list[TrainerProcess] = []
    with RunningNode(tmp_path / "node") as node:
        try:
            alice = ChainAccount(node.client, crypto.dev_keypair("Alice"))
            first, late = crypto.keypair_from_uri("//Restart"), crypto.keypair_from_uri("//Late")
            for who in (first, late):
                alice.send(balances.transfer(who.public, 1000 * 10**12))
            split = split_held_out(*load_dataset("digits"), fraction=0.25, seed=1)
            task_id = publish_task(alice, SPEC, state_of(build_model(SPEC, 0)), split.held_out_features,
                                   split.held_out_labels, TaskOptions(rounds=2, commit_blocks=20, reveal_blocks=10))
            state = tmp_path / "first.json"
            processes.append(TrainerProcess(node.url, "//Restart", task_id, state))
            processes[-1].read_until("committed to update")
            processes[-1].kill()  # between commit and reveal
            saved = json.loads(state.read_text())["round"]
            # (20 commit blocks: a trainer process may take 10 s and more to start on a loaded machine)
            assert saved["committed"] and not saved["revealed"] and saved["round"] == 0, saved

            restarted = TrainerProcess(node.url, "//Restart", task_id, state)
            processes.append(restarted)
            task = get_task(node.client, task_id)
            node.wait_for_block(task.commit_end)  # round 0's commit window has closed
            late_trainer = TrainerProcess(node.url, "//Late", task_id, tmp_path / "late.json", "2/2")
            processes.append(late_trainer)
            lines = restarted.read_until("revealed update 0x" + saved["update"][:16])
            assert not any("committed" in line for line in lines)  # it did not start round 0 over
            late_lines = late_trainer.read_until("committed to update", timeout=90)
            assert any("commit window has closed; waiting for round 1" in line for line in late_lines)
            for running in (restarted, late_trainer):
                assert "done:" in running.finish(timeout=120)
            round0 = node.client.call("training_updates", task_id, 0)
            assert [(u["update"], unhex(u["submitter"])) for u in round0] == [("0x" + saved["update"], first.public)]
            round1 = {unhex(u["submitter"]) for u in node.client.call("training_updates", task_id, 1)}
            assert round1 == {first.public, late.public}
        finally:
            for process in processes:  # killed before the node closes, passed or failed
                process.kill()


@pytest.mark.parametrize("args,message", [
    (["--shard", "3/2"], "--shard must be i/n"),
    (["--data", "missing.npz"], "cannot read features and labels"),
    (["--shard", "1/2", "--epochs", "0"], "--epochs and --batch-size must be positive"),
    (["--shard", "1/2", "--uri", "not a uri"], "error:"),
])
def test_bad_flags_and_files_get_one_clear_line_and_exit_2(tmp_path, args, message):
    argv = ["--url", "http://127.0.0.1:9", "--task", "0", "--uri", "//Alice", *args]
    result = subprocess.run([sys.executable, str(ROOT / "scripts/trainer.py"), *argv], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_data_file_of_the_wrong_shape_is_refused(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, features=np.zeros((3, 4), dtype=np.float32), labels=np.zeros(2, dtype=np.int64))
    result = subprocess.run([sys.executable, str(ROOT / "scripts/trainer.py"), "--url", "http://127.0.0.1:9",
                             "--task", "0", "--uri", "//Alice", "--data", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "needs features [n, d] and labels [n]" in result.stderr
