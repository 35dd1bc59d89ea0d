"""The training configuration: typed sections read from a TOML file, checked before anything starts.

Every field has the paper's default (Appendix C of the Puppet-Master paper); ``configs/paper.toml``
spells them out and ``configs/tiny.toml`` is the CPU test configuration. Unknown keys are errors
(a typo must not silently fall back to a default). ``--set section.key=value`` overrides a field.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.precision import CHOICES as PRECISION_CHOICES

#: the paper's data mix (Appendix C)
PAPER_MIX_DRAG_A_MOVE = 0.30
PAPER_MIX_HQ_CATEGORIES = {"Human-Shape": 0.25, "Animals": 0.25, "Daily-Used": 0.05, "other": 0.15}

INIT_CHOICES = ("svd", "checkpoint", "config")
SOURCE_KINDS = ("drag_a_move", "cached")
LR_SCHEDULES = ("constant", "cosine", "linear")


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the fields that disagree."""


@dataclass
class ModelConfig:
    #: "svd": build from a local SVD folder (PuppetMasterUNet.from_svd); "checkpoint": a
    #: PuppetMasterUNet folder (e.g. the released model converted by ``puppet-master convert``);
    #: "config": random weights from ``unet_config`` (tests and benchmarks)
    init: str = "svd"
    svd_path: str = ""
    checkpoint_path: str = ""
    unet_config: dict[str, Any] = field(default_factory=dict)
    gradient_checkpointing: bool = True


@dataclass
class SourceConfig:
    name: str = ""
    #: "drag_a_move": a folder of Drag-a-Move pickles; "cached": the output of cache_latents.py
    kind: str = "cached"
    path: str = ""
    #: share of the whole mix; ignored when ``categories`` is given
    weight: float = 0.0
    #: share of the whole mix per category; "other" takes every category not named
    categories: dict[str, float] = field(default_factory=dict)
    #: optional JSON {asset_id: category}; else the category recorded in the cache, else "other"
    category_file: str = ""


def _paper_sources() -> list[SourceConfig]:
    return [
        SourceConfig(name="drag-a-move", kind="drag_a_move", path="", weight=PAPER_MIX_DRAG_A_MOVE),
        SourceConfig(
            name="objaverse-animation-hq", kind="cached", path="", categories=dict(PAPER_MIX_HQ_CATEGORIES)
        ),
    ]


@dataclass
class DataConfig:
    sources: list[SourceConfig] = field(default_factory=_paper_sources)
    num_frames: int = 14
    max_drags: int = 5
    #: per-device micro-batch
    batch_size: int = 1
    num_workers: int = 2
    #: keep a random non-empty subset of the drags of a sample (else all of them)
    random_drag_subset: bool = True
    #: drop clips that appear twice (same clip id in several sources or folders)
    deduplicate: bool = True
    #: a configured source or category with no clips: "error" or "renormalise" the other weights
    empty_bucket: str = "error"


@dataclass
class OptimConfig:
    learning_rate: float = 1e-5
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    lr_schedule: str = "constant"
    lr_warmup_steps: int = 0


@dataclass
class TrainConfig:
    max_steps: int = 12_500
    #: samples per optimiser step over all processes (64 in the paper)
    global_batch_size: int = 64
    mixed_precision: str = "bf16"
    drag_dropout: float = 0.1
    #: probability of zeroing image latent, CLIP embedding and drags together (the guidance's
    #: unconditional input); 0 in the spec, needed when the U-Net is trained from scratch
    cond_dropout: float = 0.0
    #: extra loss weight on latent cells that change over the clip (0 in the spec: every cell alike);
    #: see training/objective.py
    motion_weight: float = 0.0
    #: 0 (the spec): denoise the video latents. k > 0: denoise k * (latents - first-frame latent), so a
    #: U-Net trained from scratch need not learn to copy the still frame (puppet_master/edm.py)
    residual_scale: float = 0.0
    #: 0: train on whole latents. s > 0: a share ``crop_probability`` of the steps trains on s x s
    #: latent windows around a drag, a fraction of the compute per sample (training/crops.py)
    crop_size: int = 0
    crop_probability: float = 0.0
    ema_decay: float = 0.9999
    p_mean: float = 0.7
    p_std: float = 1.6
    checkpoint_every: int = 500
    checkpoints_total_limit: int = 3
    #: "" (start fresh), "latest" (the newest complete checkpoint in output_dir) or a checkpoint folder
    resume: str = ""
    log_every: int = 10
    #: wall-clock budget of one run in minutes (0: none): the run checkpoints and stops when it is
    #: spent, and the same command resumes it
    max_minutes: float = 0.0


