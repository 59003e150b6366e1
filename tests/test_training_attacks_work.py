"""Issue 16's attacks on useful work, as specifications, with real torch updates on digits: what a
trainer gets for declaring a huge sample count (with the last public model step, or with a near-zero
update), and for a one-ulp copy of an earlier update. Rounds are measured and checked by RoundWork, as
an author and a verifier do, on a real blob store."""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import pytest
import torch

from consensus.useful_work import WeightedUpdate, encode_tensors
from consensus.useful_work.aggregate import AggregationRule, aggregate
from consensus.useful_work.fixed_point import norm_to_fixed
from consensus.useful_work.rounds import RoundInputs, RoundWork, task_rules
from consensus.useful_work.similarity import Candidate, find_copies, is_near_copy
from consensus.useful_work.train import train_local
from consensus.useful_work.updates import fixed_point_delta
from consensus.useful_work.verifier import ModelVersion, Submission
from runtime.hashing import blake2b_256
from runtime.pallets import training
from runtime.pallets.training import ModelSpec, SealedKey, Task, TaskConfig
from storage.blobs import BlobStore
from storage.database import Database
from tests.helpers.forgeries import one_ulp
from tests.helpers.useful_work import MLP, SEED, base_model, digits_held_out, digits_shards, trained_deltas

MAX_COUNT = (1 << 32) - 1
HONEST = 4  # trainers with data; the fifth shard's owner is the attacker, who uses no data


def config(**changes) -> TaskConfig:
    values = dict(spec=ModelSpec("mlp", (64, 32, 10)), initial_model=base_model(MLP).model_hash,
                  metric=training.METRIC_LOSS, held_out=b"\0" * 32, held_out_size=1, held_out_subset=200,
                  sealed_keys=(SealedKey(b"\0" * 32, b"k"),), reward_per_round=10**12, rounds=2, commit_blocks=2,
                  reveal_blocks=2, min_improvement_ppm=500, min_relative_ppm=0, max_update_bytes=1 << 20,
                  max_update_norm=norm_to_fixed(50.0), bond=10**11, aggregation=0, trim=0)
    values.update(changes)
    return TaskConfig(**values)


@lru_cache(maxsize=None)
def public_history() -> tuple[ModelVersion, dict]:
    """Round 0 of the task: five honest updates from the base, aggregated. (model 1, its public step)."""
    base = base_model(MLP)
    updates = [WeightedUpdate(blake2b_256(encode_tensors(d)), d, len(y))
               for d, (_, y) in zip(trained_deltas(MLP), digits_shards())]
    weights = aggregate(base.weights, updates, AggregationRule("fedavg"))
    model = ModelVersion.from_weights(MLP, weights)
    return model, {name: model.weights[name] - base.weights[name] for name in model.weights}


@lru_cache(maxsize=None)
def honest_updates() -> tuple[bytes, ...]:
    """Round 1: the first four trainers train one epoch on their shards from model 1."""
    model, _ = public_history()
    return tuple(encode_tensors(train_local(MLP, model.weights, x, y, epochs=1, batch_size=32, lr=0.1, seed=10 + i))
                 for i, (x, y) in enumerate(digits_shards()[:HONEST]))


@pytest.fixture
def work(tmp_path):
    db = Database(tmp_path / "blobs")
    yield RoundWork(BlobStore(db), None)
    db.close()


def round_one(task_config: TaskConfig, attack: tuple[bytes, int] | None, *, check_copies: bool = True,
              honest_samples: int | None = None) -> RoundInputs:
    """Round 1's inputs as RoundWork.inputs builds them: the honest updates revealed first, then the attack."""
    model, step = public_history()
    task = Task(b"\1" * 32, task_config, 1, 10, model.model_hash, None, 10**13, training.STATUS_ACTIVE)
    rules = task_rules(task)
    shards = digits_shards()
    submissions = [Submission.of(blob, honest_samples or len(shards[i][1])) for i, blob in enumerate(honest_updates())]
    if attack is not None:
        submissions.append(Submission.of(*attack))
    earlier = [Candidate("the model step of round 0", fixed_point_delta(model.weights, step))]
    earlier += [Candidate(f"round 0 update {i}", fixed_point_delta(model.weights, d))
                for i, d in enumerate(trained_deltas(MLP))]
    revealed = [(s.update_hash, fixed_point_delta(model.weights, _decode(s.update_blob))) for s in submissions]
    copies = find_copies(revealed, earlier, task_config.copy_distance_ppm) if check_copies else {}
    return RoundInputs(0, task, rules, model, submissions, digits_held_out(), SEED, copies)


