"""Gradual beta and adaptive alpha."""

import pytest
import torch
from transformers import TrainerControl, TrainerState, TrainingArguments

from fsku_kedro.distillation.schedules import AdaptiveAlpha, gradual_beta


def test_gradual_beta_ramps_linearly_then_holds():
    assert gradual_beta(0, 1.0, None, 10) == 1.0
    assert gradual_beta(5, 1.0, 0.0, 0) == 1.0
    assert [gradual_beta(s, 1.0, 0.2, 4) for s in (0, 2, 4, 9)] == pytest.approx([0.2, 0.6, 1.0, 1.0])


def _step(schedule, step):
    state = TrainerState()
    state.global_step = step
    schedule.on_step_end(TrainingArguments(output_dir="unused", report_to="none"), state, TrainerControl())


def test_adaptive_alpha_anchors_on_early_steps_then_follows_the_gap():
    schedule = AdaptiveAlpha("chosen", base=0.1, anchor_steps=2, min_alpha=0.01)
    assert schedule.alphas(torch.tensor([0.2, 0.4])).tolist() == pytest.approx([0.1, 0.1])
    _step(schedule, 1)
    assert schedule.anchor is None
    schedule.alphas(torch.tensor([0.3, 0.3]))
    _step(schedule, 2)
    assert schedule.anchor == pytest.approx(0.9 * 0.3)  # (1 - base) x mean gap of the anchoring steps
    alphas = schedule.alphas(torch.tensor([0.27, 0.9, 0.28, -0.5]))
    expected = [0.01, 0.1, 1 - 0.27 / (0.28 + 1e-5), 0.1]  # clipped below, clipped above, formula, negative gap
    assert alphas.tolist() == pytest.approx(expected, rel=1e-4)


def test_adaptive_alpha_state_round_trips_for_resume():
    schedule = AdaptiveAlpha("rejected", base=0.2, anchor_steps=1, min_alpha=0.05)
    schedule.alphas(torch.tensor([0.5]))
    _step(schedule, 1)
    restored = AdaptiveAlpha(**schedule.state()["args"])
    for name, value in schedule.state()["attributes"].items():
        setattr(restored, name, value)
    probe = torch.tensor([0.1, 0.6])
    assert restored.alphas(probe).tolist() == schedule.alphas(probe).tolist()
    assert restored.side == "rejected"
