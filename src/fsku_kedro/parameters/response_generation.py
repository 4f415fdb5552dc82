"""response_generation: synthetic QA, the prompt set and the preference pairs."""

from __future__ import annotations

from pydantic import Field, NonNegativeInt, PositiveInt

from fsku_kedro.parameters.base import Settings
from fsku_kedro.parameters.generation import BackendSettings, SamplingSettings


class SyntheticQASettings(Settings):
    max_chunks: NonNegativeInt = 4  # chunks the teacher writes items from (seeded choice)
    multiple_choice_share: float = Field(0.8, ge=0.0, le=1.0)  # the rest are descriptive items
    min_judge_score: float = Field(7.0, ge=0.0, le=10.0)  # the seed's quality gate
    max_regenerations: NonNegativeInt = 1  # retries for an item that fails a check, then it is dropped
    near_duplicate_threshold: float = Field(0.8, gt=0.0, le=1.0)  # character-bigram Jaccard between questions
    seed: int = 0
    backend: BackendSettings = BackendSettings()
    writer: SamplingSettings = SamplingSettings(max_new_tokens=128, do_sample=True, temperature=0.7, top_p=0.95)
    judge: SamplingSettings = SamplingSettings(max_new_tokens=8)


class PromptSetSettings(Settings):
    sample_train_share: float = Field(0.5, ge=0.0, le=1.0)  # the sample questions' train split
    # Descriptive questions on the knowledge base's sections (law articles, guide headings), one per
    # section, for the teacher to answer: pair prompts that need no writer (knowledge/corpus_questions.py).
    corpus_descriptive: NonNegativeInt = 0
    validation_share: float = Field(0.2, ge=0.0, lt=1.0)  # seeded split by prompt hash
    seed: int = 0


class DecontaminationSettings(Settings):
    """Training prompts that repeat an evaluation question are dropped (generation/decontamination.py)."""

    ngram: int = Field(8, ge=3)  # characters per n-gram, spaces and punctuation removed
    min_containment: float = Field(0.5, gt=0.0, le=1.0)  # share of the shorter text's n-grams that marks a copy
    min_shared: PositiveInt = 20  # and at least this many n-grams in common
    # An evaluation stem (question without options) found in a prompt with at most this share of its
    # characters edited (at least one edit) marks a copy, whatever template or options surround it.
    stem_max_edit_share: float = Field(0.12, ge=0.0, lt=0.5)
    stem_min_chars: PositiveInt = 12  # shorter stems (normalised characters) are too generic to match alone


class PairSettings(Settings):
    max_total_tokens: PositiveInt = 1024  # prompt + response tokens, the longer side of a pair


class ResponseGenerationSettings(Settings):
    synthetic_qa: SyntheticQASettings = SyntheticQASettings()
    prompt_set: PromptSetSettings = PromptSetSettings()
    decontamination: DecontaminationSettings = DecontaminationSettings()
    pairs: PairSettings = PairSettings()
