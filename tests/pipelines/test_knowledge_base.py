"""The knowledge_base pipeline end to end on the project's corpus, with tiny real models."""

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from fsku_kedro.datasets import BinaryFileDataset
from fsku_kedro.parameters.knowledge_base import ChunkingSettings, KnowledgeBaseSettings, ParsingSettings
from fsku_kedro.parameters.retrieval import RetrievalSettings
from fsku_kedro.pipelines.knowledge_base import create_pipeline
from tests.conftest import CORPUS_DIR, PROJECT_ROOT, SAMPLE_DIR, sample_set, settings_params

SETTINGS = KnowledgeBaseSettings(
    parsing=ParsingSettings(domain_keywords={"전자금융": ["전자금융"], "개인정보": ["개인정보"], "정보보안": ["암호"]}),
    chunking=ChunkingSettings(max_tokens=200),
)
RETRIEVAL = RetrievalSettings()


class KeptDataset(MemoryDataset):
    """An in-memory dataset the runner does not release, so a test can inspect intermediates."""

    def _release(self) -> None:
        pass


def _catalog(tokenizer, embedder, embedding_cache, morpheme_cache) -> DataCatalog:
    raw = {p.name: BinaryFileDataset(str(p)).load for p in sorted(CORPUS_DIR.iterdir())}
    questions, labels = sample_set()
    data = {
        "raw_documents": raw,
        "chunk_tokenizer": tokenizer,
        "embedder": embedder,
        "reranker": None,
        "embedding_cache": embedding_cache,
        "morpheme_cache": morpheme_cache,
        "sample_questions": questions,
        "sample_labels": labels,
        **settings_params("knowledge_base", SETTINGS),
        **settings_params("retrieval", RETRIEVAL),
    }
    catalog = DataCatalog({name: MemoryDataset(value) for name, value in data.items()})
    for name in ["chunks", "bm25_index", "faiss_index", "documents"]:
        catalog[name] = KeptDataset(copy_mode="assign")
    return catalog


@pytest.fixture(scope="module")
def first_run(tiny_tokenizer, tiny_embedder):
    catalog = _catalog(tiny_tokenizer, tiny_embedder, {}, {})
    SequentialRunner().run(create_pipeline(), catalog)
    return catalog


def test_outputs(first_run):
    report = first_run.load("retrieval_report")
    assert list(report["retriever"]) == ["bm25", "dense", "hybrid"]
    assert report["questions"].eq(len(pd.read_csv(SAMPLE_DIR / "test.csv", encoding="utf-8-sig"))).all()
    assert report["unresolved"].eq(0).all(), "every labelled evidence is found in some chunk"
    bm25 = report.set_index("retriever").loc["bm25"]
    assert bm25["recall@5"] >= 0.8, "BM25 over Korean morphemes finds the supporting chunk"
    metrics = first_run.load("retrieval_metrics")
    assert metrics["hybrid.recall_at_5"]["value"] == report.set_index("retriever").loc["hybrid", "recall@5"]
    figure = first_run.load("retrieval_plot")
    assert len(figure.axes[0].lines) == 3
    ingestion = first_run.load("ingestion_report")
    assert (ingestion["status"] == "parsed").sum() == len(list(CORPUS_DIR.iterdir()))


def test_indices_cover_every_chunk(first_run):
    chunks = first_run.load("chunks")
    ids = chunks["chunk_id"].tolist()
    assert first_run.load("bm25_index").chunk_ids == ids
    assert first_run.load("faiss_index").chunk_ids == ids
    assert first_run.load("faiss_index").factory == "Flat"
    assert len(first_run.load("embedding_cache_updated")) == len(set(chunks["content"]))


