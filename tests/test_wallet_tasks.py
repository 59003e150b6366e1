"""The wallet's task commands against a real dev node: a task created from an .npz file is on chain
with its config and reserved pool, its held-out set is ciphertext only the validator opens, bad
inputs are one line and create nothing, cancel is the creator's, download gives a file plain torch
loads, and a round with two trainers is watched to the end and its rewards claimed.

Alice is the dev validator (and authors every block, earning fee shares), so tasks are created by
Charlie and Dave, whose balances only these tests change."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from consensus.useful_work import ModelSpec, ModelVersion, TensorFormatError, build_model, decode_tensors, state_of
from consensus.useful_work.data import load_dataset, shard_non_iid, split_held_out
from consensus.useful_work.fixed_point import norm_to_fixed
from consensus.useful_work.models import TaskModel
from consensus.useful_work.secrecy import held_out_plaintext, open_held_out
from runtime import crypto
from runtime.executive import sign_extrinsic
from runtime.hashing import blake2b_256
from runtime.pallets import balances, held_out_keys, training
from scripts import wallet, wallet_tasks
from scripts._common import format_balance
from scripts._tasks import ChainAccount, get_task, unhex, wait_until
from scripts.trainer import Trainer, TrainerOptions
from tests.helpers.chain import DEV_KEYS
from tests.helpers.threads import ThreadRunner
from tests.helpers.wallet import GRAD, PASSPHRASE, WalletCli, address, assert_one_line_error

CHARLIE, DAVE = DEV_KEYS["Charlie"], DEV_KEYS["Dave"]
ROOT = Path(__file__).resolve().parent.parent
SPEC = ModelSpec("mlp", input_dim=64, hidden=64, classes=10)
TRAINER_URIS = {"trainer1": "//WalletTasksTrainer1", "trainer2": "//WalletTasksTrainer2"}
TRAINERS = {name: crypto.keypair_from_uri(uri) for name, uri in TRAINER_URIS.items()}


@pytest.fixture(scope="module")
def split():
    return split_held_out(*load_dataset("digits"), fraction=0.25, seed=1)


@pytest.fixture(scope="module")
def files(tmp_path_factory, split):
    """The module's passphrase file, a wrong one, and held-out .npz files: a good one and a too-narrow one."""
    base = tmp_path_factory.mktemp("wallet-tasks")
    (base / "passphrase").write_text(PASSPHRASE + "\n")
    (base / "wrong").write_text("not the passphrase")  # proves a check came before the passphrase
    np.savez(base / "held_out.npz", features=split.held_out_features.numpy(), labels=split.held_out_labels.numpy())
    np.savez(base / "narrow.npz", features=split.held_out_features[:, :32].numpy(),
             labels=split.held_out_labels.numpy())
    return base


@pytest.fixture(scope="module")
def run(node, files):
    cli = WalletCli(node.url, files / "keys", files / "passphrase")
    cli.import_keys({"alice": "//Alice", "charlie": "//Charlie", "dave": "//Dave", **TRAINER_URIS})
    return cli


def create_args(files: Path, *extra: str, rounds: str = "3", creator: str = "charlie") -> list[str]:
    return ["task", "create", creator, "--held-out", str(files / "held_out.npz"), "--architecture", "mlp",
            "--params", "64,64,10", "--reward-per-round", "100 GRAD", "--rounds", rounds, *extra]


def created_task_id(out: str) -> int:
    line = next(line for line in out.splitlines() if line.startswith("task ") and " created:" in line)
    return int(line.split()[1])


@pytest.fixture(scope="module")
def created(run, node, files):
    """A task made by `task create` (seed 7, trimmed mean, ...), whose first commit window outlasts the
    module: its id, and Charlie's account just before and just after."""
    before = node.client.account(address(CHARLIE.public))
    code = wallet.main(["--url", run.url, "--wallet-dir", str(run.directory), "--passphrase-file",
                        str(files / "passphrase"), *create_args(files, "--seed", "7", "--aggregation",
                                                                "trimmed_mean", "--trim", "1", "--bond", "2 GRAD",
                                                                "--subset", "128", "--max-update-norm", "4.5",
                                                                "--commit-blocks", "200")])
    assert code == 0
    after = node.client.account(address(CHARLIE.public))
    tasks = node.client.call("training_tasks")
    mine = [t for t in tasks if unhex(t["creator"]) == CHARLIE.public]
    return int(mine[-1]["id"]), before, after


# --- task create --------------------------------------------------------------------------


