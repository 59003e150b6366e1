"""Near-copies: an update that points where an earlier one already did is refused, the earlier wins.

A hash comparison misses copies: change one float of an update by one unit in the
last place and the hash is new, while the fixed-point vector (`fixed_point`) is the
same, or one unit away. So updates are compared by their fixed-point vectors,
exactly, in integers, on every validator alike.

The measure is the sine of the angle between an update u and an earlier vector v,
compared with the task's `copy_distance_ppm` (d):

    u is a copy of v  <=>  u . v > 0  and  10**12 (|u|^2 |v|^2 - (u . v)^2) <= d^2 |u|^2 |v|^2

that is, u lies within d (relative) of the ray through v. A direction and not a
plain distance, because leave-one-out pays for a direction: a copy scaled by 0.9
is as much a copy as the original, and the chain bounds the norm anyway. A zero
update copies nothing (and contributes nothing).

What an update is compared with, in this order (the first match is reported):
  * the task's public model steps, model_r - model_(r-1) for each adopted round (so
    replaying the last aggregate step, which anyone can compute, earns nothing);
  * every update revealed in the task's earlier rounds that was scored sound or copy;
  * the updates revealed before it in its own round (reveal order is chain order).

The runtime cannot run this (it never sees tensors): the block's report marks a
copy UPDATE_COPY, and every validator recomputes the verdict before it agrees.
`find_copies` is the rule over vectors; `CopyCheck` gathers the vectors from the
chain's records and the blob store for RoundWork (consensus/useful_work/rounds.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch

from consensus.useful_work.errors import UsefulWorkError
from consensus.useful_work.fixed_point import squared_norm
from consensus.useful_work.models import ModelSpec
from consensus.useful_work.updates import UpdateLimits, decode_update, fixed_point_delta
from runtime import api as runtime_api
from runtime.pallets import training

PPM = 1_000_000


class Candidate(NamedTuple):
    """A vector an update may be a copy of, and its name in a verdict (a hash, or a model step)."""

    name: str
    vector: np.ndarray


def exact_dot(u: np.ndarray, v: np.ndarray) -> int:
    """The exact dot product of int64 vectors whose entries satisfy |q| < 2**31.

    Each entry splits as q = high * 2**16 + low (0 <= low < 2**16, |high| <= 2**15): every
    partial product is below 2**32, so each column sum stays below 2**63 for up to 2**31
    entries and the combination is made in Python integers."""
    if u.shape != v.shape:
        raise ValueError("vectors of different lengths cannot be compared")
    u_high, u_low = u >> 16, u & 0xFFFF
    v_high, v_low = v >> 16, v & 0xFFFF
    high = int((u_high * v_high).sum(dtype=np.int64))
    middle = int((u_high * v_low).sum(dtype=np.int64)) + int((u_low * v_high).sum(dtype=np.int64))
    low = int((u_low * v_low).sum(dtype=np.int64))
    return (high << 32) + (middle << 16) + low


def is_near_copy(update: np.ndarray, earlier: np.ndarray, distance_ppm: int, *,
                 update_norm: int | None = None, earlier_norm: int | None = None) -> bool:
    """Whether `update` points within `distance_ppm` (a sine) of `earlier` (see the module docstring)."""
    uu = squared_norm(update) if update_norm is None else update_norm
    vv = squared_norm(earlier) if earlier_norm is None else earlier_norm
    if uu == 0 or vv == 0:
        return False
    uv = exact_dot(update, earlier)
    return uv > 0 and PPM * PPM * (uu * vv - uv * uv) <= distance_ppm * distance_ppm * uu * vv


def find_copies(revealed: Sequence[tuple[bytes, np.ndarray | None]], earlier: Sequence[Candidate],
                distance_ppm: int) -> dict[bytes, str]:
    """update hash -> what it copies, for the round's `revealed` updates (in reveal order; None: an update
    that does not decode, which is refused for that and copies nothing), against the `earlier` vectors
    and each other. An update refused as a copy still counts as earlier for the ones after it."""
    norms = [squared_norm(candidate.vector) for candidate in earlier]
    pool = list(zip(earlier, norms))
    copies: dict[bytes, str] = {}
    for update_hash, vector in revealed:
        if vector is None:
            continue
        norm = squared_norm(vector)
        for candidate, candidate_norm in pool:
            if candidate.vector.shape == vector.shape and is_near_copy(
                    vector, candidate.vector, distance_ppm, update_norm=norm, earlier_norm=candidate_norm):
                copies[update_hash] = candidate.name
                break
        pool.append((Candidate(f"update 0x{update_hash.hex()}", vector), norm))
    return copies


class CopyCheckUnavailable(UsefulWorkError):
    """A blob the copy check needs is not here (cannot check is not a verdict: the round is skipped)."""


class CopyCheck:
    """What a round's updates may copy, gathered from the chain's records and the blob store, with each
    vector computed once. `get_blob(hash)` reads the blob store; `load_model(spec, hash)` gives a
    verifier.ModelVersion (or raises the caller's own cannot-check error)."""

    def __init__(self, get_blob: Callable[[bytes], bytes | None], load_model: Callable[[ModelSpec, bytes], object],
                 *, capacity_bytes: int = 256 << 20) -> None:
        self._get_blob = get_blob
        self._load_model = load_model
        self._capacity_bytes = capacity_bytes  # vectors are 8 bytes a parameter: bound the cache by size
        self._cached_bytes = 0
        self._vectors: dict[tuple, np.ndarray | None] = {}

    def copies(self, state, task_id: int, task: training.Task, spec: ModelSpec, limits: UpdateLimits, base,
               submissions: Sequence[tuple[bytes, bytes | None]]) -> dict[bytes, str]:
        """update hash -> what it copies, for the round's (hash, blob or None) submissions in reveal order."""
        base_weights = base.weights
        revealed = [(update, None if blob is None else self._vector(limits, base_weights, update, blob))
                    for update, blob in submissions]
        earlier = self.earlier(state, task_id, task, spec, limits, base_weights)
        return find_copies(revealed, earlier, task.config.copy_distance_ppm)

    def earlier(self, state, task_id: int, task: training.Task, spec: ModelSpec, limits: UpdateLimits,
                base_weights: Mapping[str, torch.Tensor]) -> list[Candidate]:
        """The task's public model steps and its earlier rounds' sound (or copied) updates, as vectors."""
        earlier: list[Candidate] = []
        previous = bytes(task.config.initial_model)
        versions: dict[int, object] = {}
        for start in range(0, task.round, runtime_api.MAX_PAGE):
            versions.update(runtime_api.model_versions(state, task_id, start=start, count=runtime_api.MAX_PAGE))
        for round_number in range(task.round):
            version = versions.get(round_number)
            if version is not None:
                step = self._model_step(spec, base_weights, previous, bytes(version.model))
                if step is not None:
                    earlier.append(Candidate(f"the model step of round {round_number}", step))
                previous = bytes(version.model)
            for update, record in runtime_api.round_updates(state, task_id, round_number):
                if not isinstance(record, training.UpdateRecord) or \
                        record.status not in (training.UPDATE_OK, training.UPDATE_COPY):
                    continue
                blob = self._get_blob(update)
                if blob is None:  # it decoded when it was scored: its absence here is not a verdict
                    raise CopyCheckUnavailable(f"update 0x{update.hex()} of round {round_number} is not in "
                                               f"the blob store (the copy check needs it)", code="round_update_missing")
                vector = self._vector(limits, base_weights, update, bytes(blob))
                if vector is not None:
                    earlier.append(Candidate(f"update 0x{update.hex()} of round {round_number}", vector))
        return earlier

    def _vector(self, limits: UpdateLimits, base_weights, update: bytes, blob: bytes) -> np.ndarray | None:
        """An update's fixed-point vector (None if it does not decode: it is refused for that instead)."""
        key = (limits, update)
        if key not in self._vectors:
            try:
                vector = fixed_point_delta(base_weights, decode_update(blob, base_weights, limits))
            except UsefulWorkError:
                vector = None
            self._remember(key, vector)
        return self._vectors[key]

    def _model_step(self, spec: ModelSpec, base_weights, before: bytes, after: bytes) -> np.ndarray | None:
        """model_after - model_before (float32, as anyone computes it from the two public blobs), fixed point."""
        key = ("step", before, after)
        if key not in self._vectors:
            old, new = self._load_model(spec, before).weights, self._load_model(spec, after).weights
            try:
                vector = fixed_point_delta(base_weights, {name: new[name] - old[name] for name in new})
            except UsefulWorkError:
                vector = None
            self._remember(key, vector)
        return self._vectors[key]

    def _remember(self, key: tuple, vector: np.ndarray | None) -> None:
        size = 0 if vector is None else vector.nbytes
        if self._cached_bytes + size > self._capacity_bytes:
            self._vectors.clear()
            self._cached_bytes = 0
        self._vectors[key] = vector
        self._cached_bytes += size
