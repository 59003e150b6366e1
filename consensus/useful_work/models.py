"""The architecture registry: what a task's model is, as integers a chain can store.

A task names its model with a `ModelSpec` (an architecture and integer
hyperparameters). Each architecture is defined once, as a pure function
`compute_logits(spec, params, x)` over a dict of named float tensors; the
`nn.Module` that trainers optimise calls that same function, so training and
evaluation can never disagree about the forward pass.

Parameter names are flat (``hidden_weight``, ``output_bias``, ...) and are the
names in every model and update blob of the task.

`build_model(spec, seed)` is deterministic on one torch version: its parameters
come from a private `torch.Generator` seeded with `seed`, in name order, and the
global RNG is left alone. The chain must commit to the initial model's *hash*
(the creator uploads the blob), never to (spec, seed): other torch versions may
draw different numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from consensus.useful_work.errors import ModelError

ARCHITECTURES = ("logistic_regression", "mlp", "small_cnn")
# The order of each architecture's hyperparameters in the chain's (architecture, params) form.
PARAMETER_ORDER = {
    "logistic_regression": ("input_dim", "classes"),
    "mlp": ("input_dim", "hidden", "classes"),
    "small_cnn": ("input_dim", "channels", "classes"),
}
MAX_DIMENSION = 1 << 16  # bounds every hyperparameter, so a spec from the chain cannot ask for a huge model


@dataclass(frozen=True)
class ModelSpec:
    """A task's model: `architecture` plus the integer hyperparameters it uses.

    logistic_regression: input_dim, classes
    mlp:                 input_dim, hidden, classes  (one ReLU hidden layer)
    small_cnn:           input_dim (a square image side*side, side divisible by 4), channels, classes;
                         conv3x3(1->c) relu maxpool2, conv3x3(c->2c) relu maxpool2, linear
    Unused hyperparameters must be 0, so one model has one spec.
    """

    architecture: str
    input_dim: int
    classes: int
    hidden: int = 0
    channels: int = 0

    @classmethod
    def from_params(cls, architecture: str, params: tuple[int, ...]) -> ModelSpec:
        """The spec of the chain's form: an architecture name and its integers in PARAMETER_ORDER."""
        names = PARAMETER_ORDER.get(architecture)
        if names is None:
            raise ModelError(f"unknown architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}",
                             code="model_unknown_architecture")
        if len(params) != len(names):
            raise ModelError(f"{architecture} takes {len(names)} parameters ({', '.join(names)}), got {len(params)}",
                             code="model_bad_spec")
        return cls(architecture, **dict(zip(names, params)))

    @property
    def params(self) -> tuple[int, ...]:
        """The hyperparameters in PARAMETER_ORDER (the inverse of `from_params`)."""
        return tuple(getattr(self, name) for name in PARAMETER_ORDER[self.architecture])

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ModelError(f"unknown architecture {self.architecture!r}; known: {', '.join(ARCHITECTURES)}",
                             code="model_unknown_architecture")
        used = set(PARAMETER_ORDER[self.architecture])
        for name in ("input_dim", "classes", "hidden", "channels"):
            value = getattr(self, name)
            low = 2 if name == "classes" else 1
            if type(value) is not int or (name in used and not low <= value <= MAX_DIMENSION) \
                    or (name not in used and value != 0):
                expected = f"an integer in {low}..{MAX_DIMENSION}" if name in used else "0 (unused)"
                raise ModelError(f"{self.architecture}.{name} is {value!r}; it must be {expected}",
                                 code="model_bad_spec")
        if self.architecture == "small_cnn":
            side = math.isqrt(self.input_dim)
            if side * side != self.input_dim or side % 4:
                raise ModelError(f"small_cnn needs a square image whose side is divisible by 4; input_dim "
                                 f"{self.input_dim} is not", code="model_bad_spec")


