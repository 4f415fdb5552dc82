"""knowledge_base: raw documents -> cleaned documents -> chunks -> BM25 + FAISS -> retrieval report."""

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import build_dense_index, build_sparse_index, chunk_documents, evaluate_retrieval, parse_documents


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                parse_documents,
                inputs=["raw_documents", "params:knowledge_base.parsing"],
                outputs=["documents", "ingestion_report"],
                name="parse_documents",
            ),
            node(
                chunk_documents,
                inputs=["documents", "chunk_tokenizer", "params:knowledge_base.chunking"],
                outputs="chunks",
                name="chunk_documents",
            ),
            node(
                build_sparse_index,
                inputs=["chunks", "morpheme_cache", "params:knowledge_base.bm25"],
                outputs=["bm25_index", "morpheme_cache_updated"],
                name="build_bm25_index",
            ),
            node(
                build_dense_index,
                inputs=["chunks", "embedder", "embedding_cache", "params:knowledge_base.dense"],
                outputs=["faiss_index", "embedding_cache_updated"],
                name="build_faiss_index",
            ),
            node(
                evaluate_retrieval,
                inputs=[
                    "chunks",
                    "bm25_index",
                    "faiss_index",
                    "embedder",
                    "reranker",
                    "sample_questions",
                    "sample_labels",
                    "params:retrieval",
                    "params:knowledge_base.report",
                ],
                outputs=["retrieval_report", "retrieval_metrics", "retrieval_plot"],
                name="evaluate_retrieval",
            ),
        ],
        tags="knowledge_base",
    )
