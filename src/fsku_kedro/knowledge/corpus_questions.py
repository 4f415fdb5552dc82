"""Questions made from the knowledge base, never from an evaluation set.

- FSKU-style multiple choice. Most ask which statement is correct, some which is not (as 300 of
  FSKU's 1000 stems do). A false statement is a sentence of the knowledge base made false by a fixed
  edit (an obligation waived, a prohibition lifted, a permission withdrawn, a period or count
  doubled). With ``distractors="other_documents"`` a positive question sets a sentence of the chunk
  among sentences of other documents (all true: only the topic tells them apart), and a negative one
  sets three sentences of the chunk beside a fourth made false. With ``"falsified"``, as FSKU writes
  them, every option is about the chunk's document: a positive question sets a sentence of the
  chunk among three false statements of its document, a negative one three true statements of its
  document beside a false one.
- Descriptive questions on a chunk's section (a law article or a guide's heading), each with the
  text that answers it.

Compression calibrates on them, the choice targets train on them and the prompt set takes them as
prompts for the teacher.
"""

from __future__ import annotations

import logging
import re
from typing import Literal, NamedTuple

import pandas as pd

from fsku_kedro.hashing import unit_hash

logger = logging.getLogger(__name__)

STEMS = (
    "다음 중 {topic}에 관한 설명으로 가장 적절한 것은?",
    "다음 중 {topic}의 내용으로 옳은 것은?",
    "{topic}에 대한 설명 중 맞는 것은?",
)
NEGATIVE_STEMS = (
    "다음 중 {topic}에 관한 설명으로 옳지 않은 것은?",
    "다음 중 {topic}의 내용에 해당하지 않는 것은?",
    "{topic}에 대한 설명으로 적절하지 않은 것은?",
)
# An obligation's verb ending ("-해야", "-받아야") and its stem before "-지 않아도 된다".
WAIVED_STEMS = {"하여": "하", "해": "하", "받아": "받", "두어": "두", "추어": "추", "되어": "되", "알려": "알리",
                "거쳐": "거치", "지켜": "지키", "남겨": "남기", "세워": "세우", "써": "쓰"}
# Edits that make a statement of the knowledge base false, each named by what it does; the first
# that applies is used.
FALSIFY = (
    ("doubled", re.compile(r"(?<![\d.])([1-9]\d{0,2})\s?(영업일|개월|시간|년|일|분|회|명|%)"),
     lambda m: f"{int(m.group(1)) * 2}{m.group(2)}"),  # a period, count or share (not a year)
    # An obligation, in the words a person would use where the verb's stem is known.
    ("waived", re.compile(f"({'|'.join(sorted(WAIVED_STEMS, key=len, reverse=True))})야 한다\\.?$"),
     lambda m: f"{WAIVED_STEMS[m.group(1)]}지 않아도 된다."),
    ("waived", re.compile(r"야 한다\.?$"), lambda m: "야 하는 것은 아니다."),
    ("lifted", re.compile(r"서는 (?:안|아니) 된다\.?$"), lambda m: "도 된다."),  # a prohibition
    ("withdrawn", re.compile(r" 수 있다\.?$"), lambda m: " 수 없다."),  # a permission
    ("granted", re.compile(r" 수 없다\.?$"), lambda m: " 수 있다."),
)
# Sentences end at punctuation or a line break: a word ending in 다 or 음 ("2년마다", "다음") does not end one.
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
STATEMENT = re.compile(r"[다요음함임]\.?$")  # a statement ends so; a heading line or a cut phrase does not
OPTION_CHARS = (15, 160)  # a sentence this long makes a plausible option
ARTICLE = re.compile(r"^(?P<law>.+?)\s+(?P<article>제\d+조(?:의\d+)?)\s*\((?P<topic>[^()]+)\)\s*$")
HEADING_NUMBER = re.compile(r"^\s*(?:\d+(?:\.\d+)*\.?|[가-하]\.)(?:\s+|$)")
ARTICLE_STEMS = (
    "{law} {article}({topic})의 주요 내용을 설명하세요.",
    "{law}에서 정하는 {topic}에 관하여 설명하세요.",
)
HEADING_STEMS = (
    "{title}에서 다루는 '{heading}'의 주요 내용을 설명하세요.",
    "{heading}에 관하여 {title}의 내용을 바탕으로 설명하세요.",
)


class CorpusQuestion(NamedTuple):
    context: str  # the chunk's text, which answers it
    text: str  # the stem and its numbered options
    negative: bool  # asks for the statement that is not correct
    answer: int  # the number of the option that answers it


def _sentences(text: str) -> list[str]:
    """The statements of a chunk that make plausible options: each line split at sentence punctuation,
    kept when it ends as a statement and is of option length (the heading line a chunk opens with,
    "전자서명법 제20조(손해배상책임)" or "안내서 > 4. 사용자 인증", is not kept, nor glued to the next)."""
    pieces = (re.sub(r"\s+", " ", piece).strip(" -*#|") for line in text.splitlines()
              for piece in SENTENCE_END.split(line))
    return [s for s in pieces if OPTION_CHARS[0] <= len(s) <= OPTION_CHARS[1] and STATEMENT.search(s)]


def _edit(sentence: str) -> tuple[str, str] | None:
    """Which edit of ``FALSIFY`` applies first to ``sentence`` and the false statement it makes."""
    for kind, pattern, edit in FALSIFY:
        if pattern.search(sentence):
            return kind, pattern.sub(edit, sentence, count=1)
    return None


def falsified(sentence: str) -> str | None:
    """``sentence`` made false by the first edit of ``FALSIFY`` that applies; None when none does."""
    edited = _edit(sentence)
    return edited[1] if edited else None