def test_create_puts_the_task_on_chain_with_its_config_and_reserves_the_pool(node, created):
    task_id, before, after = created
    task = node.client.call("training_task", task_id)
    config = task["config"]
    assert unhex(task["creator"]) == CHARLIE.public and task["status"] == training.STATUS_ACTIVE
    assert config["spec"] == {"architecture": "mlp", "params": [64, 64, 10]}
    assert (config["rounds"], config["commit_blocks"], config["reveal_blocks"]) == (3, 200, 2)
    assert int(config["reward_per_round"]) == 100 * GRAD and int(config["bond"]) == 2 * GRAD
    assert training.AGGREGATIONS[config["aggregation"]] == "trimmed_mean" and config["trim"] == 1
    assert training.METRICS[config["metric"]] == "loss" and (config["min_improvement_ppm"], config["min_relative_ppm"]) == (500, 300_000)
    assert config["held_out_subset"] == 128 and int(config["max_update_norm"]) == norm_to_fixed(4.5)
    assert unhex(config["initial_model"]) == ModelVersion.from_weights(SPEC, state_of(build_model(SPEC, 7))).model_hash
    assert unhex(task["model"]) == unhex(config["initial_model"])
    assert after.reserved - before.reserved == 3 * 100 * GRAD == int(task["remaining_pool"])


def test_the_create_output_names_the_task_and_how_to_watch_it(run, node, files, capsys):
    code, out, err = run(capsys, *create_args(files, rounds="1"))
    assert code == 0, err
    task_id = created_task_id(out)
    assert "finalized" in out and f"follow it with: wallet.py task watch {task_id}" in out
    assert node.client.call("training_task", task_id)["config"]["rounds"] == 1


def test_the_held_out_blob_is_ciphertext_that_only_the_validator_opens(node, created, split):
    config = node.client.call("training_task", created[0])["config"]
    ciphertext = node.client.get_blob(unhex(config["held_out"]))
    assert ciphertext is not None and len(ciphertext) == config["held_out_size"]
    with pytest.raises(TensorFormatError):
        decode_tensors(ciphertext, max_bytes=len(ciphertext), max_tensors=2, max_elements=len(ciphertext))
    validators = [v["account"] for v in node.client.call("explorer_validators")]
    assert [key["validator"] for key in config["sealed_keys"]] == sorted(validators)
    alice = DEV_KEYS["Alice"].public
    sealed = next(unhex(key["sealed"]) for key in config["sealed_keys"] if unhex(key["validator"]) == alice)
    features, labels = open_held_out(ciphertext, sealed, crypto.dev_keypair("Alice"))
    assert torch.equal(features, split.held_out_features) and torch.equal(labels, split.held_out_labels)
    assert features.dtype == torch.float32 and labels.dtype == torch.int64
    # the creator declared the plaintext's hash, against which a validator elected later checks its key
    stored = node.client.call("state_getStorage", "0x" + held_out_keys.PlaintextHash.key_of(created[0]).hex())
    assert stored is not None
    declared = held_out_keys.PlaintextHash.decode_value(bytes.fromhex(stored[2:]))
    assert declared == blake2b_256(held_out_plaintext(features, labels))


@pytest.mark.parametrize("argv,fragments", [
    (["--held-out", "narrow.npz"], ("32 columns", "input_dim 64")),
    (["--held-out", "missing.npz"], ("no such file", "missing.npz")),
    (["--architecture", "resnet"], ("unknown architecture 'resnet'", "mlp")),
    (["--params", "64,10"], ("mlp takes 3 parameters",)),
    (["--reward-per-round", "1000000 GRAD"], ("insufficient funds", "charlie", "reward pool")),
    (["--initial-model", "held_out.npz"], ("not a torch state dict",)),
    (["--aggregation", "median", "--trim", "2"], ("--trim", "trimmed_mean")),
    (["--max-update-bytes", "100"], ("--max-update-bytes must be from", "not 100")),
    (["--commit-blocks", "200", "--reveal-blocks", "100"], ("--commit-blocks + --reveal-blocks", "255")),
    (["--copy-distance-ppm", "2000000"], ("--copy-distance-ppm", "parts per million")),
])
def test_bad_inputs_are_one_line_and_create_nothing(run, node, files, capsys, argv, fragments):
    """Every check comes before the passphrase (a wrong one is given) and nothing reaches the chain."""
    argv = [files / a if a.endswith(".npz") else a for a in argv]
    args = create_args(files)
    for flag, value in zip(argv[::2], argv[1::2]):
        if flag in args:
            args[args.index(flag) + 1] = str(value)
        else:
            args += [flag, str(value)]
    tasks, nonce = len(node.client.call("training_tasks")), node.client.next_index(address(CHARLIE.public))
    code, out, err = run(capsys, *args, passphrase_file=files / "wrong")
    assert_one_line_error(code, err, *fragments)
    assert len(node.client.call("training_tasks")) == tasks
    assert node.client.next_index(address(CHARLIE.public)) == nonce


