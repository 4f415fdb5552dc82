import re

import pandas as pd
import pytest

from fsku_kedro.knowledge.chunking import ARTICLE_LINE, chunk_document, merge_units, split_units
from fsku_kedro.parameters.knowledge_base import ChunkingSettings, ParsingSettings
from fsku_kedro.pipelines.knowledge_base.nodes import chunk_documents, parse_documents
from tests.conftest import CORPUS_DIR

PARSING = ParsingSettings(domain_keywords={"전자금융": ["전자금융"]})
CHUNKING = ChunkingSettings(max_tokens=120, min_quality_score=0.0)


@pytest.fixture(scope="module")
def documents():
    raw = {path.name: path.read_bytes for path in sorted(CORPUS_DIR.iterdir())}
    return parse_documents(raw, PARSING)[0]


@pytest.fixture(scope="module")
def chunks(documents, tiny_tokenizer):
    return chunk_documents(documents, tiny_tokenizer, CHUNKING)


def count_with(tokenizer):
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_no_chunk_exceeds_the_token_limit(chunks, tiny_tokenizer):
    count = count_with(tiny_tokenizer)
    assert len(chunks) > 100
    assert max(count(text) for text in chunks["content"]) <= CHUNKING.max_tokens
    assert (chunks["token_count"] == chunks["content"].map(count)).all()


def test_every_field_type_is_produced(chunks):
    types = set(chunks["chunk_type"])
    assert {"title", "body", "table", "article"} <= types
    tables = chunks[chunks.chunk_type == "table"]
    assert tables["content"].str.contains(r"\| --- \|").all(), "every table chunk repeats its header"


def test_law_articles_are_never_mixed(documents, chunks):
    law = documents[documents.source == "electronic_financial_transactions_act.md"].iloc[0]
    articles = [re.sub(r"\s+", "", m["ref"]) for m in map(ARTICLE_LINE.match, law.text.splitlines()) if m]
    law_chunks = chunks[(chunks.source == law.source) & (chunks.chunk_type == "article")]
    covered = {re.search(r"제\d+조(의\d+)?", s).group(0) for s in law_chunks["section"]}
    assert covered == set(articles), "every article has its own chunks"
    for row in law_chunks.itertuples():
        header, _, body = row.content.partition("\n")
        assert header == row.section and header.startswith(law.title)
        assert not any(ARTICLE_LINE.match(line) for line in body.splitlines()), "one article per chunk"


def test_neighbouring_chunks_overlap():
    sentences = [f"문장 번호 {i}에서 전자금융거래의 안전성을 설명한다." for i in range(40)]
    count = len  # characters as tokens keep the arithmetic visible
    config = ChunkingSettings(max_tokens=150, overlap_ratio=0.2)
    pieces = chunk_document("문서", "## 절\n" + " ".join(sentences), count, config)
    bodies = [c.content.partition("\n")[2] for c in pieces if c.chunk_type == "body"]
    assert len(bodies) > 3
    for before, after in zip(bodies, bodies[1:]):
        first_sentence = after.split("다. ")[0]
        assert first_sentence in before, "the next chunk starts with the tail of the previous one"
        shared = len(first_sentence)
        assert shared <= 150 * 0.2 + 1
    assert all(count(c.content) <= 150 for c in pieces)


def test_overlap_on_the_real_corpus(chunks):
    body = chunks[chunks.chunk_type.isin(["body", "article"])]
    pairs = overlapping = 0
    for _, group in body.groupby(["source", "section"], sort=False):
        texts = [t.partition("\n")[2] for t in group["content"]]
        for before, after in zip(texts, texts[1:]):
            pairs += 1
            overlapping += any(after.startswith(before[i:]) for i in range(1, len(before)) if len(before) - i >= 5)
    assert pairs > 20
    assert overlapping / pairs >= 0.8


def test_ids_are_stable_and_local(documents, tiny_tokenizer):
    first = chunk_documents(documents, tiny_tokenizer, CHUNKING)
    again = chunk_documents(documents, tiny_tokenizer, CHUNKING)
    assert first["chunk_id"].tolist() == again["chunk_id"].tolist()
    assert first["chunk_id"].is_unique
    changed = documents.copy()
    index = changed.index[changed.source == "digital_signature_act.md"][0]
    changed.loc[index, "text"] = changed.loc[index, "text"] + "\n\n제99조(부칙) 이 조는 시험용으로 추가한 조문이다."
    third = chunk_documents(changed, tiny_tokenizer, CHUNKING)
    others = first[first.source != "digital_signature_act.md"]["chunk_id"]
    assert set(others) <= set(third["chunk_id"]), "a change in one document keeps every other id"


def test_duplicate_documents_are_deduplicated(documents, tiny_tokenizer):
    doubled = pd.concat([documents, documents.assign(source=documents.source + ".copy")], ignore_index=True)
    once = chunk_documents(documents, tiny_tokenizer, CHUNKING)
    twice = chunk_documents(doubled, tiny_tokenizer, CHUNKING)
    assert len(twice) == len(once)


def test_long_sentences_are_cut_to_fit():
    count = len
    units = split_units("가" * 500, 100, count)
    assert all(len(u) <= 100 for u in units) and "".join(units) == "가" * 500
    assert merge_units(["aaaa", "bbbb", "cccc"], 9, 4, count) == ["aaaa bbbb", "bbbb cccc"]


def test_invalid_config_is_refused():
    with pytest.raises(ValueError, match="overlap_ratio"):
        ChunkingSettings(max_tokens=100, overlap_ratio=0.6)
