"""Nodes of the knowledge_base pipeline: documents -> chunks -> BM25 + FAISS -> retrieval report."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from tqdm.auto import tqdm

from fsku_kedro.contracts import (
    CompetitionQuestion,
    DataContractError,
    DocumentChunk,
    LabelledAnswer,
    validate_records,
)
from fsku_kedro.hashing import stable_hash
from fsku_kedro.knowledge.chunking import chunk_document, chunk_id, content_hash, quality_score
from fsku_kedro.knowledge.cleaning import clean_text, normalize_for_search
from fsku_kedro.knowledge.dense import DenseIndex
from fsku_kedro.knowledge.embedding import Embedder, embed_with_cache
from fsku_kedro.knowledge.evaluation import hit_at_k, reciprocal_rank, relevant_chunks
from fsku_kedro.knowledge.morphemes import MorphemeTokenizer
from fsku_kedro.knowledge.parsing import SkippedDocument, parse_document
from fsku_kedro.knowledge.retrieval import HybridRetriever, Reranker
from fsku_kedro.knowledge.sparse import SparseIndex
from fsku_kedro.parameters.knowledge_base import (
    BM25Settings,
    ChunkingSettings,
    DenseSettings,
    ParsingSettings,
    RetrievalReportSettings,
)
from fsku_kedro.parameters.retrieval import RetrievalSettings
from fsku_kedro.plotting import use_korean_font
from fsku_kedro.questions import retrieval_query

logger = logging.getLogger(__name__)

CHUNK_COLUMNS = [name for name in DocumentChunk.model_fields if name != "embedding"]


def classify_domain(title: str, text: str, domain_keywords: dict[str, list[str]], default: str) -> str:
    """The domain whose keywords occur most often (title occurrences weigh five times more)."""
    best, best_score = default, 0
    for domain, keywords in domain_keywords.items():
        score = sum(5 * title.count(word) + text.count(word) for word in keywords)
        if score > best_score:
            best, best_score = domain, score
    return best


def parse_documents(
    raw_documents: dict[str, Callable[[], bytes]], settings: ParsingSettings
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parse and clean every source file; unusable files are skipped and listed in the report."""
    documents, report = [], []
    for source in tqdm(sorted(raw_documents), desc="parse documents", disable=len(raw_documents) < 20):
        try:
            parsed = parse_document(raw_documents[source](), source, heading_ratio=settings.heading_ratio)
        except SkippedDocument as reason:
            logger.warning("Skipping %s: %s", source, reason)
            report.append({"source": source, "status": "skipped", "reason": str(reason), "pages": 0, "tables": 0})
            continue
        text = clean_text(parsed.text)
        if not text:
            logger.warning("Skipping %s: no text after cleaning", source)
            report.append({"source": source, "status": "skipped", "reason": "no text after cleaning"})
            continue
        title = clean_text(parsed.title)
        documents.append(
            {
                "doc_id": stable_hash(source, length=12),
                "source": source,
                "format": parsed.format,
                "title": title,
                "domain": classify_domain(title, text, settings.domain_keywords, settings.default_domain),
                "text": text,
                "pages": parsed.pages,
                "tables": parsed.tables,
                "chars": len(text),
            }
        )
        report.append(
            {"source": source, "status": "parsed", "reason": "", "pages": parsed.pages, "tables": parsed.tables}
        )
    report_frame = pd.DataFrame(report, columns=["source", "status", "reason", "pages", "tables"]).fillna(0)
    skipped = int((report_frame["status"] == "skipped").sum())
    logger.info("Parsed %d documents, skipped %d", len(documents), skipped)
    if not documents:
        raise ValueError(f"no usable document among {len(raw_documents)} sources; see the ingestion report")
    return pd.DataFrame(documents), report_frame


def chunk_documents(documents: pd.DataFrame, chunk_tokenizer: Any, settings: ChunkingSettings) -> pd.DataFrame:
    """Chunk every document, score and de-duplicate the chunks; ids are stable across runs."""

    def count(text: str) -> int:
        return len(chunk_tokenizer(text, add_special_tokens=False)["input_ids"])

    rows, seen, duplicates = [], set(), 0
    for document in tqdm(documents.itertuples(index=False), total=len(documents), desc="chunk documents"):
        for chunk in chunk_document(document.title, document.text, count, settings):
            digest = content_hash(chunk.content)
            if digest in seen:
                duplicates += 1
                continue
            seen.add(digest)
            rows.append(
                {
                    "chunk_id": chunk_id(document.source, chunk.section, chunk.content),
                    "doc_id": document.doc_id,
                    "source": document.source,
                    "domain": document.domain,
                    "title": document.title,
                    "section": chunk.section,
                    "chunk_type": chunk.chunk_type,
                    "content": chunk.content,
                    "normalized_content": normalize_for_search(chunk.content),
                    "token_count": chunk.token_count,
                    "quality_score": quality_score(chunk.content, chunk.token_count, settings.max_tokens),
                    "content_hash": digest,
                }
            )
    chunks = validate_records(rows, DocumentChunk, source="chunk_documents")
    kept = [c for c in chunks if c.quality_score >= settings.min_quality_score]
    logger.info(
        "%d chunks (%d duplicates and %d below quality %.2f dropped)",
        len(kept),
        duplicates,
        len(chunks) - len(kept),
        settings.min_quality_score,
    )
    return pd.DataFrame([c.model_dump(exclude={"embedding"}) for c in kept], columns=CHUNK_COLUMNS)