def test_an_initial_model_that_does_not_fit_the_spec_is_one_line(run, files, capsys, tmp_path):
    path = tmp_path / "other.pt"
    torch.save(state_of(build_model(ModelSpec("mlp", input_dim=64, hidden=32, classes=10), 0)), path)
    code, _, err = run(capsys, *create_args(files, "--initial-model", str(path)), passphrase_file=files / "wrong")
    assert_one_line_error(code, err, "other.pt", "hidden_bias", "shape")


# --- download and cancel ----------------------------------------------------------------------


def test_download_writes_a_state_dict_that_plain_torch_loads_and_create_reuses(run, node, files, created, capsys,
                                                                              tmp_path):
    path = tmp_path / "model.pt"
    code, out, err = run(capsys, "task", "download", str(created[0]), "--output", str(path))
    assert code == 0, err
    assert "spec: mlp params 64,64,10" in out and "torch.load" in out
    model = TaskModel(SPEC)
    model.load_state_dict(torch.load(path, weights_only=True))
    task_model = unhex(node.client.call("training_task", created[0])["model"])
    expected = ModelVersion.from_blob(SPEC, node.client.get_blob(task_model)).weights
    assert all(torch.equal(parameter, expected[name]) for name, parameter in model.named_parameters())

    code, out, err = run(capsys, *create_args(files, "--initial-model", str(path), rounds="1"))
    assert code == 0, err
    assert node.client.call("training_task", created_task_id(out))["config"]["initial_model"] == "0x" + task_model.hex()


def test_download_end_to_end_in_a_subprocess(node, created, tmp_path):
    """wallet.py run as a script (it imports wallet_tasks, which imports it back as scripts.wallet)."""
    path = tmp_path / "model.pt"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "wallet.py"), "--url", node.url,
                             "--wallet-dir", str(tmp_path), "task", "download", str(created[0]), "-o", str(path)],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    TaskModel(SPEC).load_state_dict(torch.load(path, weights_only=True))


def test_download_of_an_unclosed_round_or_an_unknown_task_is_one_line(run, created, capsys, tmp_path):
    output = str(tmp_path / "m.pt")
    assert_one_line_error(*run(capsys, "task", "download", str(created[0]), "--output", output, "--round", "5")[::2],
                          f"round 5 of task {created[0]} has not closed")
    assert_one_line_error(*run(capsys, "task", "download", "999", "--output", output)[::2], "there is no task 999")


def test_cancel_by_a_non_creator_is_refused_and_by_the_creator_returns_the_pool(run, node, files, capsys):
    """Dave creates this one: Charlie's other tasks end while it runs and give their pools back too."""
    code, out, err = run(capsys, *create_args(files, rounds="2", creator="dave"))
    assert code == 0, err
    task_id = created_task_id(out)
    code, out, err = run(capsys, "task", "watch", str(task_id), "--timeout", "1")
    assert_one_line_error(code, err, f"task {task_id} is still active after 1 s")
    assert any(line.startswith("round 0: commit window, ") for line in out.splitlines())  # among node logs
    nonce = node.client.next_index(address(CHARLIE.public))
    code, _, err = run(capsys, "task", "cancel", "charlie", str(task_id), passphrase_file=files / "wrong")
    assert_one_line_error(code, err, f"only the creator of task {task_id}", "charlie")
    assert node.client.next_index(address(CHARLIE.public)) == nonce

    dave = address(DAVE.public)
    before, nonce = node.client.account(dave), node.client.next_index(dave)
    code, out, err = run(capsys, "task", "cancel", "dave", str(task_id), "--watch")
    assert code == 0, err
    assert "success" in out
    task = get_task(node.client, task_id)
    assert task.status == "cancelled" and task.remaining_pool == 0
    fee = node.client.query_fee(sign_extrinsic(DAVE, training.cancel_task(task_id), nonce=nonce,
                                               genesis_hash=node.client.genesis_hash()))
    after = node.client.account(dave)
    assert (before.reserved - after.reserved, after.free - before.free) == (2 * 100 * GRAD, 2 * 100 * GRAD - fee)
    assert_one_line_error(*run(capsys, "task", "cancel", "dave", str(task_id))[::2], "already cancelled")