def _false_statements(candidates: list[str], count: int, order: tuple) -> list[str]:
    """Up to ``count`` false statements made from ``candidates`` in seeded ``order``, of as many
    different edits as they allow (three waived obligations would tell the true option by its ending)."""
    made = [edited for sentence in sorted(dict.fromkeys(candidates), key=lambda text: unit_hash(*order, text))
            if (edited := _edit(sentence))]
    chosen: list[str] = []
    used: set[str] = set()
    while len(chosen) < count and made:
        kind, text = next((item for item in made if item[0] not in used), made[0])
        chosen.append(text)
        used.add(kind)
        made = [item for item in made if item[1] != text]
    return chosen


def multiple_choice_questions(chunks: pd.DataFrame, count: int, seed: int, negative_share: float,
                              distractors: Literal["other_documents", "falsified"]) -> list[CorpusQuestion]:
    """``count`` four-option questions, each about one chunk, the chunks taken in a seeded order.

    A seeded ``negative_share`` of them, among those whose chunk allows one, ask which statement is not
    correct; the others which is correct. ``distractors`` decides the other options (module docstring):
    - ``other_documents``: positive, a sentence of the chunk and sentences of other documents;
      negative (a chunk of four sentences or more, one of which ``falsified`` can edit), three of the
      chunk's sentences and another of them made false.
    - ``falsified``: positive, a sentence of the chunk and three false statements made from its
      document's other sentences (from other documents' where it has too few); negative (a document of
      four sentences or more, one of which ``falsified`` can edit), three true statements, the chunk's
      first, and one made false, the chunk's where it has one."""
    if count == 0:
        return []
    rows = [(str(r.doc_id), str(r.title or r.doc_id), _sentences(str(r.content))) for r in chunks.itertuples()]
    if skipped := sum(not row[2] for row in rows):
        logger.info("Corpus questions: %d of %d chunks hold no statement of option length; none is asked about",
                    skipped, len(rows))
    rows = [row for row in rows if row[2]]
    rows.sort(key=lambda row: unit_hash(seed, "mc_prompt", row[2][0]))
    pool = [(doc, sentence) for doc, _, sentences in rows for sentence in sentences]
    if len({doc for doc, _ in pool}) < 2:
        raise ValueError("multiple-choice questions from the corpus need sentences from at least two documents")
    documents: dict[str, list[str]] = {}
    for doc, sentence in pool:
        documents.setdefault(doc, []).append(sentence)
    questions = []
    for n in range(count):
        doc, topic, sentences = rows[n % len(rows)]
        others = sorted((item for item in pool if item[0] != doc), key=lambda item: unit_hash(seed, n, item[1]))
        start = n // len(rows) % len(sentences)
        turn = [sentences[(start + k) % len(sentences)] for k in range(len(sentences))]
        if distractors == "falsified":
            rest = sorted((text for text in dict.fromkeys(documents[doc]) if text not in turn),
                          key=lambda text: unit_hash(seed, n, text))
            turn = turn + rest
        false = next((edited for sentence in turn if (edited := falsified(sentence))), None)
        negative = len(turn) >= 4 and false is not None and unit_hash(seed, "negative", n) < negative_share
        if negative:
            source = next(sentence for sentence in turn if falsified(sentence) == false)
            options = [sentence for sentence in turn if sentence != source][:3] + [false]
            stem = NEGATIVE_STEMS[n % len(NEGATIVE_STEMS)]
        elif distractors == "falsified":
            options = [sentences[start], *_false_statements(turn[1:], 3, (seed, n))]
            options += _false_statements([text for _, text in others], 4 - len(options), (seed, n))
            options += [text for _, text in others if text not in options][: 4 - len(options)]  # a tiny corpus
            stem = STEMS[n % len(STEMS)]
        else:
            options = [sentences[start]] + [sentence for _, sentence in others[:3]]
            stem = STEMS[n % len(STEMS)]
        right = options[-1] if negative else options[0]
        options.sort(key=lambda text: unit_hash(seed, "order", n, text))
        numbered = [f"{i} {text}" for i, text in enumerate(options, start=1)]
        questions.append(CorpusQuestion(" ".join(sentences), "\n".join([stem.format(topic=topic), *numbered]),
                                        negative, options.index(right) + 1))
    return questions


def descriptive_question(section: str, variant: int) -> str | None:
    """A descriptive question on a chunk's section: a law article (``<law> 제N조(<topic>)``) or a
    guide's heading (``<title> > <n>. <heading>``), in one of two wordings; None for any other section
    (a document title alone asks nothing particular)."""
    article = ARTICLE.match(section.strip())
    if article:
        return ARTICLE_STEMS[variant % len(ARTICLE_STEMS)].format(**article.groupdict())
    if " > " in section:
        title, heading = section.split(" > ", 1)
        heading = HEADING_NUMBER.sub("", heading.split(" > ")[-1]).strip()
        if heading:
            return HEADING_STEMS[variant % len(HEADING_STEMS)].format(title=title.strip(), heading=heading)
    return None


def descriptive_questions(chunks: pd.DataFrame, count: int, seed: int) -> list[tuple[str, str]]:
    """Up to ``count`` descriptive questions, one per section of the knowledge base (a seeded choice), as
    (the section's text, the question); fewer when the chunks hold fewer sections with a question."""
    if count == 0:
        return []
    texts: dict[str, list[str]] = {}
    for row in chunks.itertuples():
        if row.chunk_type != "title" and row.section:
            texts.setdefault(str(row.section), []).append(str(row.content))
    sections = sorted(texts, key=lambda section: unit_hash(seed, "descriptive", section))
    questions = []
    for section in sections:
        question = descriptive_question(section, int(unit_hash(seed, "wording", section) * 2))
        if question is not None:
            questions.append(("\n".join(texts[section]), question))
        if len(questions) == count:
            break
    return questions
