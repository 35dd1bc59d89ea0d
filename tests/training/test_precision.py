"""``train.mixed_precision = "auto"``: bf16 only where the hardware runs it (training/precision.py)."""

from __future__ import annotations

import logging

import pytest
import torch
from accelerate.state import AcceleratorState

from tests.training.conftest import tiny_config
from training.config import ConfigError
from training.precision import PrecisionError, cpu_has_native_bf16, resolve_precision
from training.train import Trainer


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "no")])
def test_auto_on_a_cpu_takes_bf16_only_where_it_is_native(native, expected):
    assert resolve_precision("auto", "cpu", native_cpu_bf16=native) == expected


@pytest.mark.parametrize(("supported", "expected"), [(True, "bf16"), (False, "fp16")])
def test_auto_on_a_gpu_takes_bf16_where_supported_else_fp16(supported, expected):
    assert resolve_precision("auto", "cuda", cuda_bf16=supported) == expected


def test_explicit_bf16_on_an_emulating_cpu_is_kept_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="training.precision"):
        assert resolve_precision("bf16", "cpu", native_cpu_bf16=False) == "bf16"
    assert "emulated" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="training.precision"):
        assert resolve_precision("bf16", "cpu", native_cpu_bf16=True) == "bf16"
    assert caplog.text == ""


def test_fp16_on_a_cpu_and_unknown_names_are_refused():
    with pytest.raises(PrecisionError, match="needs a GPU"):
        resolve_precision("fp16", "cpu", native_cpu_bf16=True)
    with pytest.raises(PrecisionError, match="fp8"):
        resolve_precision("fp8", "cuda")


def test_the_trainer_resolves_auto_for_this_machine(tmp_path, latent_cache):
    if torch.cuda.is_available():
        pytest.skip("checks the CPU branch")
    # accelerate keeps one process-wide state; earlier tests in this process set it to "no",
    # and a CPU with native bf16 resolves "auto" to "bf16"
    AcceleratorState._reset_state(reset_partial_state=True)
    try:
        trainer = Trainer(tiny_config(tmp_path, latent_cache, {"train.mixed_precision": '"auto"'}))
        expected = "bf16" if cpu_has_native_bf16() else "no"
        assert trainer.precision == expected
        assert trainer.accelerator.mixed_precision == expected
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)  # later tests start from "no" again


def test_a_misspelt_precision_is_a_config_error(tmp_path, latent_cache):
    with pytest.raises(ConfigError, match="mixed_precision"):
        tiny_config(tmp_path, latent_cache, {"train.mixed_precision": '"bf61"'})


def test_fp16_on_cpu_is_refused_up_front(tmp_path, latent_cache):
    if torch.cuda.is_available():
        pytest.skip("fp16 is allowed with a GPU")
    with pytest.raises(ConfigError, match="fp16"):
        Trainer(tiny_config(tmp_path, latent_cache, {"train.mixed_precision": '"fp16"'}))