def test_claim_with_nothing_accrued_is_one_line(run, files, capsys):
    code, _, err = run(capsys, "claim", "dave", passphrase_file=files / "wrong")
    assert_one_line_error(code, err, "dave has no rewards to claim")


# --- a round with trainers ---------------------------------------------------------------------


def test_one_round_with_two_trainers_is_watched_to_the_end_and_its_rewards_claimed(run, node, files, split,
                                                                                  capsys):
    alice = ChainAccount(node.client, DEV_KEYS["Alice"])
    for keypair in TRAINERS.values():
        alice.send(balances.transfer(keypair.public, 100 * GRAD))
    wait_until(lambda: all(node.client.account(address(k.public)).free for k in TRAINERS.values()), timeout=20,
               what="the trainers' funds")
    code, out, err = run(capsys, *create_args(files, "--commit-blocks", "6", "--reveal-blocks", "2", rounds="1"))
    assert code == 0, err
    task_id = created_task_id(out)

    shards = shard_non_iid(split.train_features, split.train_labels, 2, 5, seed=2, iid_fraction=0.2)
    trainers = [Trainer(node.client, keypair, task_id, features, labels, TrainerOptions(), say=lambda _: None)
                for keypair, (features, labels) in zip(TRAINERS.values(), shards)]
    runner = ThreadRunner()
    for trainer in trainers:
        runner.start(trainer.run)
    code, out, err = run(capsys, "task", "watch", str(task_id), "--timeout", "90")
    runner.join_all(30)
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.startswith(("task ", "round "))]  # not the node's log
    assert lines[0].startswith(f"task {task_id} by {address(CHARLIE.public)}: mlp 64,64,10, 1 round(s) of 100 GRAD")
    assert lines[1].startswith("round 0: commit window, ")
    closed = next(line for line in lines if line.startswith("round 0 closed at #"))
    assert "2 revealed" in closed and "0 slashed" in closed and "new model: accuracy" in closed
    paid = int(node.client.call("training_rounds", task_id)[0]["paid"])  # integer division leaves dust
    assert 99 * GRAD < paid <= 100 * GRAD and f"paid {format_balance(paid, 12, 'GRAD')}" in closed
    assert lines[-1] == (f"task {task_id} finished after 1 of 1 round(s): paid {format_balance(paid, 12, 'GRAD')}; "
                         f"{format_balance(100 * GRAD - paid, 12, 'GRAD')} of the pool went back to the creator")

    model = unhex(node.client.call("training_models", task_id)[0]["model"])  # round 0's new model
    path = files / f"task-{task_id}-round-0.pt"
    code, out, err = run(capsys, "task", "download", str(task_id), "--round", "0", "--output", str(path))
    assert code == 0 and "after round 0 (new)" in out, err
    expected = ModelVersion.from_blob(SPEC, node.client.get_blob(model)).weights
    assert all(torch.equal(tensor, expected[name]) for name, tensor in torch.load(path, weights_only=True).items())

    rewards = sum(int(update["reward"]) for update in node.client.call("training_updates", task_id, 0))
    validator_pot = 100 * GRAD * training.VALIDATOR_SHARE_PPM // 1_000_000  # Alice verifies alone
    reward_unit = 100 * GRAD // 1_000_000  # trainers are paid whole units; the dust goes to the validators
    assert paid == 100 * GRAD and validator_pot <= paid - rewards < validator_pot + 2 * reward_unit
    claimed = 0
    for name, keypair in TRAINERS.items():
        accrued = wallet_tasks.get_accrued(node.client, keypair.public)
        if accrued:
            who = address(keypair.public)
            before, nonce = node.client.account(who).free, node.client.next_index(who)
            code, out, err = run(capsys, "claim", name, "--watch")
            assert code == 0, err
            fee = node.client.query_fee(sign_extrinsic(keypair, training.claim_rewards(), nonce=nonce,
                                                       genesis_hash=node.client.genesis_hash()))
            assert node.client.account(who).free == before + accrued - fee
            assert wallet_tasks.get_accrued(node.client, keypair.public) == 0
            claimed += accrued
    assert claimed == rewards > 0  # an adopted round pays its contributors 90% of the reward
    assert wallet_tasks.get_accrued(node.client, DEV_KEYS["Alice"].public) == paid - rewards
    code, out, err = run(capsys, "claim", "alice", "--watch")  # the validator's 10% share
    assert code == 0 and "success" in out, err
    assert wallet_tasks.get_accrued(node.client, DEV_KEYS["Alice"].public) == 0
