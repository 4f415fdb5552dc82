"""retrieval: how a question finds its passages, read by the knowledge-base report and by inference.

The reranker model (or none) is chosen like every model, in the catalog (``reranker``); how many
hybrid candidates it reorders is ``rerank_k`` here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from fsku_kedro.parameters.base import Settings

MODES = ("bm25", "dense", "hybrid")
NORMALISATIONS = ("minmax", "max", "rrf")


class FusionWeights(Settings):
    # Equal shares for BM25 and multilingual-e5-small: the best fusion on the FSKU descriptive
    # retrieval task and above BM25 alone on the sample set (benchmarks/retrieval_quality.py).
    bm25: float = Field(0.5, ge=0.0)
    dense: float = Field(0.5, ge=0.0)

    @model_validator(mode="after")
    def _not_both_zero(self) -> FusionWeights:
        if self.bm25 + self.dense <= 0:
            raise ValueError("at least one of the weights bm25 and dense must be positive")
        return self


class RetrievalSettings(Settings):
    mode: Literal["bm25", "dense", "hybrid"] = "hybrid"
    k: PositiveInt = 2  # passages per question at inference (the report uses knowledge_base.report.ks)
    candidate_k: PositiveInt = 50  # candidates each retriever contributes before fusion
    weights: FusionWeights = FusionWeights()
    # minmax / max: scores scaled per query; rrf: reciprocal rank fusion, 1 / (rrf_k + rank)
    normalisation: Literal["minmax", "max", "rrf"] = "minmax"
    rrf_k: PositiveInt = 60
    rerank_k: PositiveInt = 20
