"""Useful work: the machine-learning side of the chain (the only package that imports torch).

Trainers improve a task's global model on private data and submit updates;
validators score every update on secret held-out data and recompute the round's
aggregate before they finalize the block that reports it. The chain only ever
sees integers: scores in parts per million and blake2b-256 hashes.

    tensors      the tensor blob: canonical encoding of models, updates, held-out sets
    models       the architecture registry (ModelSpec, compute_logits, build_model)
    evaluate     exact scores (Scores: accuracy_ppm, loss_ppm), the same bits on every CPU
    exact        the integer forward pass and fixed-point cross-entropy behind them
    fixed_point  float32 <-> int64 fixed point (2**24), exact norms and divisions
    updates      an update's sanity checks (UpdateLimits, decode_update, apply_update)
    aggregate    fedavg / trimmed_mean / median in integers, O(n P) leave-one-out of fedavg,
                 the FedAvgM server step (ServerOptimizer); compute_model_hash
    round_types  a round's plain data (TaskRules, ModelVersion, Submission, ...)
    train        the reference local training of a trainer (train_local)
    data         scikit-learn's digits and breast-cancer, splits, non-IID shards, subsets
    secrecy      held-out encryption to the validators' keys
    verifier     UsefulWorkVerifier: score_round/measure_round/aggregate_round, what an author measures
    report_check its verify_report: a validator's exact comparison of a reported round with its own
    round_inputs a round's inputs (RoundInputs, task_rules) and scores as the chain publishes them
    rounds       RoundWork: an author's measurements from the chain's records and blob store
    round_checks its verify_block: every validator's check of a block's reports (Verdict)

The package re-exports the main names below, but not the functions `evaluate` and
`aggregate`: they would hide the submodules of the same names (import them from
`.evaluate` and `.aggregate`).
"""

from consensus.useful_work.aggregate import AggregationRule, ServerOptimizer, WeightedUpdate, compute_model_hash
from consensus.useful_work.errors import (
    AggregationError, EvaluationError, HeldOutError, ModelError, TensorFormatError, UpdateRejected, UsefulWorkError,
)
from consensus.useful_work.evaluate import Scores
from consensus.useful_work.models import ModelSpec, build_model, load_state, state_of
from consensus.useful_work.tensors import decode_tensors, encode_tensors
from consensus.useful_work.updates import UpdateLimits, apply_update, compute_update, decode_update
from consensus.useful_work.verifier import (
    AggregateOutcome, HeldOutSet, ModelVersion, RoundMeasurement, RoundScores, Submission, TaskRules,
    UsefulWorkVerifier,
    VerificationResult,
)

__all__ = [
    "AggregateOutcome", "AggregationError", "AggregationRule", "EvaluationError", "HeldOutError", "HeldOutSet",
    "ModelError", "ModelSpec", "ModelVersion", "RoundMeasurement", "RoundScores", "Scores", "Submission",
    "ServerOptimizer", "TaskRules", "TensorFormatError",
    "UpdateLimits", "UpdateRejected", "UsefulWorkError", "UsefulWorkVerifier", "VerificationResult",
    "WeightedUpdate", "apply_update", "build_model", "compute_model_hash", "compute_update",
    "decode_tensors", "decode_update", "encode_tensors", "load_state", "state_of",
]
