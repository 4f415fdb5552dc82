"""The project's data contracts: one typed definition per record (architecture section 3).

Records are validated where data enters the project (files a user supplies, or tables read
back from disk). ``validate_records`` turns every problem into a ``DataContractError`` that
names the file, the row and the field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fsku_kedro.errors import UserInputError

QuestionType = Literal["multiple_choice", "descriptive"]
ChunkType = Literal["title", "body", "table", "article"]


def split_keywords(value: Any) -> Any:
    """Keywords written ``a; b; c`` as a list; a missing value (None, NaN) as none; a list as it is."""
    if value is None or (isinstance(value, float) and value != value):
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(";") if part.strip()]
    return value


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DocumentChunk(_Record):
    """A retrievable unit of the knowledge base."""

    chunk_id: str = Field(min_length=1)
    doc_id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    domain: str
    title: str
    section: str
    chunk_type: ChunkType
    content: str = Field(min_length=1)
    normalized_content: str = Field(min_length=1)
    token_count: int = Field(ge=1)
    quality_score: float = Field(ge=0.0, le=1.0)
    content_hash: str = Field(min_length=1)
    embedding: list[float] | None = None


class SyntheticQAPair(_Record):
    """A generated question with its reference answer, linked to the chunks it came from."""

    qa_id: str = Field(min_length=1)
    question_type: QuestionType
    question: str = Field(min_length=1)
    answer: str = Field(min_length=1)
    choices: dict[str, str] | None = None
    keywords: list[str] = Field(default_factory=list)
    context_chunk_ids: list[str] = Field(min_length=1)
    teacher_model: str
    overall_quality_score: float = Field(ge=0.0, le=10.0)
    difficulty_level: str = "medium"
    student_loss: float | None = None

    @model_validator(mode="after")
    def _answer_is_an_option(self) -> SyntheticQAPair:
        if self.question_type == "multiple_choice":
            if not self.choices:
                raise ValueError("a multiple-choice item needs choices")
            if self.answer not in self.choices:
                raise ValueError(f"answer {self.answer!r} is not one of the options {sorted(self.choices)}")
        return self


class CompetitionQuestion(_Record):
    """One row of a competition ``test.csv`` after parsing."""

    ID: str = Field(min_length=1)
    Question: str = Field(min_length=1)
    question_type: QuestionType
    parsed_question: str
    choices: dict[str, str] | None = None

    @field_validator("choices")
    @classmethod
    def _options_are_numbered_from_one(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None:
            expected = [str(i) for i in range(1, len(value) + 1)]
            if list(value) != expected:
                raise ValueError(f"options must be numbered 1..{len(value)}, got {list(value)}")
        return value


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk as the answering prompt reads it, from retrieval (knowledge/passages.py) on."""

    chunk_id: str
    score: float
    text: str


class SubmissionRow(_Record):
    """One answered question, with how it was answered: the record from the answering loop to
    ``submission_rows``."""

    ID: str = Field(min_length=1)
    answer: str = Field(min_length=1)
    # Measured (an option probability, or exp of the mean token log-probability) or empty, never set.
    confidence: float | None = Field(None, ge=0.0, le=1.0)
    inference_time: float = Field(ge=0.0)
    used_fallback: bool
    question_type: QuestionType
    method: str = Field(min_length=1)  # choice_scoring, generate, generate_extract, fallback_*
    fallback_reason: str = ""  # why a fallback answered (time_limit, model_error, ...), else empty
    # Choice scoring: each option's probability in the order the question showed them (after debiasing).
    option_probabilities: list[float] | None = None


class LabelledAnswer(_Record):
    """The reference for one question: answer and keywords; for the sample set also the supporting
    document and evidence span (used to find the supporting chunk)."""

    ID: str = Field(min_length=1)
    question_type: QuestionType
    answer: str = Field(min_length=1)
    keywords: list[str] = Field(default_factory=list)
    source: str = ""
    evidence: str = ""
    domain: str = "unknown"

    @field_validator("keywords", mode="before")
    @classmethod
    def _split_keywords(cls, value: Any) -> Any:
        return split_keywords(value)


class DataContractError(UserInputError):
    """Input that breaks a data contract; the message names file, row and problem."""


RecordT = TypeVar("RecordT", bound=_Record)


def validate_records(
    rows: Iterable[Mapping[str, Any]],
    model: type[RecordT],
    source: str,
    first_row_number: int = 1,
) -> list[RecordT]:
    """Validate ``rows`` against ``model``; raise one error that lists every bad row.

    ``first_row_number`` is the number the first row has in the user's file (2 for a CSV whose
    first line is its header), so messages point at the line the user sees.
    """
    records: list[RecordT] = []
    problems: list[str] = []
    for offset, row in enumerate(rows):
        try:
            records.append(model.model_validate(dict(row)))
        except ValidationError as error:
            for item in error.errors():
                field = ".".join(str(part) for part in item["loc"]) or "<row>"
                problems.append(f"{source}: row {first_row_number + offset}: {field}: {item['msg']}")
    if problems:
        shown = "\n".join(problems[:20])
        more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise DataContractError(f"{len(problems)} problem(s) in {model.__name__} records:\n{shown}{more}")
    return records
