"""The plain data of a round's useful work: the task's rules, models, held-out set, submissions and
what the verifier measures (consensus/useful_work/verifier.py does the work; these are its inputs
and outputs, re-exported there)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from consensus.useful_work.aggregate import AggregationRule, ServerOptimizer, compute_model_hash
from consensus.useful_work.evaluate import Scores
from consensus.useful_work.models import ModelSpec, check_weights, parameter_count, parameter_shapes
from consensus.useful_work.tensors import decode_tensors, encode_tensors
from consensus.useful_work.updates import UpdateLimits
from runtime.hashing import blake2b_256


@dataclass(frozen=True)
class TaskRules:
    """The parameters of a task that verification depends on (all stored on chain as integers/names)."""

    spec: ModelSpec
    update_limits: UpdateLimits
    aggregation: AggregationRule
    held_out_subset_size: int
    server: ServerOptimizer = ServerOptimizer()  # FedAvgM's lr and momentum (plain FedAvg by default)


@dataclass(frozen=True)
class ModelVersion:
    """A model's weights and their hash (the hash is computed once, when it is built)."""

    weights: Mapping[str, torch.Tensor] = field(repr=False)
    model_hash: bytes

    @classmethod
    def from_weights(cls, spec: ModelSpec, weights: Mapping[str, torch.Tensor]) -> ModelVersion:
        check_weights(spec, weights)
        return cls(dict(weights), compute_model_hash(weights))

    @classmethod
    def from_blob(cls, spec: ModelSpec, blob: bytes) -> ModelVersion:
        """The model in a blob from the blob store; its hash is the blob's hash (the format is canonical)."""
        weights = decode_tensors(blob, max_bytes=len(blob), max_tensors=len(parameter_shapes(spec)),
                                 max_elements=parameter_count(spec))
        check_weights(spec, weights)
        return cls(weights, blake2b_256(blob))

    def to_blob(self) -> bytes:
        return encode_tensors(self.weights)


@dataclass(frozen=True)
class HeldOutSet:
    """Decrypted held-out examples and their digest (blake2b-256 of their tensor blob)."""

    features: torch.Tensor = field(repr=False)
    labels: torch.Tensor = field(repr=False)
    digest: bytes

    @classmethod
    def from_tensors(cls, features: torch.Tensor, labels: torch.Tensor) -> HeldOutSet:
        return cls(features, labels, blake2b_256(encode_tensors({"features": features, "labels": labels})))


@dataclass(frozen=True)
class Submission:
    """One revealed update of the round: its hash, its blob (None if it could not be fetched), its samples."""

    update_hash: bytes
    update_blob: bytes | None = field(repr=False)
    num_samples: int

    @classmethod
    def of(cls, update_blob: bytes, num_samples: int) -> Submission:
        return cls(blake2b_256(update_blob), update_blob, num_samples)


@dataclass(frozen=True)
class RoundScores:
    """What the verifier measured for a round, before any update is accepted."""

    base: Scores  # the base model on this round's subset
    updates: dict[bytes, Scores]  # usable updates: base + update on the subset
    rejected: dict[bytes, str]  # unusable updates: reason code (update_missing when there was no blob)


@dataclass(frozen=True)
class RoundMeasurement:
    """A round's leave-one-out measurements (see `UsefulWorkVerifier.measure_round`)."""

    base: Scores
    candidate: Scores | None
    without: dict[bytes, Scores]
    rejected: dict[bytes, str]


@dataclass(frozen=True)
class AggregateOutcome:
    model: ModelVersion
    scores: Scores  # the new model on this round's subset


@dataclass(frozen=True)
class VerificationResult:
    ok: bool
    reasons: list[str]
