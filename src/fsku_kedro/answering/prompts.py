"""The prompt builder: which template a question is answered with, and the chat it becomes.

A question is answered from its passages (retrieval, best first) when ``inference.use_context`` is
on and it has some, closed book otherwise. Multiple choice asks for the option number only (the
answer is scored, not written); descriptive asks for a keyword-first answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from string import Template

from fsku_kedro.contracts import CompetitionQuestion, Passage
from fsku_kedro.hashing import stable_hash
from fsku_kedro.parameters.inference import InferenceSettings

TEMPLATES = {
    ("multiple_choice", True): "inference_multiple_choice",
    ("descriptive", True): "inference_descriptive",
    ("multiple_choice", False): "closed_book_multiple_choice",
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
    """The user turn that asks ``item``'s question (``with_context`` overrides ``settings.use_context``)."""
    use_context = settings.use_context if with_context is None else with_context
    name = TEMPLATES[(item.question.question_type, use_context and bool(item.passages))]
    if name not in templates:
        raise KeyError(f"prompt template {name}.txt is missing from the prompt templates folder")
    context = render_context(item.passages, settings.max_context_chars)
    content = Template(templates[name]).substitute(question=item.question.Question.strip(), context=context)
    return [{"role": "user", "content": content}]