@dataclass
class ValidationConfig:
    #: optimiser steps between validation GIFs (0: never)
    every: int = 500
    #: a folder of Drag-a-Move-format clips whose first frames and drags are used
    data: str = ""
    num_clips: int = 2
    num_inference_steps: int = 25
    #: SVD folder for the VAE and image encoder (defaults to model.svd_path); tiny random ones when
    #: the model is built from ``unet_config``
    svd_path: str = ""


@dataclass
class Config:
    seed: int = 0
    output_dir: str = "runs/puppet-master"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def gradient_accumulation_steps(self, num_processes: int) -> int:
        per_step = self.data.batch_size * num_processes
        if self.train.global_batch_size % per_step:
            raise ConfigError(
                f"train.global_batch_size ({self.train.global_batch_size}) must be a multiple of "
                f"data.batch_size ({self.data.batch_size}) x processes ({num_processes}) = {per_step}"
            )
        return self.train.global_batch_size // per_step


def _build(cls, data: Any, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'} must be a table, got {type(data).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"unknown key(s) in {where or 'config'}: {', '.join(unknown)}")
    values = {}
    for name, value in data.items():
        sub = f"{where}.{name}" if where else name
        default = getattr(cls(), name)
        if dataclasses.is_dataclass(default):
            values[name] = _build(type(default), value, sub)
        elif name == "sources":
            if not isinstance(value, list):
                raise ConfigError(f"{sub} must be an array of tables ([[data.sources]])")
            values[name] = [_build(SourceConfig, v, f"{sub}[{i}]") for i, v in enumerate(value)]
        else:
            values[name] = _coerce(value, default, sub)
    return cls(**values)


def _coerce(value: Any, default: Any, where: str) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if default is not None and not isinstance(value, type(default)):
        raise ConfigError(f"{where} must be a {type(default).__name__}, got {value!r}")
    return value


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare string
    return key.strip().split("."), value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a TOML config (or the defaults when ``path`` is None), apply overrides, and check it."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    for text in overrides or []:
        keys, value = _parse_override(text)
        node = data
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {key} is not a section")
        node[keys[-1]] = value
    config = _build(Config, data, "")
    check_config(config)
    return config


def check_config(config: Config, num_processes: int = 1) -> None:
    """Raise ConfigError for every impossible combination, before any model or data is loaded."""
    problems: list[str] = []
    m, d, o, t, v = config.model, config.data, config.optim, config.train, config.validation
    if m.init not in INIT_CHOICES:
        problems.append(f"model.init must be one of {INIT_CHOICES}, got {m.init!r}")
    if m.init == "svd" and not m.svd_path:
        problems.append("model.init = 'svd' needs model.svd_path (a local SVD folder in diffusers layout)")
    if m.init == "checkpoint" and not m.checkpoint_path:
        problems.append("model.init = 'checkpoint' needs model.checkpoint_path")
    if m.init == "config" and not m.unet_config:
        problems.append("model.init = 'config' needs a [model.unet_config] table")
    if not d.sources:
        problems.append("data.sources is empty: configure at least one [[data.sources]]")
    names = [s.name for s in d.sources]
    if len(set(names)) != len(names):
        problems.append(f"data.sources names must be unique, got {names}")
    for i, s in enumerate(d.sources):
        where = f"data.sources[{i}] ({s.name or 'unnamed'})"
        if s.kind not in SOURCE_KINDS:
            problems.append(f"{where}.kind must be one of {SOURCE_KINDS}, got {s.kind!r}")
        if not s.path:
            problems.append(f"{where}.path is empty")
        weights = list(s.categories.values()) if s.categories else [s.weight]
        if any(w < 0 for w in weights):
            problems.append(f"{where} has a negative weight")
        if s.categories and s.weight:
            problems.append(f"{where}: give either weight or categories, not both")
    total = sum(sum(s.categories.values()) if s.categories else s.weight for s in d.sources)
    if d.sources and total <= 0:
        problems.append("the data mix weights sum to zero")
    if d.empty_bucket not in ("error", "renormalise"):
        problems.append(f"data.empty_bucket must be 'error' or 'renormalise', got {d.empty_bucket!r}")
    if d.num_frames < 2 or d.max_drags < 1 or d.batch_size < 1 or d.num_workers < 0:
        problems.append("data.num_frames >= 2, data.max_drags >= 1, data.batch_size >= 1, data.num_workers >= 0")
    if o.learning_rate <= 0:
        problems.append(f"optim.learning_rate must be positive, got {o.learning_rate}")
    if o.max_grad_norm < 0:
        problems.append("optim.max_grad_norm must be >= 0 (0 disables clipping)")
    if o.lr_schedule not in LR_SCHEDULES:
        problems.append(f"optim.lr_schedule must be one of {LR_SCHEDULES}, got {o.lr_schedule!r}")
    if not 0 <= o.lr_warmup_steps <= t.max_steps:
        problems.append(f"optim.lr_warmup_steps ({o.lr_warmup_steps}) must be within [0, train.max_steps]")
    if t.max_steps < 1:
        problems.append("train.max_steps must be >= 1")
    if not 0 <= t.residual_scale < float("inf"):
        problems.append(f"train.residual_scale must be a finite number >= 0, got {t.residual_scale}")
    if t.motion_weight < 0:
        problems.append(f"train.motion_weight must be >= 0, got {t.motion_weight}")
    if t.crop_size < 0 or not 0 <= t.crop_probability <= 1:
        problems.append(f"train.crop_size must be >= 0 and train.crop_probability in [0, 1], got "
                        f"{t.crop_size} and {t.crop_probability}")
    if t.crop_probability > 0 and not t.crop_size:
        problems.append("train.crop_probability > 0 needs train.crop_size (the window's side in latent cells)")
    if not 0 <= t.cond_dropout < 1:
        problems.append(f"train.cond_dropout must be in [0, 1), got {t.cond_dropout}")
    if t.max_minutes < 0:
        problems.append(f"train.max_minutes must be >= 0 (0: no limit), got {t.max_minutes}")
    if t.mixed_precision not in PRECISION_CHOICES:
        problems.append(f"train.mixed_precision must be one of {PRECISION_CHOICES}, got {t.mixed_precision!r}")
    if not 0 <= t.drag_dropout <= 1:
        problems.append(f"train.drag_dropout must be a probability, got {t.drag_dropout}")
    if not 0 < t.ema_decay < 1:
        problems.append(f"train.ema_decay must be in (0, 1), got {t.ema_decay}")
    if t.p_std <= 0:
        problems.append("train.p_std must be positive")
    if t.checkpoint_every < 1 or t.log_every < 1:
        problems.append("train.checkpoint_every and train.log_every must be >= 1")
    if t.checkpoints_total_limit < 1:
        problems.append("train.checkpoints_total_limit must be >= 1 (exact resume needs the latest one)")
    if v.every < 0:
        problems.append("validation.every must be >= 0")
    if v.every and not v.data:
        problems.append("validation.every > 0 needs validation.data (a folder of Drag-a-Move-format clips)")
    if v.every and m.init != "config" and not (v.svd_path or m.svd_path):
        problems.append("validation needs a VAE and image encoder: set validation.svd_path or model.svd_path")
    if v.every and (v.num_clips < 1 or v.num_inference_steps < 1):
        problems.append("validation.num_clips and validation.num_inference_steps must be >= 1")
    if problems:
        raise ConfigError("invalid training config:\n  - " + "\n  - ".join(problems))
    try:
        config.gradient_accumulation_steps(num_processes)
    except ConfigError as exc:
        raise ConfigError(f"invalid training config:\n  - {exc}") from None