def build_sparse_index(
    chunks: pd.DataFrame, morpheme_cache: dict, settings: BM25Settings
) -> tuple[SparseIndex, dict]:
    """BM25 over the morphemes of each chunk's search form (analysis cached by content hash)."""
    return SparseIndex.build(
        chunk_ids=chunks["chunk_id"].tolist(),
        texts=chunks["normalized_content"].tolist(),
        tokenizer=MorphemeTokenizer(settings.tokenizer),
        k1=settings.k1,
        b=settings.b,
        method=settings.method,
        morpheme_cache=morpheme_cache,
    )


def build_dense_index(
    chunks: pd.DataFrame, embedder: Embedder, embedding_cache: dict, settings: DenseSettings
) -> tuple[DenseIndex, dict]:
    """Embed chunks (re-using vectors cached by content hash) and index them with FAISS."""
    vectors, cache, embedded = embed_with_cache(chunks["content"].tolist(), embedder, embedding_cache)
    logger.info("Embedded %d new chunks, %d from cache", embedded, len(chunks) - embedded)
    index = DenseIndex.build(
        chunk_ids=chunks["chunk_id"].tolist(),
        vectors=vectors,
        model_name=embedder.name,
        flat_threshold=settings.flat_threshold,
        nlist_factor=settings.nlist_factor,
        target_recall=settings.target_recall,
        seed=settings.seed,
    )
    return index, cache


def labelled_questions(
    questions: list[CompetitionQuestion], labels: list[LabelledAnswer]
) -> list[tuple[CompetitionQuestion, LabelledAnswer]]:
    """Each question with its label; every question needs one."""
    by_id = {label.ID: label for label in labels}
    missing = [q.ID for q in questions if q.ID not in by_id]
    if missing:
        raise DataContractError(f"sample labels: no label for question IDs {missing[:10]}")
    return [(question, by_id[question.ID]) for question in questions]


def evaluate_retrieval(
    chunks: pd.DataFrame,
    sparse_index: SparseIndex,
    dense_index: DenseIndex,
    embedder: Embedder,
    reranker: Reranker | None,
    sample_questions: list[CompetitionQuestion],
    sample_labels: list[LabelledAnswer],
    retrieval: RetrievalSettings,
    report_settings: RetrievalReportSettings,
) -> tuple[pd.DataFrame, dict[str, Any], plt.Figure]:
    """Recall@k and MRR of BM25, dense and hybrid retrieval on the labelled sample set."""
    items = labelled_questions(sample_questions, sample_labels)
    records = chunks.to_dict("records")
    retriever = HybridRetriever.from_settings(chunks, sparse_index, dense_index, embedder, reranker, retrieval)
    queries = [retrieval_query(question) for question, _ in items]
    relevant = [relevant_chunks(label.source, label.evidence, records) for _, label in items]
    unresolved = sum(1 for r in relevant if not r)
    if unresolved:
        logger.warning("%d sample questions have no chunk containing their evidence", unresolved)
    ks = sorted(report_settings.ks)
    vectors = embedder.encode(queries, "query")
    modes = ["bm25", "dense", "hybrid"] + (["hybrid_rerank"] if reranker is not None else [])
    rows = []
    without_rerank = replace(retriever, reranker=None)
    for mode in modes:
        runner = retriever if mode == "hybrid_rerank" else without_rerank
        ranked = runner.retrieve(queries, k=max(ks), mode=mode.replace("_rerank", ""), query_vectors=vectors)
        ids = [[hit.chunk_id for hit in hits] for hits in ranked]
        row = {"retriever": mode, "questions": len(items), "unresolved": unresolved}
        for k in ks:
            row[f"recall@{k}"] = sum(hit_at_k(r, rel, k) for r, rel in zip(ids, relevant)) / len(items)
        row["mrr"] = sum(reciprocal_rank(r, rel) for r, rel in zip(ids, relevant)) / len(items)
        rows.append(row)
    report = pd.DataFrame(rows)
    metrics = {
        f"{row['retriever']}.{name.replace('@', '_at_')}": {"value": float(row[name]), "step": 0}
        for row in rows
        for name in [*(f"recall@{k}" for k in ks), "mrr"]
    }
    return report, metrics, _plot_report(report, ks)


def _plot_report(report: pd.DataFrame, ks: list[int]) -> plt.Figure:
    use_korean_font()
    figure, axis = plt.subplots(figsize=(7, 4))
    for row in report.to_dict("records"):
        recalls = [row[f"recall@{k}"] for k in ks]
        axis.plot(ks, recalls, marker="o", label=f"{row['retriever']} (MRR {row['mrr']:.2f})")
    axis.set_xlabel("k")
    axis.set_ylabel("recall@k")
    axis.set_ylim(0, 1.05)
    axis.set_xticks(ks)
    axis.set_title("Retrieval on the labelled sample set")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    return figure
