"""Answering a question set under a time budget, resumably.

Questions are cut into batches once, from the whole set (descriptive first: each is worth far
more of the score; then multiple choice), longest prompts first so batches waste little padding.
Every finished batch is appended to a progress file, so a killed run restarted skips what is done
and forms the same batches as an uninterrupted run: the answers are the same.

Multiple choice: choice scoring (one forward pass) or generation with answer extraction.
Descriptive: generation with a keyword-first prompt. A batch whose time per question is over the
limit, a model error, an unreadable, empty or degenerate answer (see ``degenerate.py``), or a spent
budget gives the fallback
(see ``fallback.py``), marked ``used_fallback``: every question always gets a valid answer.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from string import Template
from typing import Any

from tqdm.auto import tqdm

from fsku_kedro.answering.choice_scoring import score_choices
from fsku_kedro.answering.circuit_breaker import CircuitBreaker, scaled_budget
from fsku_kedro.answering.debias import cyclic_scores, debiased, estimate_prior
from fsku_kedro.answering.degenerate import degenerate_reason
from fsku_kedro.answering.extraction import extract_choice, first_number
from fsku_kedro.answering.fallback import extractive_answer, overlap_choice
from fsku_kedro.contracts import CompetitionQuestion, Passage, SubmissionRow
from fsku_kedro.errors import UserInputError
from fsku_kedro.generation.backends import Completion, make_backend
from fsku_kedro.generation.store import ResponseStore, fingerprint
from fsku_kedro.hashing import stable_hash, unit_hash
from fsku_kedro.models.bundle import ModelBundle
from fsku_kedro.parameters.inference import InferenceSettings

logger = logging.getLogger(__name__)

# Errors of the project's own code: they stop the run. Model and runtime failures (out of memory,
# timeouts, a broken model file: RuntimeError, OSError, ...) fall back with their reason.
PROGRAMMING_ERRORS = (TypeError, AttributeError, KeyError, NameError, AssertionError, NotImplementedError,
                      ImportError)

TEMPLATES = {
    ("multiple_choice", True): "inference_multiple_choice",
    ("descriptive", True): "inference_descriptive",
    ("multiple_choice", False): "closed_book_multiple_choice",  # number only: the answer is scored, not written
    ("descriptive", False): "answer_descriptive",
}


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
        return stable_hash(*parts, length=20)


def answer_fingerprint(settings: InferenceSettings) -> dict[str, Any]:
    """What decides an answer (time limits do not: they only decide whether one is kept)."""
    return settings.model_dump(include={"mc_method", "batch_size", "use_context", "max_context_chars", "generation",
                                        "mc_generation", "mc_extraction", "fallback", "debias"})


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


def build_chat(item: PreparedQuestion, templates: dict[str, str], settings: InferenceSettings,
               with_context: bool | None = None) -> list[dict[str, str]]:
    use_context = settings.use_context if with_context is None else with_context
    name = TEMPLATES[(item.question.question_type, use_context and bool(item.passages))]
    if name not in templates:
        raise KeyError(f"prompt template {name}.txt is missing from the prompt templates folder")
    context = render_context(item.passages, settings.max_context_chars)
    content = Template(templates[name]).substitute(question=item.question.Question.strip(), context=context)
    return [{"role": "user", "content": content}]


def batches(items: list[PreparedQuestion], templates: dict[str, str], settings: InferenceSettings) -> list[list[int]]:
    """Indices of ``items`` in batches: descriptive first, then multiple choice; longest prompts first."""
    groups = []
    for kind in ("descriptive", "multiple_choice"):
        members = [i for i, item in enumerate(items) if item.question.question_type == kind]
        members.sort(key=lambda i: (-len(build_chat(items[i], templates, settings)[0]["content"]), i))
        groups += [members[s : s + settings.batch_size] for s in range(0, len(members), settings.batch_size)]
    return groups


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def option_scorer(bundle: ModelBundle, items: list[PreparedQuestion], templates: dict[str, str],
                  settings: InferenceSettings, with_context: bool | None = None, batch_size: int | None = None):
    """Scores (possibly rotated) versions of ``items``' questions: each gets the passages of the item
    with its ID, and back the probability of each option position."""
    passages = {item.question.ID: item.passages for item in items}

    def score(questions: list[CompetitionQuestion]) -> list[dict[int, float]]:
        chats = [build_chat(PreparedQuestion(q, passages[q.ID]), templates, settings, with_context) for q in questions]
        choices = score_choices(bundle, chats, [len(q.choices or {}) for q in questions],
                                batch_size=batch_size or max(len(items), 1))
        return [choice.probabilities for choice in choices]

    return score


def _best(probabilities: dict[int, float]) -> tuple[int, float]:
    number = max(probabilities, key=lambda n: (probabilities[n], -n))
    return number, probabilities[number]


class _Answerer:
    def __init__(self, bundle: ModelBundle | None, templates: dict[str, str], settings: InferenceSettings,
                 breaker: CircuitBreaker, prior: dict[int, list[float]] | None = None):
        self.bundle, self.templates, self.settings, self.breaker = bundle, templates, settings, breaker
        self.prior = prior or {}
        self._backend = None

    def choose(self, group: list[PreparedQuestion], with_context: bool | None = None,
               cyclic: bool = False) -> list[tuple[int, float]]:
        """(option number, confidence) per question by choice scoring, with the position bias removed
        as ``debias`` says (the prior, or an average over rotations when ``cyclic``)."""
        score = option_scorer(self.bundle, group, self.templates, self.settings, with_context)
        questions = [item.question for item in group]
        if cyclic:
            averaged = cyclic_scores(questions, score)
            return [_best(_softmax(scores)) for scores in averaged]
        return [_best(debiased(p, self.prior)) for p in score(questions)]

    def backend(self):
        if self._backend is None:
            self._backend = make_backend(self.bundle, self.settings.generation, show_progress=False)
        return self._backend

    @staticmethod
    def _row(item: PreparedQuestion, answer: str, confidence: float | None, method: str,
             fallback_reason: str = "") -> SubmissionRow:
        measured = None if confidence is None else min(max(confidence, 0.0), 1.0)
        return SubmissionRow(ID=item.question.ID, answer=answer, confidence=measured,
                             inference_time=0.0, used_fallback=bool(fallback_reason), method=method,
                             question_type=item.question.question_type, fallback_reason=fallback_reason)

    def model_answers(self, group: list[PreparedQuestion], deadline: float) -> list[SubmissionRow | str | None]:
        """The model's answer per question, or why it is unusable (a reason, or None for no valid number)."""
        chats = [build_chat(item, self.templates, self.settings) for item in group]
        if group[0].question.question_type == "descriptive":
            completions = self.backend().generate(chats, self.settings.generation.sampling(), max_time=deadline)
            return [self._descriptive_row(item, c) for item, c in zip(group, completions)]
        counts = [len(item.question.choices or {}) for item in group]
        if self.settings.mc_method == "choice_scoring":
            choices = self.choose(group, cyclic=self.settings.debias.method == "cyclic")
            return [self._row(item, str(n), confidence, "choice_scoring") for item, (n, confidence) in zip(group, choices)]
        completions = self.backend().generate(chats, self.settings.mc_generation, max_time=deadline)
        read = first_number if self.settings.mc_extraction == "first_number" else extract_choice
        found = [read(c.text, n) for c, n in zip(completions, counts)]
        return [self._row(item, str(n), None, "generate_extract") if n else None for item, n in zip(group, found)]

    def _descriptive_row(self, item: PreparedQuestion, completion: Completion) -> SubmissionRow | str:
        """The answer, or the reason it is not usable; its confidence is the geometric mean of its
        tokens' probabilities (empty when the backend gives none)."""
        text = _clean(completion.text)
        fallback = self.settings.fallback
        reason = degenerate_reason(item.question.parsed_question, text, fallback.min_distinct_characters,
                                   fallback.max_repeated_unit)
        if reason:
            return reason
        confidence = math.exp(completion.mean_logprob) if completion.mean_logprob is not None else None
        return self._row(item, text, confidence, "generate")

    def fallback(self, group: list[PreparedQuestion], reasons: list[str], use_model: bool) -> list[SubmissionRow]:
        """MC: choice scoring without context (when the model may still be used), else retrieval
        overlap; descriptive: sentences of the top passage."""
        results: list[SubmissionRow | None] = [None] * len(group)
        mc = [i for i, item in enumerate(group) if item.question.question_type == "multiple_choice"]
        if mc and use_model and self.bundle is not None and not self.breaker.is_open():
            start = self.breaker.clock()
            try:
                choices = self.choose([group[i] for i in mc], with_context=False)
                for i, (number, confidence) in zip(mc, choices):
                    results[i] = self._row(group[i], str(number), confidence, "fallback_closed_book", reasons[i])
            except PROGRAMMING_ERRORS:
                raise
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
                results[i] = self._row(item, str(number), confidence, "fallback_overlap", reasons[i])
            else:
                top = item.passages[0].text if item.passages else ""
                text = extractive_answer(item.question.parsed_question, top, self.settings.fallback.sentences,
                                         self.settings.fallback.max_chars)
                results[i] = self._row(item, _clean(text) or item.question.parsed_question, None,
                                       "fallback_extractive", reasons[i])
        return results  # type: ignore[return-value]

    def answer(self, group: list[PreparedQuestion]) -> list[SubmissionRow]:
        start = self.breaker.clock()
        reason = ""
        answers: list[SubmissionRow | str | None] = [None] * len(group)
        if self.bundle is None:
            reason = "no_model"
        elif self.breaker.is_open():
            reason = "budget_spent"
        else:
            try:
                answers = self.model_answers(group, self.breaker.deadline(len(group)))
            except PROGRAMMING_ERRORS:
                raise  # a defect in the code stops the run with its traceback, not a quiet fallback
            except Exception as error:  # noqa: BLE001 - a model failure must not cost the answers
                logger.warning("model error on a batch of %d (%s: %s); using fallbacks", len(group),
                               type(error).__name__, error)
                reason = "model_error"
        elapsed = self.breaker.clock() - start
        self.breaker.charge(elapsed)
        if not reason and self.breaker.over_limit(elapsed, len(group)):
            reason = "time_limit"
        if reason:
            answers = [None] * len(group)
        missing = [i for i, row in enumerate(answers) if not isinstance(row, SubmissionRow)]
        reasons = [reason or answers[i] or ("no_valid_number" if group[i].question.question_type == "multiple_choice"
                                            else "empty_answer") for i in missing]
        fallback_start = self.breaker.clock()
        replacements = dict(zip(missing, self.fallback([group[i] for i in missing], reasons,
                                                        use_model=reason not in ("model_error", "no_model", "budget_spent"))))
        fallback_time = self.breaker.clock() - fallback_start
        rows = []
        for i in range(len(group)):
            row = replacements.get(i) or answers[i]
            share = elapsed / len(group) + (fallback_time / len(missing) if i in replacements else 0.0)
            rows.append(row.model_copy(update={"inference_time": share}))
        return rows


