"""Answering a question set under a time budget, resumably.

Questions are cut into batches once, from the whole set (descriptive first: each is worth far
more of the score; then multiple choice), longest prompts first so batches waste little padding.
Every finished batch is appended to a progress file, so a killed run restarted skips what is done
and forms the same batches as an uninterrupted run: the answers are the same.

Multiple choice: choice scoring (one forward pass) or generation with answer extraction.
Descriptive: generation with a keyword-first prompt. A batch whose time per question is over the
limit, a model error, an unreadable or empty answer, or a spent budget gives the fallback
(see ``fallback.py``), marked ``used_fallback``: every question always gets a valid answer.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from string import Template
from typing import Any

from tqdm.auto import tqdm

from fsku_kedro.answering.choice_scoring import score_choices
from fsku_kedro.answering.circuit_breaker import CircuitBreaker, scaled_budget
from fsku_kedro.answering.extraction import extract_choice
from fsku_kedro.answering.fallback import extractive_answer, overlap_choice
from fsku_kedro.contracts import CompetitionQuestion, SubmissionRow
from fsku_kedro.generation.backends import GenerationParams, make_backend
from fsku_kedro.generation.store import ResponseStore, fingerprint
from fsku_kedro.models.bundle import ModelBundle

logger = logging.getLogger(__name__)

MC_METHODS = ("choice_scoring", "generate")
TEMPLATES = {
    ("multiple_choice", True): "inference_multiple_choice",
    ("descriptive", True): "inference_descriptive",
    ("multiple_choice", False): "answer_multiple_choice",
    ("descriptive", False): "answer_descriptive",
}


@dataclass(frozen=True)
class Passage:
    chunk_id: str
    score: float
    text: str


@dataclass(frozen=True)
class PreparedQuestion:
    """A parsed question with the passages retrieved for it, best first."""

    question: CompetitionQuestion
    passages: tuple[Passage, ...] = ()

    @property
    def key(self) -> str:
        """Identifies the work: the question as parsed and the evidence it is answered from."""
        parts = [self.question.ID, self.question.Question, self.question.question_type,
                 *(p.chunk_id for p in self.passages)]
        return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:20]


@dataclass(frozen=True)
class AnswerSettings:
    mc_method: str = "choice_scoring"
    batch_size: int = 8
    use_context: bool = True
    max_context_chars: int = 1500
    per_question_s: float = 60.0
    budget_minutes: float = 270.0
    budget_questions: int = 515
    generation: dict[str, Any] = field(default_factory=dict)
    mc_generation: dict[str, Any] = field(default_factory=lambda: {"max_new_tokens": 16})
    fallback_sentences: int = 2
    fallback_chars: int = 300

    def __post_init__(self) -> None:
        if self.mc_method not in MC_METHODS:
            raise ValueError(f"inference.mc_method must be one of {MC_METHODS}, got {self.mc_method!r}")
        if self.batch_size < 1:
            raise ValueError("inference.batch_size must be at least 1")

    @classmethod
    def from_parameters(cls, parameters: dict[str, Any]) -> AnswerSettings:
        """Settings from ``params:inference``; keys it leaves out keep the defaults above."""
        nested = {("time_limit", "per_question_s"): "per_question_s", ("time_limit", "budget_minutes"): "budget_minutes",
                  ("time_limit", "budget_questions"): "budget_questions", ("fallback", "sentences"): "fallback_sentences",
                  ("fallback", "max_chars"): "fallback_chars"}
        given = {name: parameters[name] for name in cls.__dataclass_fields__ if name in parameters}
        given.update({field_name: parameters[group][key] for (group, key), field_name in nested.items()
                      if key in parameters.get(group, {})})
        return cls(**{name: dict(value) if isinstance(value, dict) else value for name, value in given.items()})

    def answer_fingerprint(self) -> dict[str, Any]:
        """What decides an answer (time limits do not: they only decide whether one is kept)."""
        settings = asdict(self)
        for name in ("per_question_s", "budget_minutes", "budget_questions"):
            settings.pop(name)
        return settings


def render_context(passages: tuple[Passage, ...], max_chars: int) -> str:
    """Numbered passages, best first, cut to ``max_chars`` in all."""
    parts, used = [], 0
    for number, passage in enumerate(passages, start=1):
        text = re.sub(r"\s+", " ", passage.text).strip()
        room = max_chars - used
        if room <= 20:
            break
        parts.append(f"[{number}] {text[:room]}")
        used += min(len(text), room)
    return "\n".join(parts)


def build_chat(item: PreparedQuestion, templates: dict[str, str], settings: AnswerSettings,
               with_context: bool | None = None) -> list[dict[str, str]]:
    use_context = settings.use_context if with_context is None else with_context
    name = TEMPLATES[(item.question.question_type, use_context and bool(item.passages))]
    if name not in templates:
        raise KeyError(f"prompt template {name}.txt is missing from the prompt templates folder")
    context = render_context(item.passages, settings.max_context_chars)
    content = Template(templates[name]).substitute(question=item.question.Question.strip(), context=context)
    return [{"role": "user", "content": content}]


def batches(items: list[PreparedQuestion], templates: dict[str, str], settings: AnswerSettings) -> list[list[int]]:
    """Indices of ``items`` in batches: descriptive first, then multiple choice; longest prompts first."""
    groups = []
    for kind in ("descriptive", "multiple_choice"):
        members = [i for i, item in enumerate(items) if item.question.question_type == kind]
        members.sort(key=lambda i: (-len(build_chat(items[i], templates, settings)[0]["content"]), i))
        groups += [members[s : s + settings.batch_size] for s in range(0, len(members), settings.batch_size)]
    return groups


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


class _Answerer:
    def __init__(self, bundle: ModelBundle | None, templates: dict[str, str], settings: AnswerSettings,
                 breaker: CircuitBreaker):
        self.bundle, self.templates, self.settings, self.breaker = bundle, templates, settings, breaker
        self._backend = None

    def backend(self):
        if self._backend is None:
            self._backend = make_backend(self.bundle, self.settings.generation, show_progress=False)
        return self._backend

    def model_answers(self, group: list[PreparedQuestion], deadline: float) -> list[tuple[str | None, float, str]]:
        """(answer or None when unusable, confidence, method) per question."""
        chats = [build_chat(item, self.templates, self.settings) for item in group]
        if group[0].question.question_type == "descriptive":
            params = GenerationParams.from_parameters(self.settings.generation)
            completions = self.backend().generate(chats, params, max_time=deadline)
            return [(_clean(c.text) or None, 1.0 if c.finish_reason == "stop" else 0.5, "generate") for c in completions]
        counts = [len(item.question.choices or {}) for item in group]
        if self.settings.mc_method == "choice_scoring":
            choices = score_choices(self.bundle, chats, counts, batch_size=len(group))
            return [(str(c.number), c.confidence, "choice_scoring") for c in choices]
        params = GenerationParams.from_parameters({**self.settings.generation, **self.settings.mc_generation})
        completions = self.backend().generate(chats, params, max_time=deadline)
        found = [extract_choice(c.text, n) for c, n in zip(completions, counts)]
        return [(str(n) if n else None, 1.0, "generate_extract") for n in found]

    def fallback(self, group: list[PreparedQuestion], use_model: bool) -> list[tuple[str, float, str]]:
        """MC: choice scoring without context (when the model may still be used), else retrieval
        overlap; descriptive: sentences of the top passage."""
        results: list[tuple[str, float, str] | None] = [None] * len(group)
        mc = [i for i, item in enumerate(group) if item.question.question_type == "multiple_choice"]
        if mc and use_model and self.bundle is not None and not self.breaker.is_open():
            start = self.breaker.clock()
            try:
                chats = [build_chat(group[i], self.templates, self.settings, with_context=False) for i in mc]
                choices = score_choices(self.bundle, chats, [len(group[i].question.choices) for i in mc],
                                        batch_size=len(mc))
                for i, choice in zip(mc, choices):
                    results[i] = (str(choice.number), choice.confidence, "fallback_closed_book")
            except Exception as error:  # noqa: BLE001 - any model failure falls through to overlap
                logger.warning("closed-book fallback failed (%s: %s); using retrieval overlap", type(error).__name__, error)
            finally:
                self.breaker.charge(self.breaker.clock() - start)
        for i, item in enumerate(group):
            if results[i] is not None:
                continue
            context = " ".join(p.text for p in item.passages)
            if item.question.question_type == "multiple_choice":
                number, confidence = overlap_choice(item.question.choices, context)
                results[i] = (str(number), confidence, "fallback_overlap")
            else:
                top = item.passages[0].text if item.passages else ""
                text = extractive_answer(item.question.parsed_question, top, self.settings.fallback_sentences,
                                         self.settings.fallback_chars)
                results[i] = (_clean(text) or item.question.parsed_question, 0.0, "fallback_extractive")
        return results  # type: ignore[return-value]

    def answer(self, group: list[PreparedQuestion]) -> list[dict[str, Any]]:
        start = self.breaker.clock()
        reason = ""
        answers: list[tuple[str | None, float, str]] = []
        if self.bundle is None:
            reason = "no_model"
        elif self.breaker.is_open():
            reason = "budget_spent"
        else:
            try:
                answers = self.model_answers(group, self.breaker.deadline(len(group)))
            except Exception as error:  # noqa: BLE001 - a model failure must not cost the answers
                logger.warning("model error on a batch of %d (%s: %s); using fallbacks", len(group),
                               type(error).__name__, error)
                reason = "model_error"
        elapsed = self.breaker.clock() - start
        self.breaker.charge(elapsed)
        if not reason and self.breaker.over_limit(elapsed, len(group)):
            reason = "time_limit"
        if reason:
            answers = [(None, 0.0, "")] * len(group)
        missing = [i for i, (text, _, _) in enumerate(answers) if text is None]
        reasons = {i: reason or ("no_valid_number" if group[i].question.question_type == "multiple_choice"
                                 else "empty_answer") for i in missing}
        fallback_start = self.breaker.clock()
        replacements = dict(zip(missing, self.fallback([group[i] for i in missing],
                                                        use_model=reason not in ("model_error", "no_model", "budget_spent"))))
        fallback_time = self.breaker.clock() - fallback_start
        rows = []
        for i, item in enumerate(group):
            text, confidence, method = replacements.get(i, answers[i])
            share = elapsed / len(group) + (fallback_time / len(missing) if i in replacements else 0.0)
            row = SubmissionRow(ID=item.question.ID, answer=text, confidence=min(max(confidence, 0.0), 1.0),
                                inference_time=share, used_fallback=i in replacements)
            rows.append({**row.model_dump(), "question_type": item.question.question_type, "method": method,
                         "fallback_reason": reasons.get(i, "")})
        return rows


def answer_questions(
    items: list[PreparedQuestion],
    bundle: ModelBundle | None,
    templates: dict[str, str],
    settings: AnswerSettings,
    store: ResponseStore | None = None,
    clock: Callable[[], float] | None = None,
    show_progress: bool = True,
) -> list[dict[str, Any]]:
    """One answer row per item, in input order (fields of ``SubmissionRow`` plus question_type,
    method and fallback_reason). Finished rows found in ``store`` under the same model and settings
    are reused; new batches are appended to it as they finish."""
    run = fingerprint(bundle.name if bundle else "none",
                      {**settings.answer_fingerprint(), "model_path": bundle.path if bundle else None,
                       "templates": {k: v for k, v in sorted(templates.items()) if k in TEMPLATES.values()}})
    done = store.finished(run) if store is not None else {}
    keys = [item.key for item in items]
    spent = sum(float(done[k]["row"]["inference_time"]) for k in set(keys) if k in done)
    breaker = CircuitBreaker(settings.per_question_s,
                             scaled_budget(len(items), settings.budget_minutes, settings.budget_questions), spent)
    if clock is not None:
        breaker.clock = clock
    answerer = _Answerer(bundle, templates, settings, breaker)
    plan = batches(items, templates, settings)
    todo = [group for group in plan if not all(keys[i] in done for i in group)]
    if len(todo) < len(plan):
        logger.info("Resuming: %d of %d batches already answered (%.1f s spent)", len(plan) - len(todo), len(plan), spent)
    for group in tqdm(todo, desc=f"answering ({bundle.name if bundle else 'fallback only'})", disable=not show_progress):
        rows = answerer.answer([items[i] for i in group])
        records = [{"prompt_id": keys[i], "fingerprint": run, "row": row} for i, row in zip(group, rows)]
        if store is not None:
            store.append(records)
        done.update({record["prompt_id"]: record for record in records})
    fallbacks = sum(bool(done[k]["row"]["used_fallback"]) for k in keys)
    if fallbacks:
        logger.warning("%d of %d questions were answered by a fallback", fallbacks, len(items))
    return [dict(done[k]["row"]) for k in keys]
