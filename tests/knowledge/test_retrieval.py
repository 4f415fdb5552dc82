import pytest

from fsku_kedro.knowledge.cleaning import normalize_for_search
from fsku_kedro.knowledge.dense import DenseIndex
from fsku_kedro.knowledge.evaluation import hit_at_k, reciprocal_rank, relevant_chunks
from fsku_kedro.knowledge.morphemes import MorphemeTokenizer
from fsku_kedro.knowledge.retrieval import CrossEncoderReranker, HybridRetriever, LLMReranker, fuse, normalise
from fsku_kedro.knowledge.sparse import SparseIndex
from fsku_kedro.parameters.knowledge_base import BM25Settings, DenseSettings
from fsku_kedro.parameters.retrieval import RetrievalSettings

CHUNKS = {
    "efta-9": "전자금융거래법 제9조 접근매체의 위조나 변조로 발생한 사고는 금융회사가 이용자에게 손해를 배상한다.",
    "efta-28": "전자금융업자는 금융위원회에 등록해야 하며 자본금은 업무에 따라 3억 원 이상 또는 20억 원 이상이다.",
    "pipa-34": "개인정보처리자는 유출을 알게 되었을 때 72시간 이내에 정보주체에게 유출 사실을 알려야 한다.",
    "crypto": "블록 암호로는 AES, ARIA, SEED, LEA가 권고되며 DES는 사용해서는 안 된다.",
    "netsep": "망분리는 내부 업무망과 인터넷망을 물리적 또는 논리적으로 분리하는 통제이다.",
    "cloud": "금융회사는 클라우드 서비스를 이용하기 전에 중요도 평가와 안전성 평가를 거쳐야 한다.",
    "log": "개인정보처리시스템 접속기록은 최소 1년 이상 보관해야 한다.",
    "sign": "전자서명은 서명자의 신원과 서명 후 문서의 변경 여부를 확인하는 데 쓰인다.",
}
LABELLED = [
    ("자본금 300,000,000원 등록 전자금융업자", "efta-28"),
    ("개인정보 유출 통지 기한은 몇 시간인가", "pipa-34"),
    ("사용하면 안 되는 블록 암호 DES", "crypto"),
    ("인터넷망과 업무망 분리", "netsep"),
    ("클라우드 이용 전 안전성 평가", "cloud"),
    ("접속기록 보관 기간", "log"),
]


@pytest.fixture(scope="module")
def retriever_parts(tiny_embedder):
    ids = list(CHUNKS)
    bm25 = BM25Settings()
    sparse, _ = SparseIndex.build(ids, [normalize_for_search(t) for t in CHUNKS.values()],
                                  MorphemeTokenizer(bm25.tokenizer), **bm25.model_dump(include={"k1", "b", "method"}))
    dense = DenseIndex.build(ids, tiny_embedder.encode(list(CHUNKS.values())), tiny_embedder.name,
                             **DenseSettings().model_dump())
    return sparse, dense, tiny_embedder


def _retriever(sparse, dense, embedder, **changes) -> HybridRetriever:
    """The retriever of the default retrieval settings, with ``changes``."""
    settings = RetrievalSettings()
    return HybridRetriever(sparse, dense, embedder, **{
        "weights": settings.weights.model_dump(), "candidate_k": settings.candidate_k,
        "normalisation": settings.normalisation, "rrf_k": settings.rrf_k, "rerank_k": settings.rerank_k, **changes})


def test_normalisation():
    assert normalise({"a": 2.0, "b": 4.0, "c": 3.0}, "minmax", 60) == {"a": 0.0, "b": 1.0, "c": 0.5}
    assert normalise({"a": 2.0, "b": 4.0}, "max", 60) == {"a": 0.5, "b": 1.0}
    assert normalise({"a": 7.0}, "minmax", 60) == {"a": 1.0}
    assert normalise({"a": 2.0, "b": 4.0}, "rrf", 60) == {"b": 1 / 61, "a": 1 / 62}
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalise({"a": 1.0}, "softmax", 60)


def test_fusion_is_a_weighted_sum_of_normalised_scores():
    sparse = [("a", 10.0), ("b", 6.0), ("c", 2.0)]
    dense = [("c", 0.9), ("d", 0.5), ("b", 0.1)]
    assert [h.chunk_id for h in fuse(sparse, dense, {"bm25": 1.0, "dense": 0.0}, "minmax", 60)][:3] == ["a", "b", "c"]
    assert [h.chunk_id for h in fuse(sparse, dense, {"bm25": 0.0, "dense": 1.0}, "minmax", 60)][:2] == ["c", "d"]
    hits = {h.chunk_id: h for h in fuse(sparse, dense, {"bm25": 0.5, "dense": 0.5}, "minmax", 60)}
    assert hits["a"].score == pytest.approx(0.5)
    assert hits["c"].score == pytest.approx(0.5 * 0.0 + 0.5 * 1.0)
    assert hits["b"].score == pytest.approx(0.5 * 0.5 + 0.5 * 0.0)
    assert hits["d"].bm25 == 0.0 and hits["d"].dense == pytest.approx(0.5)


