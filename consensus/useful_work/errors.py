"""The errors of useful work, each with a stable code and a message that says what to do.

Every class derives from `runtime.errors.GradchainError`. A subclass has a default
code; a raise site may give a finer one (for example `tensor_truncated`), and the
codes are part of the contract: tests, logs and rejection reasons on the chain
name them.
"""

from __future__ import annotations

from runtime.errors import GradchainError


class UsefulWorkError(GradchainError):
    """Root of the errors raised by consensus/useful_work."""

    code = "useful_work"


class TensorFormatError(UsefulWorkError):
    """Bytes that are not a well-formed tensor blob within the caller's limits."""

    code = "tensor_format"


class ModelError(UsefulWorkError):
    """An unknown architecture, a bad spec, or weights that do not fit the spec."""

    code = "model"


class EvaluationError(UsefulWorkError):
    """Held-out data that cannot be evaluated (shape, dtype or label out of range)."""

    code = "evaluation"


class UpdateRejected(UsefulWorkError):
    """An update that fails a sanity check; it earns nothing and is not aggregated."""

    code = "update_rejected"


class AggregationError(UsefulWorkError):
    """Updates that cannot be aggregated exactly (overflow, duplicates, a bad rule)."""

    code = "aggregation"


class HeldOutError(UsefulWorkError):
    """An encrypted held-out set this validator cannot open, or one that is malformed."""

    code = "held_out"
