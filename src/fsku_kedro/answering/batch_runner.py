"""The batch runner: answers a question set under a time budget, resumably.

Questions are cut into batches once, from the whole set (descriptive first: each is worth far
more of the score; then multiple choice), longest prompts first so batches waste little padding.
Every finished batch is appended to a progress file, so a killed run restarted skips what is done
and forms the same batches as an uninterrupted run: the answers are the same.

Multiple choice: the choice strategy (mc_strategy.py) or generation with answer extraction.
Descriptive: generation with a keyword-first prompt (prompts.py). A batch whose time per question
is over the limit, a model error, an unreadable, empty or degenerate answer (degenerate.py) or a
spent budget gives the fallback policy's answer (fallback_policy.py), marked ``used_fallback``:
every question always gets a valid answer.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from tqdm.auto import tqdm

from fsku_kedro.answering.circuit_breaker import CircuitBreaker, scaled_budget
from fsku_kedro.answering.degenerate import degenerate_reason
from fsku_kedro.answering.extraction import extract_choice, first_number
from fsku_kedro.answering.fallback_policy import (
    MODEL_UNUSABLE,
    PROGRAMMING_ERRORS,
    FallbackPolicy,
    answer_row,
    clean_text,
)
from fsku_kedro.answering.mc_strategy import ChoiceStrategy, estimate_position_prior, kept_prior, prior_store
from fsku_kedro.answering.prompts import TEMPLATES, PreparedQuestion, build_chat
from fsku_kedro.contracts import SubmissionRow
from fsku_kedro.generation.backends import Completion, make_backend
from fsku_kedro.generation.store import ResponseStore, fingerprint
from fsku_kedro.models.bundle import ModelBundle
from fsku_kedro.parameters.inference import InferenceSettings

logger = logging.getLogger(__name__)


def answer_fingerprint(settings: InferenceSettings) -> dict[str, Any]:
    """What decides an answer (time limits do not: they only decide whether one is kept)."""
    return settings.model_dump(include={"mc_method", "batch_size", "use_context", "max_context_chars", "generation",
                                        "mc_generation", "mc_extraction", "fallback", "debias"})


def batches(items: list[PreparedQuestion], templates: dict[str, str], settings: InferenceSettings) -> list[list[int]]:
    """Indices of ``items`` in batches: descriptive first, then multiple choice; longest prompts first."""
    groups = []
    for kind in ("descriptive", "multiple_choice"):
        members = [i for i, item in enumerate(items) if item.question.question_type == kind]
        members.sort(key=lambda i: (-len(build_chat(items[i], templates, settings)[0]["content"]), i))
        groups += [members[s : s + settings.batch_size] for s in range(0, len(members), settings.batch_size)]
    return groups


class BatchAnswerer:
    """Answers one batch: the model's answers where usable, the fallback policy's elsewhere."""

    def __init__(self, bundle: ModelBundle | None, templates: dict[str, str], settings: InferenceSettings,
                 breaker: CircuitBreaker, prior: dict[int, list[float]] | None = None):
        self.bundle, self.templates, self.settings, self.breaker = bundle, templates, settings, breaker
        self.strategy = ChoiceStrategy(bundle, templates, settings, prior) if bundle is not None else None
        self.fallback = FallbackPolicy(settings.fallback, self.strategy, breaker)
        self._backend = None

    def backend(self):
        if self._backend is None:
            self._backend = make_backend(self.bundle, self.settings.generation, show_progress=False)
        return self._backend

    def model_answers(self, group: list[PreparedQuestion], deadline: float) -> list[SubmissionRow | str | None]:
        """The model's answer per question, or why it is unusable (a reason, or None for no valid number)."""
        chats = [build_chat(item, self.templates, self.settings) for item in group]
        if group[0].question.question_type == "descriptive":
            completions = self.backend().generate(chats, self.settings.generation.sampling(), max_time=deadline)
            return [self._descriptive_row(item, c) for item, c in zip(group, completions)]
        if self.settings.mc_method == "choice_scoring":
            choices = self.strategy.choose(group)
            return [answer_row(item, str(chosen.number), chosen.confidence, "choice_scoring",
                               probabilities=chosen.probabilities) for item, chosen in zip(group, choices)]
        completions = self.backend().generate(chats, self.settings.mc_generation, max_time=deadline)
        read = first_number if self.settings.mc_extraction == "first_number" else extract_choice
        found = [read(c.text, len(item.question.choices or {})) for c, item in zip(completions, group)]
        return [answer_row(item, str(n), None, "generate_extract") if n else None for item, n in zip(group, found)]

    def _descriptive_row(self, item: PreparedQuestion, completion: Completion) -> SubmissionRow | str:
        """The answer, or the reason it is not usable; its confidence is the geometric mean of its
        tokens' probabilities (empty when the backend gives none)."""
        text = clean_text(completion.text)
        fallback = self.settings.fallback
        reason = degenerate_reason(item.question.parsed_question, text, fallback.min_distinct_characters,
                                   fallback.max_repeated_unit)
        if reason:
            return reason
        confidence = math.exp(completion.mean_logprob) if completion.mean_logprob is not None else None
        return answer_row(item, text, confidence, "generate")

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
        replacements = dict(zip(missing, self.fallback.answers([group[i] for i in missing], reasons,
                                                               use_model=reason not in MODEL_UNUSABLE)))
        fallback_time = self.breaker.clock() - fallback_start
        rows = []
        for i in range(len(group)):
            row = replacements.get(i) or answers[i]
            share = elapsed / len(group) + (fallback_time / len(missing) if i in replacements else 0.0)
            rows.append(row.model_copy(update={"inference_time": share}))
        return rows


def _position_prior(items: list[PreparedQuestion], bundle: ModelBundle, templates: dict[str, str],
                    settings: InferenceSettings, breaker: CircuitBreaker, store: ResponseStore | None,
                    run: str) -> dict[int, list[float]]:
    """The run's PriDe prior: kept from an earlier start of the same run, or estimated now (its time
    counts against the budget) and kept."""
    priors = prior_store(store)
    prior = kept_prior(priors, run)
    if prior is None:
        start = breaker.clock()
        prior = estimate_position_prior(items, bundle, templates, settings)
        breaker.charge(breaker.clock() - start)
        if priors is not None:
            priors.append([{"prompt_id": "prior", "fingerprint": run, "prior": prior}])
    logger.info("Option-position prior (PriDe): %s", {n: [round(p, 3) for p in shares] for n, shares in prior.items()})
    return prior


def answer_questions(
    items: list[PreparedQuestion],
    bundle: ModelBundle | None,
    templates: dict[str, str],
    settings: InferenceSettings,
    store: ResponseStore | None = None,
    clock: Callable[[], float] | None = None,
    show_progress: bool = True,
    identity: str | None = None,
) -> list[SubmissionRow]:
    """One answer per item, in input order. Finished answers found in ``store`` under the same
    model and settings are reused; new batches are appended to it as they finish. The model is known
    there by its name and folder, or by ``identity`` alone where given (a name that carries its weights)."""
    run = fingerprint(identity or (bundle.name if bundle else "none"),
                      {**answer_fingerprint(settings),
                       "model_path": bundle.path if bundle and not identity else None,
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
        prior = _position_prior(items, bundle, templates, settings, breaker, store, run)
    answerer = BatchAnswerer(bundle, templates, settings, breaker, prior)
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