def prior_store(store: ResponseStore | None) -> ResponseStore | None:
    """Where a run's PriDe prior is kept between runs: its own file beside the answers' progress file
    (``<progress>.prior.jsonl``), one record per run fingerprint."""
    return None if store is None else ResponseStore(store.path.with_name(f"{store.path.stem}.prior.jsonl"))


def fallback_counts(rows: list[SubmissionRow]) -> dict[str, int]:
    """How many answers each fallback reason gave."""
    counts: dict[str, int] = {}
    for row in rows:
        if row.used_fallback:
            counts[row.fallback_reason or "unknown"] = counts.get(row.fallback_reason or "unknown", 0) + 1
    return dict(sorted(counts.items()))


def check_fallback_share(rows: list[SubmissionRow], limit: float | None) -> None:
    """Fail when a larger share than ``limit`` (``inference.max_fallback_share``) of the answers came
    from a fallback; None: no limit."""
    counts = fallback_counts(rows)
    share = sum(counts.values()) / len(rows) if rows else 0.0
    if limit is not None and share > limit:
        reasons = ", ".join(f"{reason} {n}" for reason, n in counts.items())
        raise UserInputError(
            f"{sum(counts.values())} of {len(rows)} questions ({share:.1%}) were answered by a fallback ({reasons}), "
            f"more than inference.max_fallback_share ({limit:.1%}) allows. The answers are kept in the progress "
            "file; see the log for each batch's reason, then fix the cause or raise the limit "
            "(--params inference.max_fallback_share=...)")


