"""Round trips of the custom datasets through real files, versioned as the catalog uses them."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from kedro.io import DataCatalog
from kedro.io.core import DatasetError, Version

from fsku_kedro.datasets import (
    BinaryFileDataset,
    BM25IndexDataset,
    ContentCacheDataset,
    FaissIndexDataset,
    ModelDirectoryDataset,
    PretrainedModelDataset,
    RerankerDataset,
    TokenizerDataset,
)
from fsku_kedro.knowledge.dense import DenseIndex
from fsku_kedro.knowledge.morphemes import MorphemeTokenizer
from fsku_kedro.knowledge.sparse import SparseIndex
from fsku_kedro.models import ModelBundle
from fsku_kedro.models.sources import load_causal_lm, load_tokenizer
from fsku_kedro.parameters.knowledge_base import BM25Settings

TEXTS = [
    "전자금융업자는 자본금 300000000원 이상을 갖추어야 한다.",
    "개인정보 유출을 알게 되면 72시간 이내에 정보주체에게 알려야 한다.",
    "망분리는 내부 업무망과 인터넷망을 분리하는 통제이다.",
    "AES와 ARIA는 128비트 블록 암호이다.",
]
BM25 = BM25Settings().model_dump(include={"k1", "b", "method"})


def _logits(model, tokenizer, text="전자금융 거래"):
    with torch.no_grad():
        return model(**tokenizer(text, return_tensors="pt")).logits


def test_model_directory_round_trip_is_versioned_and_exact(tmp_path, tiny_llama_dir):
    bundle = ModelBundle(load_causal_lm(str(tiny_llama_dir)), load_tokenizer(str(tiny_llama_dir)), "tiny")
    dataset = ModelDirectoryDataset(filepath=str(tmp_path / "student"), version=Version(None, None))
    dataset.save(bundle)
    saved = list((tmp_path / "student").glob("*/student/model.safetensors"))
    assert len(saved) == 1, "weights are written as safetensors inside a version folder"
    assert not list((tmp_path / "student").rglob("*.bin")) and not list((tmp_path / "student").rglob(".student.*"))
    loaded = ModelDirectoryDataset(filepath=str(tmp_path / "student"), version=Version(None, None)).load()
    assert loaded.name == "tiny"
    torch.testing.assert_close(_logits(loaded.model, loaded.tokenizer), _logits(bundle.model, bundle.tokenizer))
    assert loaded.tokenizer.chat_template == bundle.tokenizer.chat_template


def test_pretrained_dataset_caches_its_source(tmp_path, tiny_llama_dir):
    cache = tmp_path / "cache"
    dataset = PretrainedModelDataset(source=str(tiny_llama_dir), name="teacher", cache_dir=str(cache))
    first = dataset.load()
    assert (cache / "model.safetensors").exists() and first.path == str(cache)
    second = PretrainedModelDataset(source=str(tiny_llama_dir), name="teacher", cache_dir=str(cache)).load()
    torch.testing.assert_close(_logits(second.model, second.tokenizer), _logits(first.model, first.tokenizer))
    marker = json.loads((cache / "fsku_source.json").read_text())
    assert marker["source"] == str(tiny_llama_dir)
    (cache / "fsku_source.json").write_text(json.dumps({"source": "elsewhere", "dtype": marker["dtype"]}))
    PretrainedModelDataset(source=str(tiny_llama_dir), cache_dir=str(cache)).load()
    assert json.loads((cache / "fsku_source.json").read_text()) == marker, "another source rebuilds the cache"
    with pytest.raises(DatasetError, match="read-only"):
        dataset.save(first)

def test_missing_packaged_source_says_how_to_fix_it():
    with pytest.raises(DatasetError, match="not installed"):
        PretrainedModelDataset(source="pkg://no_such_package_xyz/model.gguf").load()


def test_tokenizer_dataset_caches(tmp_path, tiny_tokenizer_dir):
    tokenizer = TokenizerDataset(source=str(tiny_tokenizer_dir), cache_dir=str(tmp_path / "tok")).load()
    cached = TokenizerDataset(source=str(tiny_tokenizer_dir), cache_dir=str(tmp_path / "tok")).load()
    assert tokenizer("접근매체")["input_ids"] == cached("접근매체")["input_ids"]
    assert (tmp_path / "tok" / "tokenizer.json").exists()


@pytest.mark.parametrize("backend", ["kiwi", "okt"])
def test_bm25_index_round_trip(tmp_path, backend):
    index, _ = SparseIndex.build(["a", "b", "c", "d"], TEXTS, MorphemeTokenizer(backend), **BM25)
    dataset = BM25IndexDataset(filepath=str(tmp_path / "bm25"), version=Version(None, None))
    dataset.save(index)
    loaded = BM25IndexDataset(filepath=str(tmp_path / "bm25"), version=Version(None, None)).load()
    assert loaded.tokenizer.backend == backend
    for query in ["개인정보 유출 통지", "블록 암호 AES", "자본금 3억 원"]:
        assert loaded.search(query, 2) == index.search(query, 2)
    assert loaded.search("개인정보 유출 통지", 1)[0][0] == "b"
    assert loaded.search("자본금 3억 원", 1)[0][0] == "a", "amounts match across written forms"
    assert not list((tmp_path / "bm25").rglob("*.pkl"))


@pytest.mark.parametrize("n", [50, 2000])
def test_faiss_index_round_trip(tmp_path, n):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(n, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"c{i}" for i in range(n)]
    index = DenseIndex.build(ids, vectors, "m", flat_threshold=1000, nlist_factor=1.0, target_recall=0.9, seed=0)
    assert index.factory == ("Flat" if n < 1000 else f"IVF{round(np.sqrt(n))},Flat")
    dataset = FaissIndexDataset(filepath=str(tmp_path / "faiss"), version=Version(None, None))
    dataset.save(index)
    loaded = FaissIndexDataset(filepath=str(tmp_path / "faiss"), version=Version(None, None)).load()
    assert loaded.nprobe == index.nprobe and loaded.factory == index.factory
    assert loaded.search(vectors[:5], 3) == index.search(vectors[:5], 3)
    assert [hits[0][0] for hits in loaded.search(vectors[:5], 1)] == ids[:5]
    if n >= 1000:
        assert index.tuned_recall >= 0.9 and index.nprobe >= 1


def test_versions_accumulate_and_load_the_latest(tmp_path):
    index_a, _ = SparseIndex.build(["a"], TEXTS[:1], MorphemeTokenizer("kiwi"), **BM25)
    index_b, _ = SparseIndex.build(["a", "b"], TEXTS[:2], MorphemeTokenizer("kiwi"), **BM25)
    catalog = DataCatalog.from_config(
        {"bm25": {"type": "fsku_kedro.datasets.BM25IndexDataset", "filepath": str(tmp_path / "bm25"), "versioned": True}}
    )
    catalog.save("bm25", index_a)
    catalog = DataCatalog.from_config(
        {"bm25": {"type": "fsku_kedro.datasets.BM25IndexDataset", "filepath": str(tmp_path / "bm25"), "versioned": True}}
    )
    catalog.save("bm25", index_b)
    assert len(list((tmp_path / "bm25").iterdir())) == 2
    assert len(catalog.load("bm25")) == 2


def test_content_caches_round_trip(tmp_path):
    vectors = ContentCacheDataset(filepath=str(tmp_path / "vectors.parquet"), values="vectors")
    assert vectors.load() == {}
    data = {"k1": np.arange(4, dtype=np.float32), "k2": np.ones(4, dtype=np.float32)}
    vectors.save(data)
    loaded = vectors.load()
    assert set(loaded) == {"k1", "k2"} and loaded["k1"].dtype == np.float32
    np.testing.assert_array_equal(loaded["k1"], data["k1"])
    tokens = ContentCacheDataset(filepath=str(tmp_path / "tokens.parquet"), values="tokens")
    tokens.save({"a": ["전자", "금융"], "b": []})
    assert tokens.load() == {"a": ["전자", "금융"], "b": []}
    with pytest.raises(DatasetError, match="values must be one of"):
        ContentCacheDataset(filepath="x", values="pickles")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    assert ContentCacheDataset(filepath=str(tmp_path / "broken.parquet")).load() == {}, "a bad cache is rebuilt"


def test_binary_file_round_trip(tmp_path):
    dataset = BinaryFileDataset(filepath=str(tmp_path / "doc.pdf"))
    dataset.save(b"%PDF-1.7 bytes")
    assert dataset.load() == b"%PDF-1.7 bytes"


def test_reranker_dataset_validates_configuration():
    assert RerankerDataset(kind="none").load() is None
    with pytest.raises(DatasetError, match="unknown kind"):
        RerankerDataset(kind="magic")
    with pytest.raises(DatasetError, match="needs a model source"):
        RerankerDataset(kind="cross_encoder")


def test_model_path_follows_the_latest_version_without_loading_it(tmp_path, tiny_llama_dir):
    from fsku_kedro.datasets import ModelPathDataset
    from fsku_kedro.models.loading import ModelDirectoryError, load_any_model
    from fsku_kedro.parameters.inference import InferenceSettings
    from fsku_kedro.pipelines.inference.nodes import load_inference_model

    root = str(tmp_path / "compressed_student")
    assert ModelPathDataset(root, version=Version(None, None)).load() is None, "nothing saved yet"
    with pytest.raises(FileNotFoundError, match="run `kedro run --pipelines compression` first"):
        load_inference_model(None, InferenceSettings())
    bundle = ModelBundle(load_causal_lm(str(tiny_llama_dir)), load_tokenizer(str(tiny_llama_dir)), "tiny")
    ModelDirectoryDataset(root, version=Version(None, None)).save(bundle)
    path = ModelPathDataset(root, version=Version(None, None)).load()
    assert path.endswith("compressed_student") and (tmp_path / "compressed_student").resolve() in Path(path).parents
    assert load_any_model(Path(path)).name == "tiny"
    assert load_inference_model(path, InferenceSettings()).name == "tiny"
    # A plain model directory (not a versioned folder) is read as it is.
    assert ModelPathDataset(path, version=Version(None, None)).load() == path
    with pytest.raises(ModelDirectoryError, match="not a model directory"):
        load_any_model(tmp_path)


def test_sentence_embedder_falls_back_where_its_model_is_not_cached(tiny_embedder_dir, caplog):
    from fsku_kedro.datasets import SentenceEmbedderDataset
    from fsku_kedro.hooks import _model_source_problem

    absent = "sentence-transformers/no-such-embedder-in-this-cache"
    dataset = SentenceEmbedderDataset(source=absent, fallback_source=str(tiny_embedder_dir))
    import logging

    logger = logging.getLogger("fsku_kedro.datasets.models")
    logger.addHandler(caplog.handler)  # the project's logging may not propagate to the root logger
    try:
        embedder = dataset.load()
    finally:
        logger.removeHandler(caplog.handler)
    assert embedder.name == str(tiny_embedder_dir), "the name says which model scores"
    assert f"{absent} is not in the Hugging Face cache: using {tiny_embedder_dir} instead" in caplog.text
    assert _model_source_problem(dataset) is None, "the run's preflight accepts the fallback"
    present = SentenceEmbedderDataset(source=str(tiny_embedder_dir), fallback_source=absent)
    assert present.load().name == str(tiny_embedder_dir), "an available source is used as it is"
    alone = SentenceEmbedderDataset(source=absent)
    assert _model_source_problem(alone)[0] == f"{absent} is not in the Hugging Face cache"
