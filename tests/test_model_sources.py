"""Model sources that need care: a file joined from several packages behind a pinned digest, the
E5 engine behind pinned file digests, and the layers a depth-pruned student keeps."""

import hashlib

import pytest
import torch

from fsku_kedro.models.sources import ModelSourceError, assemble, distribution_file, resolve_source


def _fake_distribution(root, name, files):
    """An installed distribution ``name`` holding ``files`` ({relative path: bytes}), as pip lays it out."""
    module = name.replace("-", "_")
    info = root / f"{module}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "RECORD").write_text("".join(f"{path},,\n" for path in files) + f"{info.name}/RECORD,,\n")
    for path, content in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(content)


@pytest.fixture
def parts(tmp_path, monkeypatch):
    site = tmp_path / "site"
    pieces = [b"GGUF" + bytes(range(200)), bytes(range(100, 250)), b"tail" * 10]
    for n, piece in enumerate(pieces, start=1):
        _fake_distribution(site, f"model-part{n}", {f"model_part{n}/data/part{n:02d}.bin": piece})
    monkeypatch.syspath_prepend(str(site))
    return site, b"".join(pieces)


def test_parts_are_joined_in_order_and_checked(parts, tmp_path):
    site, whole = parts
    spec = {"distribution": "model-part{n}", "file": "model_part{n}/data/part{n:02d}.bin", "parts": 3,
            "sha256": hashlib.sha256(whole).hexdigest(), "into": str(tmp_path / "out" / "model.gguf")}
    path = resolve_source({"assemble": spec})
    assert open(path, "rb").read() == whole
    assert assemble(**spec).read_bytes() == whole, "the joined file is re-used once it checks out"
    assert distribution_file("model-part2", "model_part2/data/part02.bin").is_file()


def test_a_changed_part_is_refused_with_both_digests(parts, tmp_path):
    site, whole = parts
    expected = hashlib.sha256(whole).hexdigest()
    (site / "model_part2/data/part02.bin").write_bytes(b"tampered")
    with pytest.raises(ModelSourceError, match=f"has SHA-256 [0-9a-f]{{64}}, not the pinned {expected}"):
        assemble("model-part{n}", "model_part{n}/data/part{n:02d}.bin", 3, expected, str(tmp_path / "m.gguf"))
    assert not (tmp_path / "m.gguf").exists() and not (tmp_path / "m.gguf.partial").exists()
    with pytest.raises(ModelSourceError, match="model-part9 is not installed"):
        distribution_file("model-part9", "x.bin")


def test_the_e5_engine_refuses_a_changed_file(tmp_path):
    from fsku_kedro.knowledge.e5_engine import EngineIntegrityError, verified

    model = tmp_path / "e5.bin"
    model.write_bytes(b"weights")
    digest = hashlib.sha256(b"weights").hexdigest()
    assert verified(model, digest) == model
    model.write_bytes(b"weights, changed")
    with pytest.raises(EngineIntegrityError, match=f"e5.bin: SHA-256 [0-9a-f]{{64}} differs from the pinned {digest}"):
        verified(model, digest)


def test_the_packaged_e5_engine_embeds_korean_with_its_roles():
    from kedro.config import OmegaConfigLoader

    from fsku_kedro.datasets import E5EngineDataset
    from tests.conftest import PROJECT_ROOT

    entry = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), base_env="base", default_run_env="base")["catalog"]["embedder"]
    embedder = E5EngineDataset(**{k: v for k, v in entry.items() if k != "type"}).load()
    query = embedder.encode(["접근매체를 잃어버리면 어떻게 해야 하나요?"], "query")
    passages = embedder.encode(["접근매체를 분실한 이용자는 즉시 금융회사에 신고해야 한다.",
                                "클라우드 서비스 이용 시 망분리 예외 요건을 확인한다."], "passage")
    assert query.shape == (1, 384) and passages.dtype.name == "float32"
    assert abs(float((query ** 2).sum()) - 1.0) < 1e-4, "L2-normalised"
    scores = passages @ query[0]
    assert scores[0] > scores[1], "the passage about the question ranks first"
    as_passage = embedder.encode(["접근매체를 잃어버리면 어떻게 해야 하나요?"], "passage")
    assert not torch.allclose(torch.from_numpy(query), torch.from_numpy(as_passage)), "the roles differ"


def test_block_influence_drops_the_layers_that_change_nothing(tiny_llama_dir):
    from fsku_kedro.models.pruning import block_influence, influential_layers
    from fsku_kedro.models.sources import load_causal_lm, load_tokenizer

    model = load_causal_lm(str(tiny_llama_dir))
    tokenizer = load_tokenizer(str(tiny_llama_dir))
    with torch.no_grad():  # layer 1 adds nothing to its input: a pure residual pass-through
        model.model.layers[1].self_attn.o_proj.weight.zero_()
        model.model.layers[1].mlp.down_proj.weight.zero_()
    texts = ["전자금융거래법은 금융회사의 안전성 확보 의무를 정한다.", "망분리는 내부망과 인터넷망을 나누는 통제이다."]
    influence = block_influence(model, tokenizer, texts)
    assert len(influence) == 4 and influence[1] == pytest.approx(0.0, abs=1e-6)
    assert all(value > 1e-4 for i, value in enumerate(influence) if i != 1)
    assert influential_layers(influence, 3) == [0, 2, 3]
    with pytest.raises(ValueError, match="cannot keep 5 of 4"):
        influential_layers(influence, 5)
