"""knowledge_base: parsing, chunking, the BM25 and FAISS indices and the retrieval report."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt

from fsku_kedro.parameters.base import Settings

DOMAIN_KEYWORDS = {
    "전자금융": ["전자금융거래법", "전자금융감독규정", "전자금융업", "전자금융거래", "접근매체", "전자지급"],
    "개인정보": ["개인정보 보호법", "개인정보처리자", "정보주체", "가명정보", "민감정보"],
    "신용정보": ["신용정보법", "신용정보", "마이데이터", "본인신용정보관리업", "신용정보회사"],
    "정보통신망": ["정보통신망법", "정보통신서비스", "정보통신망", "침해사고 신고", "정보보호 관리체계"],
    "전자서명": ["전자서명법", "전자서명", "인증서", "전자서명인증사업자"],
    "정보보안": ["암호", "접근통제", "망분리", "클라우드", "침해사고", "랜섬웨어", "피싱", "인증"],
}


class ParsingSettings(Settings):
    # A PDF line whose font is at least this many times the body size is a heading.
    heading_ratio: float = Field(1.15, gt=1.0)
    default_domain: str = "정보보안"
    domain_keywords: dict[str, list[str]] = DOMAIN_KEYWORDS


class ChunkingSettings(Settings):
    max_tokens: int = Field(400, ge=16)  # measured with chunk_tokenizer; the seed's range is 300-600
    overlap_ratio: float = Field(0.15, ge=0.0, lt=0.5)  # carried between neighbouring body chunks
    min_articles_for_law: PositiveInt = 3  # a document with this many "제N조" lines is chunked per article
    min_quality_score: float = Field(0.3, ge=0.0, le=1.0)


class BM25Settings(Settings):
    tokenizer: Literal["kiwi", "okt"] = "kiwi"  # okt needs Java
    k1: PositiveFloat = 1.5
    b: float = Field(0.75, ge=0.0, le=1.0)
    method: Literal["lucene", "robertson", "atire", "bm25l", "bm25+"] = "lucene"


class DenseSettings(Settings):
    flat_threshold: PositiveInt = 20_000  # exact search below this many chunks, IVF above
    nlist_factor: PositiveFloat = 4.0  # IVF nlist = nlist_factor * sqrt(N)
    target_recall: float = Field(0.95, gt=0.0, le=1.0)  # nprobe: the smallest reaching this recall@10
    seed: int = 0


class RetrievalReportSettings(Settings):
    ks: list[PositiveInt] = Field(default_factory=lambda: [1, 3, 5, 10], min_length=1)


class KnowledgeBaseSettings(Settings):
    parsing: ParsingSettings = ParsingSettings()
    chunking: ChunkingSettings = ChunkingSettings()
    bm25: BM25Settings = BM25Settings()
    dense: DenseSettings = DenseSettings()
    report: RetrievalReportSettings = RetrievalReportSettings()