@lru_cache(maxsize=256)
def _parameter_shapes(spec: ModelSpec) -> tuple[tuple[str, tuple[int, ...]], ...]:
    if spec.architecture == "logistic_regression":
        shapes = {"linear_weight": (spec.classes, spec.input_dim), "linear_bias": (spec.classes,)}
    elif spec.architecture == "mlp":
        shapes = {"hidden_weight": (spec.hidden, spec.input_dim), "hidden_bias": (spec.hidden,),
                  "output_weight": (spec.classes, spec.hidden), "output_bias": (spec.classes,)}
    else:
        c, side = spec.channels, math.isqrt(spec.input_dim)
        shapes = {"conv1_weight": (c, 1, 3, 3), "conv1_bias": (c,),
                  "conv2_weight": (2 * c, c, 3, 3), "conv2_bias": (2 * c,),
                  "output_weight": (spec.classes, 2 * c * (side // 4) ** 2), "output_bias": (spec.classes,)}
    return tuple(sorted(shapes.items()))


def parameter_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Every parameter's name and shape, names sorted."""
    return dict(_parameter_shapes(spec))


def parameter_count(spec: ModelSpec) -> int:
    return sum(math.prod(shape) for _, shape in _parameter_shapes(spec))


def compute_logits(spec: ModelSpec, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The forward pass: features [n, input_dim] -> logits [n, classes], in the params' dtype."""
    if spec.architecture == "logistic_regression":
        return F.linear(x, params["linear_weight"], params["linear_bias"])
    if spec.architecture == "mlp":
        hidden = F.relu(F.linear(x, params["hidden_weight"], params["hidden_bias"]))
        return F.linear(hidden, params["output_weight"], params["output_bias"])
    side = math.isqrt(spec.input_dim)
    image = x.reshape(-1, 1, side, side)
    image = _max_pool_2x2(F.relu(F.conv2d(image, params["conv1_weight"], params["conv1_bias"], padding=1)))
    image = _max_pool_2x2(F.relu(F.conv2d(image, params["conv2_weight"], params["conv2_bias"], padding=1)))
    return F.linear(image.flatten(1), params["output_weight"], params["output_bias"])


def _max_pool_2x2(image: torch.Tensor) -> torch.Tensor:
    """F.max_pool2d(image, 2), exactly (a max is exact), but ~8x faster on tiny planes like 8x8.

    torch's CPU max_pool2d pays per plane, and a batch of digits is thousands of
    4x4 and 8x8 planes: it cost more than both convolutions together.
    """
    return torch.maximum(torch.maximum(image[..., 0::2, 0::2], image[..., 1::2, 0::2]),
                         torch.maximum(image[..., 0::2, 1::2], image[..., 1::2, 1::2]))


class TaskModel(nn.Module):
    """A trainable model of `spec`: its parameters, and `compute_logits` as forward."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        for name, shape in _parameter_shapes(spec):
            self.register_parameter(name, nn.Parameter(torch.zeros(shape, dtype=torch.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return compute_logits(self.spec, dict(self.named_parameters()), x)


def build_model(spec: ModelSpec, seed: int) -> TaskModel:
    """A fresh model of `spec`, its parameters drawn deterministically from `seed`.

    Every parameter is uniform in +-1/sqrt(fan_in) (torch's default bound for
    linear and conv layers), drawn in name order from a private generator.
    """
    model = TaskModel(spec)
    shapes = parameter_shapes(spec)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in sorted(model.named_parameters()):
            layer = name.rsplit("_", 1)[0]
            fan_in = math.prod(shapes[layer + "_weight"][1:])
            bound = 1.0 / math.sqrt(fan_in)
            values = torch.rand(parameter.shape, generator=generator, dtype=torch.float64)
            parameter.copy_((values * 2 - 1) * bound)
    return model


def state_of(model: TaskModel) -> dict[str, torch.Tensor]:
    """A detached copy of the model's parameters, by name."""
    return {name: parameter.detach().clone() for name, parameter in sorted(model.named_parameters())}


def load_state(model: TaskModel, tensors: Mapping[str, torch.Tensor]) -> None:
    """Copy `tensors` into `model`; names, shapes and dtypes must match the spec exactly."""
    check_weights(model.spec, tensors)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.copy_(tensors[name])


def check_weights(spec: ModelSpec, tensors: Mapping[str, torch.Tensor]) -> None:
    """Raise `ModelError` unless `tensors` are exactly the float32 parameters of `spec`."""
    expected = parameter_shapes(spec)
    if set(tensors) != set(expected):
        missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
        raise ModelError(f"weights do not fit {spec.architecture}: missing {missing}, unexpected {extra}",
                         code="model_names_mismatch")
    for name, shape in expected.items():
        tensor = tensors[name]
        if tuple(tensor.shape) != shape:
            raise ModelError(f"parameter {name!r} has shape {tuple(tensor.shape)}, the spec needs {shape}",
                             code="model_shape_mismatch")
        if tensor.dtype != torch.float32:
            raise ModelError(f"parameter {name!r} is {tensor.dtype}; model weights are float32",
                             code="model_dtype")