def test_rebuild_reuses_caches_and_gives_the_same_indices(first_run, tiny_tokenizer, tiny_embedder):
    class CountingEmbedder:
        def __init__(self, inner):
            self.inner, self.name, self.calls = inner, inner.name, 0
            self.dimension = inner.dimension

        def encode(self, texts, show_progress=False):
            self.calls += len(texts)
            return self.inner.encode(texts)

    counting = CountingEmbedder(tiny_embedder)
    catalog = _catalog(
        tiny_tokenizer, counting, first_run.load("embedding_cache_updated"), first_run.load("morpheme_cache_updated")
    )
    SequentialRunner().run(create_pipeline().only_nodes("parse_documents", "chunk_documents", "build_faiss_index",
                                                        "build_bm25_index"), catalog)
    assert counting.calls == 0, "no chunk is re-embedded when nothing changed"
    again, before = catalog.load("faiss_index"), first_run.load("faiss_index")
    assert again.chunk_ids == before.chunk_ids
    query = tiny_embedder.encode(["전자금융업자 등록 자본금"])
    assert again.search(query, 5) == before.search(query, 5)
    assert catalog.load("bm25_index").search("전자금융업자 등록", 5) == first_run.load("bm25_index").search(
        "전자금융업자 등록", 5)


def test_sample_set_format():
    raw = (SAMPLE_DIR / "test.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), "test.csv is UTF-8 with BOM like the competition file"
    questions = pd.read_csv(SAMPLE_DIR / "test.csv", encoding="utf-8-sig", dtype=str)
    assert list(questions.columns) == ["ID", "Question"] and len(questions) >= 40
    assert (PROJECT_ROOT / "data/01_raw/sample/labels.csv").exists()
    assert np.all(questions["ID"].str.match(r"^TEST_\d{3}$"))


def test_report_adds_a_reranked_row_when_a_reranker_is_configured(first_run, tiny_embedder, tiny_llama_dir, tmp_path):
    from fsku_kedro.datasets import RerankerDataset
    from fsku_kedro.pipelines.knowledge_base.nodes import evaluate_retrieval

    prompt = tmp_path / "rerank.txt"
    prompt.write_text("질문: {query}\n문서: {passage}\n관련이 있습니까? 예 또는 아니오.", encoding="utf-8")
    reranker = RerankerDataset(kind="llm", source=str(tiny_llama_dir), prompt_file=str(prompt)).load()
    questions, labels = sample_set()
    report, metrics, _ = evaluate_retrieval(
        first_run.load("chunks"), first_run.load("bm25_index"), first_run.load("faiss_index"), tiny_embedder,
        reranker, questions[:6], labels, RETRIEVAL.model_copy(update={"rerank_k": 5}), SETTINGS.report,
    )
    assert list(report["retriever"]) == ["bm25", "dense", "hybrid", "hybrid_rerank"]
    rows = report.set_index("retriever")
    assert rows.loc["hybrid_rerank", "recall@10"] == rows.loc["hybrid", "recall@10"], "reranking only reorders"
    assert "hybrid_rerank.mrr" in metrics


def test_missing_labels_are_reported_by_id(first_run, tiny_embedder, tmp_path):
    from kedro.io.core import DatasetError

    from fsku_kedro.contracts import DataContractError
    from fsku_kedro.datasets import LabelsDataset
    from fsku_kedro.pipelines.knowledge_base.nodes import evaluate_retrieval

    questions, labels = sample_set()
    with pytest.raises(DataContractError, match="TEST_001"):
        evaluate_retrieval(first_run.load("chunks"), first_run.load("bm25_index"), first_run.load("faiss_index"),
                           tiny_embedder, None, questions, [label for label in labels if label.ID != "TEST_001"],
                           RETRIEVAL, SETTINGS.report)
    broken = pd.read_csv(SAMPLE_DIR / "labels.csv", dtype=str, keep_default_na=False)
    broken.loc[3, "question_type"] = "essay"
    broken.to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(DatasetError, match=r"labels.csv: row 5: question_type") as error:
        LabelsDataset(str(tmp_path / "labels.csv")).load()
    assert isinstance(error.value.__cause__, DataContractError)