def _softmax(scores: dict[int, float]) -> dict[int, float]:
    top = max(scores.values())
    weights = {n: math.exp(v - top) for n, v in scores.items()}
    total = sum(weights.values())
    return {n: w / total for n, w in weights.items()}


def _estimate_prior(items: list[PreparedQuestion], bundle: ModelBundle, templates: dict[str, str],
                    settings: InferenceSettings, breaker: CircuitBreaker) -> dict[int, list[float]]:
    """PriDe's prior over option positions, from a seeded choice of the set's multiple-choice questions
    (their time counts against the budget)."""
    mc = [item for item in items if item.question.question_type == "multiple_choice"]
    chosen = sorted(mc, key=lambda item: unit_hash(settings.debias.seed, "pride", item.question.ID))
    chosen = chosen[: settings.debias.estimation_questions]
    start = breaker.clock()
    score = option_scorer(bundle, chosen, templates, settings, batch_size=settings.batch_size)
    prior = estimate_prior([item.question for item in chosen], score)
    breaker.charge(breaker.clock() - start)
    return prior


def answer_questions(
    items: list[PreparedQuestion],
    bundle: ModelBundle | None,
    templates: dict[str, str],
    settings: InferenceSettings,
    store: ResponseStore | None = None,
    clock: Callable[[], float] | None = None,
    show_progress: bool = True,
) -> list[SubmissionRow]:
    """One answer per item, in input order. Finished answers found in ``store`` under the same
    model and settings are reused; new batches are appended to it as they finish."""
    run = fingerprint(bundle.name if bundle else "none",
                      {**answer_fingerprint(settings), "model_path": bundle.path if bundle else None,
                       "templates": {k: v for k, v in sorted(templates.items()) if k in TEMPLATES.values()}})
    records = store.finished(run) if store is not None else {}
    done = {key: SubmissionRow.model_validate(record["row"]) for key, record in records.items() if "row" in record}
    keys = [item.key for item in items]
    spent = sum(done[k].inference_time for k in set(keys) if k in done)
    limits = settings.time_limit
    breaker = CircuitBreaker(limits.per_question_s,
                             scaled_budget(len(items), limits.budget_minutes, limits.budget_questions), spent)
    if clock is not None:
        breaker.clock = clock
    prior: dict[int, list[float]] = {}
    pending_mc = [item for item, key in zip(items, keys)
                  if key not in done and item.question.question_type == "multiple_choice"]
    if settings.debias.method == "pride" and settings.mc_method == "choice_scoring" and bundle and pending_mc:
        priors = prior_store(store)
        kept = priors.finished(run).get("prior") if priors is not None else None
        if kept:
            prior = {int(count): shares for count, shares in kept["prior"].items()}
        else:
            prior = _estimate_prior(items, bundle, templates, settings, breaker)
            if priors is not None:
                priors.append([{"prompt_id": "prior", "fingerprint": run, "prior": prior}])
        logger.info("Option-position prior (PriDe): %s", {n: [round(p, 3) for p in shares] for n, shares in prior.items()})
    answerer = _Answerer(bundle, templates, settings, breaker, prior)
    plan = batches(items, templates, settings)
    todo = [group for group in plan if not all(keys[i] in done for i in group)]
    if len(todo) < len(plan):
        logger.info("Resuming: %d of %d batches already answered (%.1f s spent)", len(plan) - len(todo), len(plan), spent)
    for group in tqdm(todo, desc=f"answering ({bundle.name if bundle else 'fallback only'})", disable=not show_progress):
        rows = answerer.answer([items[i] for i in group])
        if store is not None:
            store.append([{"prompt_id": keys[i], "fingerprint": run, "row": row.model_dump()}
                          for i, row in zip(group, rows)])
        done.update({keys[i]: row for i, row in zip(group, rows)})
    fallbacks = sum(done[k].used_fallback for k in keys)
    if fallbacks:
        logger.warning("%d of %d questions were answered by a fallback", fallbacks, len(items))
    return [done[k] for k in keys]
