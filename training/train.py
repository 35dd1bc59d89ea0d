"""Fine-tune Puppet-Master with accelerate (one GPU, several GPUs, several machines).

    python -m training.train --config training/configs/paper.toml --set model.svd_path=/models/svd
    accelerate launch [--multi_gpu --num_processes 8 | --config_file fsdp.yaml] -m training.train --config ...

The launcher decides the distribution (DDP by default; FSDP or DeepSpeed through accelerate's
config); the TOML config decides everything else. See docs/training.md.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from puppet_master.outputs import write_json_atomic
from training import checkpointing, crops, objective
from training.config import Config, ConfigError, check_config, load_config
from training.data import MixtureDataset, StepBatchSampler
from training.ema import EMA
from training.precision import PrecisionError, resolve_precision
from training.tracking import Tracker

logger = logging.getLogger("training")


@dataclass
class TrainResult:
    step: int
    output_dir: Path
    losses: dict[int, float] = field(default_factory=dict)  # step -> loss of that step
    last_checkpoint: Path | None = None


def build_model(config: Config):
    """The U-Net to fine-tune: from SVD, from a Puppet-Master checkpoint, or random from a config."""
    from puppet_master.models.unet import PuppetMasterUNet

    m = config.model
    if m.init == "svd":
        folder = Path(m.svd_path)
        unet_folder = folder / "unet" if (folder / "unet").is_dir() else folder
        if not (unet_folder / "config.json").is_file():
            raise ConfigError(f"model.svd_path {folder}: no unet/config.json (expected SVD img2vid in diffusers layout)")
        return PuppetMasterUNet.from_svd(unet_folder, **m.unet_config)  # unet_config: drag-module overrides
    if m.init == "checkpoint":
        path = Path(m.checkpoint_path)
        if path.is_file():  # the authors' released model.safetensors: architecture from the SVD folder
            from puppet_master import loading

            if not m.svd_path:
                raise ConfigError(f"model.checkpoint_path {path} is a weights file: set model.svd_path for its config")
            try:
                return loading.unet_from_svd_and_checkpoint(m.svd_path, path).train()
            except loading.ModelLoadError as exc:
                raise ConfigError(f"model.checkpoint_path {path}: {exc}") from exc
        unet_folder = path / "unet" if (path / "unet").is_dir() else path
        if not (unet_folder / "config.json").is_file():
            raise ConfigError(
                f"model.checkpoint_path {path}: neither a PuppetMasterUNet folder (config.json) nor a weights file"
            )
        return PuppetMasterUNet.from_pretrained(unet_folder)
    torch.manual_seed(config.seed)
    return PuppetMasterUNet(**m.unet_config)


def build_optimizer(model, config: Config) -> torch.optim.Optimizer:
    o = config.optim
    params = [p for p in model.parameters() if p.requires_grad]
    if o.weight_decay:
        return torch.optim.AdamW(params, lr=o.learning_rate, betas=(o.adam_beta1, o.adam_beta2),
                                 eps=o.adam_epsilon, weight_decay=o.weight_decay)
    return torch.optim.Adam(params, lr=o.learning_rate, betas=(o.adam_beta1, o.adam_beta2), eps=o.adam_epsilon)


def build_scheduler(optimizer, config: Config) -> torch.optim.lr_scheduler.LambdaLR:
    warmup, total, kind = config.optim.lr_warmup_steps, config.train.max_steps, config.optim.lr_schedule

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        if kind == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        if kind == "linear":
            return max(0.0, 1 - progress)
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Trainer:
    """Holds the accelerator, model, optimiser, EMA and data; ``train()`` runs to ``max_steps``."""

    def __init__(self, config: Config):
        from accelerate import Accelerator, PartialState
        from accelerate.utils import DistributedType, parse_flag_from_env

        # 1. accelerator and config checks that need the process count
        self.config = config
        self.output_dir = Path(config.output_dir)
        # without an accelerator, processes started by accelerate launch / torchrun use gloo on the CPU
        cpu = parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available()
        probe = PartialState(cpu=cpu)
        num_processes = probe.num_processes
        check_config(config, num_processes)
        try:
            self.precision = resolve_precision(config.train.mixed_precision, probe.device.type)
        except PrecisionError as e:
            raise ConfigError(str(e)) from e
        self.accumulation = config.gradient_accumulation_steps(num_processes)
        self.accelerator = acc = Accelerator(
            cpu=cpu, mixed_precision=self.precision, gradient_accumulation_steps=self.accumulation
        )
        if acc.device.type == "cuda":  # TF32 matmuls: full-precision weights, Tensor-Core speed
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        self.sharded = acc.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
        self.checkpoint_root = self.output_dir / "checkpoints"
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

        # 2. model, optimiser, LR schedule, EMA
        model = build_model(config)
        if config.model.gradient_checkpointing:
            model.enable_gradient_checkpointing()
        model.train()
        optimizer = build_optimizer(model, config)
        self.scheduler = build_scheduler(optimizer, config)
        self.model, self.optimizer = acc.prepare(model, optimizer)
        self.ema = EMA(acc.unwrap_model(self.model), config.train.ema_decay)

        # 3. data
        self.dataset = MixtureDataset(config.data, seed=config.seed)
        if acc.is_main_process:
            logger.info("data: %s", self.dataset.describe())
        sample_latents = self.dataset[0]["latents"]
        channels = sample_latents.shape[1]
        unet_config = acc.unwrap_model(self.model).config
        if (unet_config.in_channels, unet_config.out_channels) != (2 * channels, channels):
            raise ConfigError(
                f"the data's latents have {channels} channels but the U-Net takes {unet_config.in_channels} and "
                f"gives {unet_config.out_channels}: set model.unet_config.in_channels = {2 * channels} and "
                f"out_channels = {channels} (a VAE of {channels} latent channels made this cache)")
        self._check_crop(sample_latents.shape[-2:], len(unet_config.block_out_channels))

        # 4. resume
        self.step = 0
        resume = checkpointing.resolve_resume(self.checkpoint_root, config.train.resume)
        if resume is not None:
            self._load(resume)
        self.tracker = Tracker(self.output_dir / "logs", start_step=self.step, enabled=acc.is_main_process)
        self.validator = self._make_validator()
        if acc.is_main_process:
            write_json_atomic(self.output_dir / "config.json", config.to_dict())

    # ------------------------------------------------------------------ helpers
    def _check_crop(self, latent_size: tuple[int, int], levels: int) -> None:
        size, factor = self.config.train.crop_size, 2 ** (levels - 1)
        if size and (size > min(latent_size) or size % factor):
            raise ConfigError(
                f"train.crop_size {size} must be at most the latents' {latent_size[0]}x{latent_size[1]} and a "
                f"multiple of {factor} (the U-Net halves the grid {levels - 1} times)")

    def _make_validator(self):
        v = self.config.validation
        if not v.every or not self.accelerator.is_main_process:
            return None
        from training.validation import Validator, load_validation_clips

        clips = load_validation_clips(v.data, v.num_clips)
        return Validator(clips, self.output_dir / "validation", svd_path=v.svd_path or self.config.model.svd_path,
                         tiny=self.config.model.init == "config", num_inference_steps=v.num_inference_steps,
                         seed=self.config.seed, residual_scale=self.config.train.residual_scale)

    def _loader(self) -> DataLoader:
        acc = self.accelerator
        sampler = StepBatchSampler(
            batch_size=self.config.data.batch_size, num_processes=acc.num_processes,
            process_index=acc.process_index, accumulation=self.accumulation,
            start_step=self.step, max_steps=self.config.train.max_steps,
        )
        workers = self.config.data.num_workers
        return DataLoader(self.dataset, batch_sampler=sampler, num_workers=workers,
                          pin_memory=acc.device.type == "cuda", persistent_workers=workers > 0)

    def _load(self, folder: Path) -> None:
        acc = self.accelerator
        state = checkpointing.load_checkpoint(
            folder, model=acc.unwrap_model(self.model), ema=self.ema, optimizer=self.optimizer.optimizer,
            scheduler=self.scheduler, scaler=acc.scaler, process_index=acc.process_index,
            load_sharded=(lambda f: acc.load_state(str(f))) if self.sharded else None,
        )
        self.step = state.step
        if state.samples_seen != self.step * self.config.train.global_batch_size:
            logger.warning(
                "train.global_batch_size changed since %s (%d samples in %d steps): the data order of an "
                "uninterrupted run is not reproduced", folder, state.samples_seen, self.step,
            )
        if acc.is_main_process:
            logger.info("resumed from %s at step %d", folder, self.step)

    def save(self) -> Path:
        acc = self.accelerator
        return checkpointing.save_checkpoint(
            self.checkpoint_root, step=self.step,
            samples_seen=self.step * self.config.train.global_batch_size,
            model=acc.unwrap_model(self.model), ema=self.ema, optimizer=self.optimizer.optimizer,
            scheduler=self.scheduler, scaler=acc.scaler, process_index=acc.process_index,
            is_main=acc.is_main_process, wait=acc.wait_for_everyone,
            total_limit=self.config.train.checkpoints_total_limit,
            extra={"residual_scale": self.config.train.residual_scale},
            save_sharded=(lambda f: acc.save_state(str(f))) if self.sharded else None,
        )

    def validate(self) -> list[Path]:
        acc = self.accelerator
        paths = []
        if self.validator is not None:
            model = acc.unwrap_model(self.model)
            with self.ema.swapped_in(model):
                paths = self.validator.run(model, self.step, acc.device)
        acc.wait_for_everyone()
        return paths

    def _micro_step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        t = self.config.train
        if crops.step_is_cropped(self.config.seed, self.step, t.crop_probability):
            batch = crops.crop_batch(batch, t.crop_size, self.config.seed)
        draws = objective.draw(batch["index"], tuple(batch["latents"].shape[1:]), seed=self.config.seed,
                               p_mean=t.p_mean, p_std=t.p_std, drag_dropout=t.drag_dropout,
                               cond_dropout=t.cond_dropout)
        batch = {k: v.to(self.accelerator.device, non_blocking=True) for k, v in batch.items()}
        return objective.denoising_loss(self.model, batch, draws, motion_weight=t.motion_weight,
                                        residual_scale=t.residual_scale)

    def _out_of_time(self, start: float, minutes: float) -> bool:
        """Whether the budget is spent, decided by the main process so that every process stops together."""
        flag = torch.tensor(float(time.monotonic() - start > minutes * 60), device=self.accelerator.device)
        return bool(self.accelerator.reduce(flag, reduction="sum").item())

    # ------------------------------------------------------------------ loop
    def train(self) -> TrainResult:
        acc, t = self.accelerator, self.config.train
        result = TrainResult(self.step, self.output_dir)
        max_norm = self.config.optim.max_grad_norm or float("inf")
        batches = iter(self._loader())
        start = time.monotonic()
        while self.step < t.max_steps:
            tick = time.monotonic()
            losses = []
            grad_norm = torch.tensor(float("nan"))
            for _ in range(self.accumulation):
                with acc.accumulate(self.model):
                    loss = self._micro_step(next(batches))
                    acc.backward(loss)
                    if acc.sync_gradients:
                        grad_norm = acc.clip_grad_norm_(self.model.parameters(), max_norm)
                        self.optimizer.step()
                        self.optimizer.zero_grad(set_to_none=True)
                losses.append(loss.detach())
            self.scheduler.step()
            self.ema.update(acc.unwrap_model(self.model))
            self.step += 1
            step_loss = acc.reduce(torch.stack(losses).mean(), reduction="mean").item()
            result.losses[self.step] = step_loss
            if not math.isfinite(step_loss):
                raise FloatingPointError(f"loss became {step_loss} at step {self.step}; last checkpoint is kept")
            if self.step % t.log_every == 0 or self.step == t.max_steps:
                elapsed = time.monotonic() - tick
                self.tracker.log({
                    "step": self.step, "samples_seen": self.step * t.global_batch_size, "loss": step_loss,
                    "lr": self.scheduler.get_last_lr()[0], "grad_norm": float(grad_norm),
                    "samples_per_s": t.global_batch_size / max(elapsed, 1e-9),
                    "elapsed_s": time.monotonic() - start,
                })
            if self.step % t.checkpoint_every == 0 or self.step == t.max_steps:
                result.last_checkpoint = self.save()
            every = self.config.validation.every
            if every and self.step % every == 0:
                self.validate()
            if t.max_minutes and self._out_of_time(start, t.max_minutes):
                if result.last_checkpoint is None or self.step % t.checkpoint_every:
                    result.last_checkpoint = self.save()
                if acc.is_main_process:
                    logger.info("train.max_minutes (%g) spent at step %d; the same command resumes", t.max_minutes,
                                self.step)
                break
        result.step = self.step
        self.tracker.close()
        acc.wait_for_everyone()
        return result


def run(config: Config) -> TrainResult:
    return Trainer(config).train()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fine-tune Puppet-Master (see docs/training.md).")
    parser.add_argument("--config", required=True, help="TOML config (training/configs/paper.toml, tiny.toml)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value (TOML syntax), e.g. --set train.max_steps=100")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.set)
        result = run(config)
    except ConfigError as exc:
        parser.exit(2, f"error: {exc}\n")
    except KeyboardInterrupt:
        parser.exit(130, "interrupted: resume with --set train.resume=latest\n")
    print(f"trained to step {result.step}; checkpoint {result.last_checkpoint}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
