"""The training config: the paper's defaults and the impossible combinations refused up front."""

from __future__ import annotations

import pytest

from tests.training.conftest import ROOT
from training.config import PAPER_MIX_HQ_CATEGORIES, Config, ConfigError, check_config, load_config

PAPER = ROOT / "training" / "configs" / "paper.toml"
FILLED = ["model.svd_path='/models/svd'", "data.sources=[{name='dam', kind='drag_a_move', path='/d', weight=0.3},"
          " {name='hq', kind='cached', path='/c', categories={Human-Shape=0.25, Animals=0.25, Daily-Used=0.05,"
          " other=0.15}}]"]


def test_paper_config_holds_the_papers_settings():
    config = load_config(PAPER, FILLED)
    t, o = config.train, config.optim
    assert (t.max_steps, t.global_batch_size, o.learning_rate, t.ema_decay) == (12_500, 64, 1e-5, 0.9999)
    assert (t.p_mean, t.p_std, t.drag_dropout) == (0.7, 1.6, 0.1)
    assert config.model.gradient_checkpointing and t.mixed_precision == "bf16"
    assert (config.data.num_frames, config.data.max_drags) == (14, 5)
    # the defaults without any file are the paper's too, data mix included
    defaults = Config()
    assert defaults.data.sources[0].weight == 0.30
    assert defaults.data.sources[1].categories == PAPER_MIX_HQ_CATEGORIES
    assert config.gradient_accumulation_steps(num_processes=8) == 2  # 64 = 4 per device x 8 x 2


def test_paper_config_without_paths_says_what_is_missing():
    with pytest.raises(ConfigError) as info:
        load_config(PAPER)
    message = str(info.value)
    assert "model.svd_path" in message and "path is empty" in message


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (["train.global_batch_size=63"], "multiple of"),
        (["train.drag_dropout=1.5"], "drag_dropout"),
        (["train.ema_decay=1.0"], "ema_decay"),
        (["train.motion_weight=-1.0"], "motion_weight must be >= 0"),
        (["train.residual_scale=-2.0"], "residual_scale must be a finite number >= 0"),
        (["train.mixed_precision='fp8'"], "mixed_precision"),
        (["optim.lr_warmup_steps=20000"], "lr_warmup_steps"),
        (["validation.data=''"], "validation.data"),
        (["model.init='checkpoint'"], "checkpoint_path"),
        (["train.max_step=3"], "unknown key"),
        (["train.max_steps='many'"], "train.max_steps must be a int"),
    ],
)
def test_impossible_combinations_are_refused_before_anything_starts(override, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(PAPER, FILLED + override)


def test_batch_split_is_checked_for_the_real_process_count():
    config = load_config(PAPER, FILLED)
    check_config(config, num_processes=16)  # 64 = 4 x 16
    with pytest.raises(ConfigError, match="processes"):
        check_config(config, num_processes=3)
