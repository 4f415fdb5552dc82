"""inference: how the questions of a test.csv are answered, under which limits."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from fsku_kedro.names import DtypeName
from fsku_kedro.parameters.base import Settings
from fsku_kedro.parameters.generation import GenerationSettings, SamplingSettings


class TimeLimitSettings(Settings):
    per_question_s: PositiveFloat = 60.0  # a batch slower than this per question gets fallbacks
    budget_minutes: NonNegativeFloat = 270.0  # the competition's budget (0: fallbacks only) ...
    budget_questions: PositiveInt = 515  # ... for this many questions, scaled to the set's size


class FallbackSettings(Settings):
    sentences: PositiveInt = 2  # extractive descriptive answer from the top passage
    max_chars: PositiveInt = 300
    # A generated descriptive answer is replaced by the fallback when it is not text: fewer distinct
    # characters than this, a loop on a unit of at most max_repeated_unit characters, or no Hangul
    # at all for a Korean question.
    min_distinct_characters: PositiveInt = 5
    max_repeated_unit: PositiveInt = 8


class DebiasSettings(Settings):
    """Correction of the model's preference for option positions (``answering/debias.py``)."""

    method: Literal["none", "pride", "cyclic"] = "none"  # pride: prior from a few questions; cyclic: n passes each
    estimation_questions: PositiveInt = 20  # pride: questions scored under every rotation to estimate the prior
    seed: int = 0


class BenchmarkSliceSettings(Settings):
    """A fixed seeded slice of the FSKU benchmark on CPU; None = every question, 0 = none of that kind."""

    mc_limit: NonNegativeInt | None = 50
    descriptive_limit: NonNegativeInt | None = 5
    seed: int = 0


class InferenceSettings(Settings):
    dtype: DtypeName = "auto"  # compute dtype; auto follows the hardware (models/compute_dtype.py)
    trust_remote_code: bool = False
    mc_method: Literal["choice_scoring", "generate"] = "choice_scoring"  # generate: generation, then extraction
    batch_size: PositiveInt = 8
    use_context: bool = True  # False: closed-book prompts
    max_context_chars: PositiveInt = 400  # retrieved text per prompt (SmolLM2: about 2 tokens per Korean character)
    generation: GenerationSettings = GenerationSettings(max_new_tokens=96)  # descriptive answers
    mc_generation: SamplingSettings = SamplingSettings(max_new_tokens=16)  # multiple choice with mc_method generate
    # How mc_method generate reads the number: patterns (answering/extraction.py), or first_number, the
    # FSKU benchmark's own rule (the first number after the last "정답:"; none readable: a fallback).
    mc_extraction: Literal["patterns", "first_number"] = "patterns"
    debias: DebiasSettings = DebiasSettings()  # choice scoring only
    time_limit: TimeLimitSettings = TimeLimitSettings()
    fallback: FallbackSettings = FallbackSettings()
    fsku_benchmark: BenchmarkSliceSettings = BenchmarkSliceSettings()
    # The run fails when a larger share of the questions is answered by a fallback; None: no limit.
    max_fallback_share: float | None = Field(None, ge=0.0, le=1.0)
