"""What to measure: frozen, validated, JSON-round-trippable specs and the named model zoo.

Every framework builds its network from a ModelSpec and trains it from a TrainSpec, so the
spec is the single source of truth for "the same network". Nothing here imports a framework.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

FAMILIES = ("rnn", "cnn")
CELL_TYPES = ("lstm", "gru", "rnn")
# Gates per cell type: LSTM i,f,g,o; GRU r,z,n (torch order); plain tanh RNN one.
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
DEVICES = ("cpu", "gpu")
PRECISIONS = ("fp32", "tf32", "bf16")
# The canonical CNN flattens its last feature map in channel-major (C, H, W) order, as torch
# does natively; an NHWC framework permutes its first dense kernel in get/set_weights so the
# canonical weights (and so the results) do not depend on the framework's memory layout.
CNN_FLATTEN_ORDER = "chw"


class SpecError(ValueError):
    """A spec value a user can fix; the CLI prints it as one line and exits 2."""


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise SpecError(msg)


@dataclass(frozen=True)
class ModelSpec:
    """One network. `family` picks which of the two groups of fields apply.

    rnn: `cell` x `layers` x `hidden` (x2 directions if bidirectional), dropout on each
    layer's output sequence (never recurrent, so cuDNN stays usable), readout = last layer's
    final hidden state (bidirectional: forward final ++ backward final) -> dense -> logits.
    cnn: per entry of `conv_channels` a `conv_kernel` SAME conv + ReLU + 2x2 max-pool, then
    optional dense `fc_hidden` + ReLU, dropout, dense -> logits.
    """

    name: str
    family: str = "rnn"
    cell: str = "lstm"
    hidden: int = 128
    layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    forget_bias: float = 1.0  # initial value of the LSTM forget-gate bias (learnable)
    conv_channels: tuple[int, ...] = ()
    conv_kernel: int = 5
    fc_hidden: int = 0
    timesteps: int = 28
    features: int = 28
    classes: int = 10
    flatten_order: str = CNN_FLATTEN_ORDER
    # Tutorial 001's dynamic RNN: each sample runs for its own length (its image with the
    # trailing empty rows cut, bench.data.row_lengths) and is read out at its own last step.
    variable_length: bool = False

    def __post_init__(self) -> None:
        # JSON gives lists; keep the dataclass hashable.
        object.__setattr__(self, "conv_channels", tuple(int(c) for c in self.conv_channels))
        _check(bool(self.name) and isinstance(self.name, str), "model name must be a non-empty string")
        _check(self.family in FAMILIES, f"unknown model family {self.family!r} (choose from {', '.join(FAMILIES)})")
        _check(0.0 <= float(self.dropout) < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        for fld in ("timesteps", "features", "classes"):
            _check(int(getattr(self, fld)) > 0, f"{fld} must be > 0, got {getattr(self, fld)}")
        if self.family == "rnn":
            _check(self.cell in CELL_TYPES, f"unknown cell type {self.cell!r} (choose from {', '.join(CELL_TYPES)})")
            _check(int(self.hidden) > 0, f"hidden must be > 0, got {self.hidden}")
            _check(int(self.layers) > 0, f"layers must be > 0, got {self.layers}")
            _check(not (self.variable_length and self.bidirectional),
                   "variable_length is for one direction (a backward pass would start in the padding)")
        else:
            _check(len(self.conv_channels) > 0, "a cnn needs at least one conv layer")
            _check(all(c > 0 for c in self.conv_channels), f"conv channels must be > 0, got {self.conv_channels}")
            _check(self.conv_kernel > 0 and self.conv_kernel % 2 == 1, f"conv_kernel must be odd and > 0, got {self.conv_kernel}")
            _check(self.fc_hidden >= 0, f"fc_hidden must be >= 0, got {self.fc_hidden}")
            side = self.timesteps
            for _ in self.conv_channels:
                side //= 2
            _check(side > 0, f"{len(self.conv_channels)} pools shrink {self.timesteps}x{self.features} to nothing")
            _check(self.flatten_order == CNN_FLATTEN_ORDER, f"flatten_order must be {CNN_FLATTEN_ORDER!r}")

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["conv_channels"] = list(self.conv_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelSpec":
        return cls(**_known(cls, d))

    def describe(self) -> str:
        if self.family == "cnn":
            convs = "->".join(f"conv{self.conv_kernel}x{self.conv_kernel}x{c}" for c in self.conv_channels)
            fc = f"->fc{self.fc_hidden}" if self.fc_hidden else ""
            return f"CNN {convs}{fc}->fc{self.classes}"
        bi = "bi-" if self.bidirectional else ""
        drop = f", dropout {self.dropout}" if self.dropout else ""
        var = ", variable length" if self.variable_length else ""
        return f"{bi}{self.cell.upper()} {self.layers}x{self.hidden}{drop}{var}"


@dataclass(frozen=True)
class TrainSpec:
    """A training recipe. Adam's hyper-parameters are explicit: framework defaults differ
    (Keras eps is 1e-7, torch/optax 1e-8), so none is ever left to a default."""

    batch_size: int = 128
    steps: int = 300
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    seed: int = 0

    def __post_init__(self) -> None:
        _check(int(self.batch_size) > 0, f"batch size must be > 0, got {self.batch_size}")
        _check(int(self.steps) > 0, f"steps must be > 0, got {self.steps}")
        _check(float(self.lr) > 0, f"learning rate must be > 0, got {self.lr}")
        _check(0.0 <= self.beta1 < 1.0 and 0.0 <= self.beta2 < 1.0, "Adam betas must be in [0, 1)")
        _check(float(self.eps) > 0, f"Adam eps must be > 0, got {self.eps}")
        _check(int(self.seed) >= 0, f"seed must be >= 0, got {self.seed}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainSpec":
        return cls(**_known(cls, d))


@dataclass(frozen=True)
class Protocol:
    """How a cell is timed: warm-up steps (the first one reported as compile_s), then
    `repeats` windows of `steps_per_repeat` steps with a device sync at each boundary."""

    warmup_steps: int = 3
    repeats: int = 5
    steps_per_repeat: int = 10
    infer_repeats: int = 5
    memory_steps: int = 3  # steps of the separate, sampled memory pass
    test_samples: int = 10_000  # accuracy is on the full test set unless a profile says less
    # Time to accuracy (MLPerf style): test accuracy every K training steps, outside the timed
    # region, and the training seconds until it first reaches `target_accuracy` (0 = off).
    eval_every_steps: int = 0
    target_accuracy: float = 0.0

    def __post_init__(self) -> None:
        _check(self.warmup_steps >= 1, "warmup_steps must be >= 1 (the first step is the compile step)")
        _check(self.repeats >= 1 and self.steps_per_repeat >= 1, "repeats and steps_per_repeat must be >= 1")
        _check(self.infer_repeats >= 1, "infer_repeats must be >= 1")
        _check(self.memory_steps >= 0, "memory_steps must be >= 0")
        _check(1 <= self.test_samples <= 10_000, "test_samples must be in 1..10000")
        _check(self.eval_every_steps >= 0, "eval_every_steps must be >= 0")
        _check(0.0 <= self.target_accuracy < 1.0, f"target accuracy is a fraction in (0, 1), e.g. 0.97, "
                                                   f"got {self.target_accuracy}")

    @property
    def measured_steps(self) -> int:
        return self.warmup_steps + self.repeats * self.steps_per_repeat

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Protocol":
        return cls(**_known(cls, d))


@dataclass(frozen=True)
class Cell:
    """One measurement: a framework variant training one model on one device."""

    framework: str
    model: ModelSpec
    train: TrainSpec
    device: str = "cpu"
    variant: str = "default"
    precision: str = "fp32"
    threads: int = 0  # 0 = not set by the harness (GPU cells); CPU cells always set it
    protocol: Protocol = field(default_factory=Protocol)
    profile: str = "custom"
    strict: bool = False
    # The named package environment its worker runs in (bench/runner/envs.py); "" = the
    # interpreter the harness runs in. Part of the key: one run may hold a cell in several.
    env: str = ""

    def __post_init__(self) -> None:
        _check(self.device in DEVICES, f"unknown device {self.device!r} (choose from {', '.join(DEVICES)})")
        _check(self.precision in PRECISIONS, f"unknown precision {self.precision!r} (choose from {', '.join(PRECISIONS)})")
        _check(self.threads >= 0, f"threads must be >= 0, got {self.threads}")
        _check(bool(self.framework) and bool(self.variant), "framework and variant must be named")
        _check(not self.env or re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,39}", self.env) is not None,
               f"bad environment name {self.env!r}: letters, digits, _ and - (up to 40)")
        _check(self.train.steps >= self.protocol.measured_steps,
               f"{self.model.name}: {self.train.steps} steps is fewer than the timing protocol needs "
               f"({self.protocol.measured_steps})")

    @property
    def key(self) -> str:
        """Stable join key: what was measured, not when. The digest covers every spec field, so
        two records with the same key trained the same network with the same recipe."""
        body = json.dumps({"m": _digest_view(self.model.to_dict()), "t": self.train.to_dict(),
                           "p": _digest_view(self.protocol.to_dict())}, sort_keys=True)
        digest = hashlib.sha256(body.encode()).hexdigest()[:8]
        return (f"{self.framework}.{self.variant}.{self.model.name}.{self.device}."
                f"b{self.train.batch_size}.{self.precision}.t{self.threads}."
                + (f"{ENV_KEY_MARK}{self.env}." if self.env else "") + digest)

    def to_dict(self) -> dict[str, Any]:
        return {
            "framework": self.framework, "variant": self.variant, "model": self.model.to_dict(),
            "train": self.train.to_dict(), "device": self.device, "precision": self.precision,
            "threads": self.threads, "protocol": self.protocol.to_dict(), "profile": self.profile,
            "strict": self.strict, **({"env": self.env} if self.env else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Cell":
        d = dict(d)
        d["model"] = ModelSpec.from_dict(d["model"])
        d["train"] = TrainSpec.from_dict(d["train"])
        d["protocol"] = Protocol.from_dict(d.get("protocol", {}))
        return cls(**_known(cls, d))


# How a key names its cell's environment ("torch.default.lstm128.cpu.b128.fp32.t2.env=new.1a2b3c4d"):
# bench.decide.compare strips it to join one cell measured in two environments.
ENV_KEY_MARK = "env="


def key_without_env(key: str) -> str:
    return re.sub(rf"\.{re.escape(ENV_KEY_MARK)}[A-Za-z0-9_-]+\.", ".", key)


# Fields added after records were first published, with their defaults: left out of the key's
# digest while at the default, so a baseline recorded before they existed still joins by key.
_LATER_FIELDS: dict[str, Any] = {"variable_length": False, "eval_every_steps": 0, "target_accuracy": 0.0}


def _digest_view(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if not (k in _LATER_FIELDS and v == _LATER_FIELDS[k])}


def _known(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    _check(not unknown, f"{cls.__name__}: unknown field(s) {', '.join(sorted(unknown))}")
    return dict(d)


# ---------------------------------------------------------------------------------------------
# The zoo: named models from the source tutorials (see TUTORIALS.md) plus CNN baselines.
ZOO: dict[str, ModelSpec] = {m.name: m for m in (
    # 004 / 002: one LSTM layer of 128, forget bias 1.
    ModelSpec("lstm128", hidden=128),
    # 001a: one LSTM layer of 512.
    ModelSpec("lstm512", hidden=512),
    # 001b: one bidirectional layer, 512 units per direction (2x512); readout is the backward
    # direction's *final* state (it has seen the whole image), not its output at the last step.
    ModelSpec("bilstm512", hidden=512, bidirectional=True),
    # 000 / 003: three stacked LSTM layers of 256 with output dropout 0.5.
    ModelSpec("lstm3x256", hidden=256, layers=3, dropout=0.5),
    # The other two recurrent cells, same size as the smallest LSTM.
    ModelSpec("gru128", cell="gru", hidden=128),
    ModelSpec("rnn128", cell="rnn", hidden=128),
    # 001c's dynamic RNN on MNIST: lstm128 where each image ends at its last non-empty row
    # (lengths 18..28, mean 24.5 on the test set) and is read out there.
    ModelSpec("lstm128_varlen", hidden=128, variable_length=True),
    # Classic 2-conv tutorial CNN: conv5x5x32 -> pool -> conv5x5x64 -> pool -> fc1024 -> dropout -> fc10.
    ModelSpec("cnn_tutorial", family="cnn", conv_channels=(32, 64), conv_kernel=5, fc_hidden=1024, dropout=0.5),
    # A small CNN (35,234 params) for the memory comparison at the other end of the scale.
    ModelSpec("cnn_small", family="cnn", conv_channels=(8, 16), conv_kernel=5, fc_hidden=40),
)}

# Models `run --all` covers; gru128/rnn128 are in the zoo for those who ask for them.
DEFAULT_MODELS = ("lstm128", "lstm512", "bilstm512", "lstm3x256", "cnn_tutorial", "cnn_small")


def get_model(name: str) -> ModelSpec:
    if name not in ZOO:
        raise SpecError(f"unknown model {name!r} (choose from {', '.join(ZOO)})")
    return ZOO[name]


# ---------------------------------------------------------------------------------------------
# Profiles: how long each model trains and how it is timed. `quick` is sized for this repo's
# 2-core CPU machine (the whole `run --all` in minutes); `full` is the tutorials' recipes.
@dataclass(frozen=True)
class ProfileEntry:
    batch_size: int
    steps: int
    protocol: Protocol


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    entries: dict[str, ProfileEntry]
    fallback: ProfileEntry
    batch_sizes: tuple[int, ...] = ()  # a sweep: every model at each of these (overrides the entries')

    def entry(self, model: str) -> ProfileEntry:
        return self.entries.get(model, self.fallback)


def _p(warm: int, rep: int, n: int, test: int = 10_000, infer: int = 5, memory: int = 3) -> Protocol:
    return Protocol(warmup_steps=warm, repeats=rep, steps_per_repeat=n, infer_repeats=infer, test_samples=test,
                    memory_steps=memory)


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        "smoke", "seconds per cell, for tests: 12 steps at batch 32, 1,000 test images",
        {}, ProfileEntry(32, 12, _p(2, 3, 3, test=1000, infer=3)),
    ),
    # Every quick model trains at batch 128, so the RNN-vs-CNN verdict compares like with like.
    "quick": Profile(
        "quick", "minutes for the whole zoo on a 2-core CPU: fixed short training per model at batch 128, full test set",
        {
            "lstm128": ProfileEntry(128, 300, _p(5, 5, 40)),
            "lstm512": ProfileEntry(128, 40, _p(3, 5, 6)),
            "bilstm512": ProfileEntry(128, 30, _p(3, 5, 5)),
            "lstm3x256": ProfileEntry(128, 40, _p(3, 5, 6)),
            "gru128": ProfileEntry(128, 300, _p(5, 5, 40)),
            "rnn128": ProfileEntry(128, 300, _p(5, 5, 40)),
            "lstm128_varlen": ProfileEntry(128, 300, _p(5, 5, 40)),
            "cnn_tutorial": ProfileEntry(128, 60, _p(3, 5, 8)),
            "cnn_small": ProfileEntry(128, 200, _p(5, 5, 30)),
        },
        ProfileEntry(128, 100, _p(3, 5, 10)),
    ),
    # For `bench check`: the unit of independence is the process, so a check buys its power
    # with many short processes (rounds), not long ones. Each trains only what it times
    # (warm-up + 6 x N steps), scores 2,000 test images and samples memory for 2 steps.
    "ci": Profile(
        "ci", "for bench check: short processes (warm-up + 6 timed repeats, 2,000 test images), run in many rounds",
        {
            "lstm128": ProfileEntry(128, 3 + 6 * 10, _p(3, 6, 10, test=2000)),
            "lstm512": ProfileEntry(128, 2 + 6 * 2, _p(2, 6, 2, test=2000)),
            "bilstm512": ProfileEntry(128, 2 + 6 * 1, _p(2, 6, 1, test=2000)),
            "lstm3x256": ProfileEntry(128, 2 + 6 * 2, _p(2, 6, 2, test=2000)),
            "gru128": ProfileEntry(128, 3 + 6 * 10, _p(3, 6, 10, test=2000)),
            "rnn128": ProfileEntry(128, 3 + 6 * 10, _p(3, 6, 10, test=2000)),
            "lstm128_varlen": ProfileEntry(128, 3 + 6 * 10, _p(3, 6, 10, test=2000)),
            "cnn_tutorial": ProfileEntry(128, 2 + 6 * 3, _p(2, 6, 3, test=2000)),
            "cnn_small": ProfileEntry(128, 3 + 6 * 8, _p(3, 6, 8, test=2000)),
        },
        ProfileEntry(128, 3 + 6 * 5, _p(3, 6, 5, test=2000)),
    ),
    # The RNN-vs-CNN memory claim is about scaling with the batch: a short recipe (what timing
    # and the memory pass need, nothing for accuracy) at each batch size of a sweep.
    "claim": Profile(
        "claim", "the memory claim across batch sizes 16, 64, 256, 1024: 8 steps per cell, 1,000 test images",
        {}, ProfileEntry(128, 8, _p(2, 3, 2, test=1000, infer=2, memory=2)), batch_sizes=(16, 64, 256, 1024),
    ),
    "full": Profile(
        "full", "the tutorials' recipes (batch 128 x 800 steps for lstm128, batch 100 x 2000 for lstm3x256, ...)",
        {
            "lstm128": ProfileEntry(128, 800, _p(10, 10, 50)),
            "lstm512": ProfileEntry(128, 782, _p(10, 10, 50)),  # 100,000 samples (001a)
            "bilstm512": ProfileEntry(128, 782, _p(10, 10, 50)),
            "lstm3x256": ProfileEntry(100, 2000, _p(10, 10, 50)),
            "gru128": ProfileEntry(128, 800, _p(10, 10, 50)),
            "rnn128": ProfileEntry(128, 800, _p(10, 10, 50)),
            "lstm128_varlen": ProfileEntry(128, 800, _p(10, 10, 50)),
            "cnn_tutorial": ProfileEntry(128, 800, _p(10, 10, 50)),
            "cnn_small": ProfileEntry(128, 800, _p(10, 10, 50)),
        },
        ProfileEntry(128, 800, _p(10, 10, 50)),
    ),
}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise SpecError(f"unknown profile {name!r} (choose from {', '.join(PROFILES)})")
    return PROFILES[name]