def _decode(blob: bytes) -> dict:
    from consensus.useful_work import decode_tensors
    return decode_tensors(blob, max_bytes=len(blob), max_tensors=16, max_elements=1 << 20)


def rewards(task_config: TaskConfig, report) -> dict[bytes, int]:
    """What each update earns of a round's trainer pot (the runtime's rules over the reported integers)."""
    accepted = training.accepted_updates(task_config, report.candidate, report.scores)
    adopted = bool(accepted) and training.metric_value(task_config.metric, report.new_model_score) > \
        training.metric_value(task_config.metric, report.base)
    gains = training.contributions(task_config.metric, report.candidate, report.scores)
    total = sum(gains[u] for u in accepted) if adopted else 0
    return {bytes(s.update): (10**6 * gains[s.update] // total if total and s.update in accepted else 0)
            for s in report.scores}


def honest_hashes() -> list[bytes]:
    return [blake2b_256(blob) for blob in honest_updates()]


def assert_honest_trainers_are_paid(task_config, report) -> None:
    paid = rewards(task_config, report)
    assert sum(paid[h] > 0 for h in honest_hashes()) >= 2, paid
    assert report.new_model is not None and report.new_model_score.loss_ppm < report.base.loss_ppm


def test_replaying_the_last_public_model_step_with_the_largest_count_earns_nothing(work):
    _, step = public_history()
    replay = encode_tensors(step)  # anyone can compute it: model_1 - model_0, both public
    task_config = config()
    inputs = round_one(task_config, (replay, MAX_COUNT))
    report = work.measure(inputs)
    status = {bytes(s.update): s.status for s in report.scores}
    assert status[blake2b_256(replay)] == training.UPDATE_COPY
    assert inputs.copies[blake2b_256(replay)] == "the model step of round 0"
    assert rewards(task_config, report)[blake2b_256(replay)] == 0
    assert_honest_trainers_are_paid(task_config, report)
    assert work.check(inputs, report) == []  # another validator agrees, copy verdict and weighted aggregate


def test_declaring_more_samples_never_raises_a_contribution(work):
    """Even a replay the copy check missed: its contribution with 2**32 - 1 samples is the one with 1."""
    _, step = public_history()
    replay = encode_tensors({name: tensor * 0.5 for name, tensor in step.items()})
    task_config = config(copy_distance_ppm=0)
    contributions = []
    for count in (1, 1_000, MAX_COUNT):
        report = work.measure(round_one(task_config, (replay, count), check_copies=False))
        gains = training.contributions(task_config.metric, report.candidate, report.scores)
        contributions.append(gains)
    assert contributions[0] == contributions[1] == contributions[2]
    # and an honest trainer declaring a huge count moves no contribution either
    inflated = work.measure(round_one(task_config, None, honest_samples=MAX_COUNT))
    plain = work.measure(round_one(task_config, None, honest_samples=7))
    assert training.contributions(task_config.metric, inflated.candidate, inflated.scores) == \
        training.contributions(task_config.metric, plain.candidate, plain.scores)


def test_no_update_holds_more_than_the_tasks_share_of_the_new_model():
    task_config = config(max_samples=10_000, max_share_ppm=400_000)
    weights = training.aggregation_weights(task_config, [MAX_COUNT, 300, 280, 290])
    assert weights[0] * 1_000_000 <= 400_000 * sum(weights) and weights[1:] == [300, 280, 290]
    assert training.aggregation_weights(task_config, [MAX_COUNT]) == [10_000]
    assert training.aggregation_weights(config(max_share_ppm=100_000), [5, 9]) == [1, 1]  # too few: equal
    for counts in ([1, 1, 1], [MAX_COUNT] * 3, [10, 10_000, 3, 7, 500]):
        capped = training.aggregation_weights(task_config, counts)
        assert all(w * 1_000_000 <= 400_000 * sum(capped) for w in capped) or len(set(capped)) == 1


def test_a_near_zero_update_with_the_largest_count_earns_nothing_and_locks_nobody_out(work):
    generator = torch.Generator().manual_seed(3)
    model, _ = public_history()
    tiny = encode_tensors({name: torch.randn(t.shape, generator=generator) * 1e-6 for name, t in model.weights.items()})
    task_config = config()
    report = work.measure(round_one(task_config, (tiny, MAX_COUNT)))
    assert rewards(task_config, report)[blake2b_256(tiny)] == 0
    assert_honest_trainers_are_paid(task_config, report)


def test_a_one_ulp_copy_of_an_earlier_reveal_is_refused_and_the_earlier_wins(work):
    original = honest_updates()[1]
    copy = one_ulp(original)
    assert blake2b_256(copy) != blake2b_256(original)  # a new hash: the reveal itself is accepted on chain
    task_config = config()
    inputs = round_one(task_config, (copy, 288))
    assert inputs.copies == {blake2b_256(copy): f"update 0x{blake2b_256(original).hex()}"}
    report = work.measure(inputs)
    status = {bytes(s.update): s.status for s in report.scores}
    assert status[blake2b_256(copy)] == training.UPDATE_COPY and status[blake2b_256(original)] == training.UPDATE_OK
    assert rewards(task_config, report)[blake2b_256(copy)] == 0
    # an author that passes the copy off as sound is caught by every other validator
    passed_off = dataclasses.replace(report, scores=tuple(
        dataclasses.replace(s, status=training.UPDATE_OK, without=report.base) if s.update == blake2b_256(copy)
        else s for s in report.scores))
    assert any("a copy of update 0x" in reason for reason in work.check(inputs, passed_off))


def test_a_one_ulp_copy_of_an_earlier_rounds_update_is_refused(work):
    model, _ = public_history()
    old = encode_tensors(trained_deltas(MLP)[2])
    inputs = round_one(config(), (one_ulp(old), 288))
    assert inputs.copies == {blake2b_256(one_ulp(old)): "round 0 update 2"}


def test_honest_updates_of_different_shards_are_not_copies_of_each_other():
    model, step = public_history()
    vectors = [fixed_point_delta(model.weights, _decode(blob)) for blob in honest_updates()]
    vectors += [fixed_point_delta(model.weights, d) for d in trained_deltas(MLP)]
    for i, u in enumerate(vectors):
        for v in vectors[:i]:
            assert not is_near_copy(u, v, training.DEFAULT_COPY_DISTANCE_PPM)
    scaled = (vectors[0] * 9) // 10  # a scaled copy points the same way
    assert is_near_copy(scaled, vectors[0], training.DEFAULT_COPY_DISTANCE_PPM)
    assert not is_near_copy(-vectors[0], vectors[0], training.DEFAULT_COPY_DISTANCE_PPM)


def test_a_replay_blurred_past_the_copy_distance_earns_no_more_than_the_best_honest_trainer(work):
    """The copy check's limit, pinned: the last public step plus noise of 20% of its norm is scored like
    any update; it earns for the direction it adds, within the honest trainers' range, whatever it declares."""
    _, step = public_history()
    generator = torch.Generator().manual_seed(1)
    noise = {name: torch.randn(t.shape, generator=generator) for name, t in step.items()}
    scale = 0.2 * _norm(step) / _norm(noise)
    blurred = encode_tensors({name: (step[name] + noise[name] * scale).to(torch.float32) for name in step})
    task_config = config()
    shares = {}
    for count in (1, MAX_COUNT):
        inputs = round_one(task_config, (blurred, count))
        assert blake2b_256(blurred) not in inputs.copies
        shares[count] = rewards(task_config, work.measure(inputs))
    assert shares[1] == shares[MAX_COUNT]  # the declared count changes nothing
    paid = shares[MAX_COUNT]
    assert paid[blake2b_256(blurred)] <= max(paid[h] for h in honest_hashes())


def _norm(tensors: dict) -> float:
    return float(torch.sqrt(sum((t.double() ** 2).sum() for t in tensors.values())))
