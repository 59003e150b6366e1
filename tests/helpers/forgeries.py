"""What a lying trainer or author makes, for the tests that must refuse it (no tests here)."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from consensus.useful_work import decode_tensors, encode_tensors
from runtime.pallets import training
from runtime.pallets.training import Score


def one_ulp(blob: bytes) -> bytes:
    """An update one unit in the last place away from `blob` (in its first tensor's first element)."""
    tensors = decode_tensors(blob, max_bytes=len(blob), max_tensors=16, max_elements=1 << 20)
    name = sorted(tensors)[0]
    changed = tensors[name].clone().reshape(-1)
    changed[0] = torch.from_numpy(np.nextafter(changed[0:1].numpy(), np.float32(np.inf)))
    return encode_tensors({**tensors, name: changed.reshape(tensors[name].shape)})


def inflate_first_score(report):
    """The report with its first update's leave-one-out loss raised past what reproduces."""
    first = report.scores[0]
    # published losses are multiples of LOSS_QUANTUM_PPM; three quanta are beyond the tolerance plus rounding
    lied = dataclasses.replace(first, without=Score(first.without.accuracy_ppm,
                                                    first.without.loss_ppm + 3 * training.LOSS_QUANTUM_PPM))
    return dataclasses.replace(report, scores=(lied,) + report.scores[1:])