def test_hybrid_ranking_on_a_labelled_set(retriever_parts):
    sparse, dense, embedder = retriever_parts
    retriever = _retriever(sparse, dense, embedder, weights={"bm25": 0.85, "dense": 0.15}, candidate_k=8)
    queries = [q for q, _ in LABELLED]
    for mode in ("bm25", "dense", "hybrid"):
        results = retriever.retrieve(queries, k=3, mode=mode)
        assert all(len(hits) <= 3 for hits in results)
    hybrid = retriever.retrieve(queries, k=3, mode="hybrid")
    top1 = sum(hits[0].chunk_id == gold for hits, (_, gold) in zip(hybrid, LABELLED)) / len(LABELLED)
    assert top1 >= 5 / 6
    expected = fuse(sparse.search(queries[0], 8), dense.search(embedder.encode(queries[:1]), 8)[0],
                    {"bm25": 0.85, "dense": 0.15}, "minmax", 60)
    assert [h.chunk_id for h in hybrid[0]] == [h.chunk_id for h in expected[:3]]


def test_retriever_refuses_a_mismatched_embedder(retriever_parts):
    sparse, dense, embedder = retriever_parts
    dense.model_name, original = "another-model", dense.model_name
    try:
        with pytest.raises(ValueError, match="rebuild the knowledge base"):
            _retriever(sparse, dense, embedder)
    finally:
        dense.model_name = original
    with pytest.raises(ValueError, match="weights"):
        _retriever(sparse, dense, embedder, weights={"bm25": 1.0})


def test_llm_reranker_orders_by_its_scores(retriever_parts, tiny_llama_dir):
    from fsku_kedro.models.sources import load_causal_lm, load_tokenizer

    sparse, dense, embedder = retriever_parts
    reranker = LLMReranker(
        model=load_causal_lm(str(tiny_llama_dir)),
        tokenizer=load_tokenizer(str(tiny_llama_dir)),
        prompt_template="질문: {query}\n문서: {passage}\n이 문서가 질문에 답하는 데 도움이 됩니까? 예 또는 아니오로 답하세요.",
        batch_size=3,
    )
    query = LABELLED[0][0]
    retriever = _retriever(sparse, dense, embedder, reranker=reranker, rerank_k=5, texts=CHUNKS)
    plain = _retriever(sparse, dense, embedder).retrieve([query], k=8, mode="hybrid")[0]
    reranked = retriever.retrieve([query], k=8, mode="hybrid")[0]
    head = [h.chunk_id for h in plain[:5]]
    scores = reranker.score(query, [CHUNKS[c] for c in head])
    assert len(scores) == 5 and len(set(scores)) > 1
    assert [h.chunk_id for h in reranked[:5]] == [c for _, c in sorted(zip(scores, head), key=lambda p: -p[0])]
    assert [h.chunk_id for h in reranked[5:]] == [h.chunk_id for h in plain[5:]]


def test_cross_encoder_reranker(tiny_cross_encoder_dir):
    from fsku_kedro.datasets import RerankerDataset

    reranker = RerankerDataset(kind="cross_encoder", source=str(tiny_cross_encoder_dir)).load()
    assert isinstance(reranker, CrossEncoderReranker)
    scores = reranker.score("망분리", [CHUNKS["netsep"], CHUNKS["log"]])
    assert len(scores) == 2 and all(isinstance(s, float) for s in scores)


def test_relevance_and_rank_metrics():
    chunks = [
        {"chunk_id": "x1", "source": "a.md", "content": "앞부분 문장이다. 증거가 되는 문장의 앞"},
        {"chunk_id": "x2", "source": "a.md", "content": "절반과 뒷부분이 여기에 있다."},
        {"chunk_id": "y1", "source": "b.md", "content": "증거가 되는 문장의 앞절반과 뒷부분"},
    ]
    assert relevant_chunks("b.md", "증거가 되는 문장의\n앞절반과 뒷부분", chunks) == {"y1"}
    assert relevant_chunks("a.md", "증거가 되는 문장의 앞절반과 뒷부분이", chunks) == {"x1", "x2"}
    assert reciprocal_rank(["q", "x2", "x1"], {"x1", "x2"}) == 0.5
    assert hit_at_k(["q", "r", "x1"], {"x1"}, 2) == 0.0 and hit_at_k(["q", "r", "x1"], {"x1"}, 3) == 1.0
