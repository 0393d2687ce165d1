"""Issue #13: what a demanding user broke, refused before heavy work with nothing changed on disk.

1. ``save_path`` / ``output_dir`` never destroys an input or someone else's files (every writing stage).
3. Outputs keep the source dtype unless ``dtype=`` says otherwise; summaries record it.
4. Every output runs with a plain ``AutoModelForCausalLM`` forward and ``generate`` (no attention too).
5. Hub configs: ``auto_map`` keeps working (code files copied, config in the hub's spelling) or is
   dropped; ``attention_head_dim`` is mapped to ``head_dim`` (or a contradiction refused).
6. Duplicate ``drop_layers``, missing / empty / malformed data files and wrong checkpoint paths fail
   before any model loads.

"Before heavy work" is proven by making every model load raise; "nothing changed" by comparing a
snapshot of the whole folder tree (names, sizes, mtimes) before and after.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from conftest import STAGE_ARCH, make_model, save_teacher_and_student
from safetensors import safe_open

from nemo_minitron.arch import ArchError
from nemo_minitron.data import load_default_tokenizer
from nemo_minitron.models import load_model, save_checkpoint
from nemo_minitron.outputs import OutputPathError
from nemo_minitron.prune.config import PruningConfig, PruningConfigError
from nemo_minitron.stages.distill import distill
from nemo_minitron.stages.eval import evaluate
from nemo_minitron.stages.instruct_sft import instruct_sft
from nemo_minitron.stages.long_context import long_context
from nemo_minitron.stages.pretrain import pretrain
from nemo_minitron.stages.prune import SUMMARY_FILE, prune
from nemo_minitron.stages.rpo import rpo
from nemo_minitron.stages.search import search
from nemo_minitron.stages.settings import DistillOptim, DistillTrain
from nemo_minitron.stages.sft_kd import sft_kd

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HUB_CODE = Path(__file__).parent / "hub_code"  # stand-ins for a hub checkpoint's remote code
PRUNE_KW = dict(num_samples=4, seq_length=32, batch_size=4, layer_importance_samples=2, device="cpu")
IDS = torch.tensor([[1, 2, 3, 4, 5, 6]])


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    """teacher / student checkpoints (STAGE_ARCH, pattern M-*, default tokenizer) under one root."""
    return save_teacher_and_student(tmp_path_factory.mktemp("hardening"))


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and mtime: equal snapshots = nothing changed."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


@pytest.fixture
def no_model_loads(monkeypatch):
    """Any model load (from disk or built from scratch) fails the test: the error must come first."""
    import transformers

    import nemo_minitron.models as models

    def boom(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a model was loaded before the input checks")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", boom)
    monkeypatch.setattr(models, "build_model", boom)


def refused(root: Path, call: Callable[[], Any], error: type[BaseException], match: str) -> None:
    """``call`` raises ``error`` matching ``match`` and leaves ``root`` exactly as it was."""
    before = snapshot(root)
    with pytest.raises(error, match=match):
        call()
    assert snapshot(root) == before


def _tiny_train() -> dict[str, Any]:
    return dict(train=DistillTrain(max_steps=1, seq_length=16, micro_batch_size=1, global_batch_size=1,
                                   val_check_interval=1, limit_val_batches=1, checkpoint_every=1, progress=False),
                optim=DistillOptim(warmup_steps=1))


#: Every writing stage, called with an output path (keyword ``out``) and the checkpoints of ``ckpts``.
STAGES: dict[str, Callable[[dict[str, Path], str], Any]] = {
    "prune": lambda c, out, **kw: prune(str(c["student"]), out, PruningConfig(target_ffn_hidden_size=32), **kw),
    "search": lambda c, out, **kw: search(str(c["student"]), out, target_params=1000, **kw),
    "distill": lambda c, out, **kw: distill(str(c["teacher"]), str(c["student"]), out, **_tiny_train(), **kw),
    "sft_kd": lambda c, out, **kw: sft_kd(str(c["teacher"]), str(c["student"]), out, **kw),
    "rpo": lambda c, out, **kw: rpo(str(c["student"]), out, **kw),
    "long_context": lambda c, out, **kw: long_context(str(c["student"]), out, min_len=16, max_len=32, **kw),
    "instruct_sft": lambda c, out, **kw: instruct_sft(str(c["student"]), out, **kw),
    "eval": lambda c, out, **kw: evaluate(str(c["student"]), baseline_path=str(c["teacher"]), output_dir=out, **kw),
}


# =========================================================================== 1. save_path guard
@pytest.mark.parametrize("stage", sorted(STAGES))
@pytest.mark.parametrize("where", ["input", "parent_of_input"])
def test_output_path_that_is_or_contains_an_input_is_refused(ckpts, stage, where, no_model_loads):
    out = ckpts["student"] if where == "input" else ckpts["root"]
    refused(ckpts["root"], lambda: STAGES[stage](ckpts, str(out)), OutputPathError,
            "is the input" if where == "input" else "contains the input")
    with pytest.raises(OutputPathError):  # overwrite never allows destroying an input
        STAGES[stage](ckpts, str(out), overwrite=True)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_foreign_non_empty_folder_is_refused_without_overwrite(ckpts, tmp_path, stage, no_model_loads):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("the user's own file")
    refused(tmp_path, lambda: STAGES[stage](ckpts, str(folder)), OutputPathError, "overwrite=true")


def test_pretrain_refuses_a_foreign_folder(tmp_path, no_model_loads):
    (tmp_path / "notes.txt").write_text("the user's own file")
    refused(tmp_path, lambda: pretrain(str(tmp_path)), OutputPathError, "not an output of this stage")


def test_reruns_replace_their_own_output_and_overwrite_replaces_a_foreign_folder(ckpts, tmp_path):
    out = tmp_path / "pruned"
    prune(str(ckpts["student"]), str(out), PruningConfig(target_ffn_hidden_size=32), **PRUNE_KW)
    first = json.loads((out / SUMMARY_FILE).read_text())
    prune(str(ckpts["student"]), str(out), PruningConfig(target_ffn_hidden_size=48), **PRUNE_KW)  # a rerun
    assert json.loads((out / SUMMARY_FILE).read_text())["target_params"] > first["target_params"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("x")
    prune(str(ckpts["student"]), str(mine), PruningConfig(target_ffn_hidden_size=32), overwrite=True, **PRUNE_KW)
    assert (mine / SUMMARY_FILE).is_file() and not (mine / "notes.txt").exists()


def test_a_file_as_output_and_an_input_inside_a_list_are_refused(ckpts, tmp_path, no_model_loads):
    (tmp_path / "file").write_text("x")
    refused(tmp_path, lambda: STAGES["prune"](ckpts, str(tmp_path / "file")), OutputPathError, "is a file")
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("some text\n")
    (data / "b.txt").write_text("more text\n")
    refused(tmp_path, lambda: distill(str(ckpts["teacher"]), str(ckpts["student"]), str(data),
                                      data_path=f"{data / 'a.txt'},{data / 'b.txt'}", **_tiny_train()),
            OutputPathError, r"contains the input data_path=")


# =========================================================================== 3. dtype
def _weight_dtypes(folder: Path) -> set[torch.dtype]:
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        return {f.get_tensor(k).dtype for k in f.keys()}


@pytest.fixture(scope="module")
def bf16_checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bf16") / "model"
    save_checkpoint(make_model(STAGE_ARCH), folder, tokenizer=load_default_tokenizer(), dtype=torch.bfloat16)
    assert json.loads((folder / "config.json").read_text())["dtype"] == "bfloat16"
    return folder


def test_prune_keeps_the_source_dtype_unless_told(bf16_checkpoint, tmp_path):
    config = PruningConfig(target_ffn_hidden_size=32)
    summary = prune(str(bf16_checkpoint), str(tmp_path / "kept"), config, **PRUNE_KW)
    assert summary["dtype"] == "bfloat16" and _weight_dtypes(tmp_path / "kept") == {torch.bfloat16}
    assert json.loads((tmp_path / "kept" / "config.json").read_text())["dtype"] == "bfloat16"
    assert json.loads((tmp_path / "kept" / SUMMARY_FILE).read_text())["dtype"] == "bfloat16"
    summary = prune(str(bf16_checkpoint), str(tmp_path / "fp32"), config, dtype="float32", **PRUNE_KW)
    assert summary["dtype"] == "float32" and _weight_dtypes(tmp_path / "fp32") == {torch.float32}


def test_training_stage_keeps_the_source_dtype(ckpts, bf16_checkpoint, tmp_path):
    summary = distill(str(ckpts["teacher"]), str(bf16_checkpoint), str(tmp_path / "out"), **_tiny_train())
    assert summary["dtype"] == "bfloat16" and _weight_dtypes(tmp_path / "out") == {torch.bfloat16}


def test_an_unknown_dtype_is_refused_before_loading(ckpts, tmp_path, no_model_loads):
    refused(tmp_path, lambda: STAGES["prune"](ckpts, str(tmp_path / "out"), dtype="float8"), ValueError,
            "dtype='float8' is not supported")


# =========================================================================== 4. plain transformers
def _plain_forward_and_generate(folder: Path, **load_kwargs: Any) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), **load_kwargs).eval()
    with torch.no_grad():
        logits = model(IDS).logits
        out = model.generate(IDS, max_new_tokens=3, do_sample=False)
    assert out.shape == (1, IDS.shape[1] + 3)
    return logits


def test_attention_free_prune_output_runs_in_plain_transformers(ckpts, tmp_path):
    out = tmp_path / "no_attention"
    prune(str(ckpts["student"]), str(out), PruningConfig(drop_layers=[3]), **PRUNE_KW)  # M-* -> M-
    config = json.loads((out / "config.json").read_text())
    assert config["layers_block_type"] == ["linear_attention", "mlp"] and config["use_cache"] is False
    logits = _plain_forward_and_generate(out)
    torch.testing.assert_close(logits, load_model(out)(IDS, use_cache=False).logits)


def test_saving_an_attention_free_student_leaves_its_teacher_cached(tmp_path):
    """The pruned model gets its own generation config: saving an attention-free one sets use_cache=False
    there, and the source model must keep generating with its cache (the ablations prune several
    students from one in-memory teacher, then time everyone's decoding)."""
    from nemo_minitron.prune import PruningConfig
    from nemo_minitron.prune.oneshot import prune_model

    teacher = make_model(STAGE_ARCH)  # M-*
    calibration = torch.randint(0, STAGE_ARCH.vocab_size, (4, 16), generator=torch.Generator().manual_seed(0))
    student, _, _ = prune_model(teacher, PruningConfig(drop_layers=[3]), calibration, progress=False)  # M-* -> M-
    save_checkpoint(student, tmp_path / "student")
    assert student.generation_config.use_cache is False
    assert teacher.generation_config.use_cache is not False and teacher.config.use_cache is not False


def test_every_saved_attention_free_model_gets_use_cache_false(tmp_path):
    """Also a checkpoint whose own config still says use_cache=True (e.g. saved by an older version)."""
    model = make_model(STAGE_ARCH.replace(pattern="M-M"))
    model.config.use_cache = True
    save_checkpoint(model, tmp_path / "m")
    _plain_forward_and_generate(tmp_path / "m")
    with_attention = make_model(STAGE_ARCH)
    save_checkpoint(with_attention, tmp_path / "a")
    assert json.loads((tmp_path / "a" / "config.json").read_text())["use_cache"] is True
    _plain_forward_and_generate(tmp_path / "a")


# =========================================================================== 5. hub configs
def _hub_style(folder: Path, with_code: bool) -> Path:
    """A checkpoint whose config.json is spelled like NVIDIA's hub ones, with or without its code."""
    save_checkpoint(make_model(STAGE_ARCH), folder, tokenizer=load_default_tokenizer())
    config = json.loads((folder / "config.json").read_text())
    for native in ("layers_block_type", "head_dim"):
        config.pop(native)
    config.update(hybrid_override_pattern=STAGE_ARCH.pattern, num_hidden_layers=STAGE_ARCH.num_layers,
                  attention_head_dim=STAGE_ARCH.attention_head_dim,
                  auto_map={"AutoConfig": "configuration_nemotron_h.NemotronHConfig",
                            "AutoModelForCausalLM": "modeling_nemotron_h.NemotronHForCausalLM"})
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    if with_code:
        for file in HUB_CODE.glob("*.py"):
            shutil.copy(file, folder / file.name)
    return folder


def test_hub_checkpoint_with_remote_code_prunes_to_an_output_both_loaders_read(tmp_path):
    source = _hub_style(tmp_path / "hub", with_code=True)
    reference = load_model(source)  # attention_head_dim mapped: transformers alone would assume 128
    assert reference.config.head_dim == STAGE_ARCH.attention_head_dim
    out = tmp_path / "pruned"
    prune(str(source), str(out), PruningConfig(target_ffn_hidden_size=32, target_num_attention_heads=1), **PRUNE_KW)
    assert {"configuration_nemotron_h.py", "modeling_nemotron_h.py"} <= {p.name for p in out.iterdir()}
    config = json.loads((out / "config.json").read_text())
    assert config["auto_map"] and config["hybrid_override_pattern"] == "M-*" and "layers_block_type" not in config
    assert config["attention_head_dim"] == config["head_dim"] == STAGE_ARCH.attention_head_dim
    assert config["num_attention_heads"] == 1 and config["intermediate_size"] == 32
    native = _plain_forward_and_generate(out)
    remote = _plain_forward_and_generate(out, trust_remote_code=True)
    torch.testing.assert_close(native, remote)


def test_hub_checkpoint_without_its_code_loses_auto_map(tmp_path):
    source = _hub_style(tmp_path / "hub", with_code=False)
    out = tmp_path / "pruned"
    prune(str(source), str(out), PruningConfig(target_ffn_hidden_size=32), **PRUNE_KW)
    assert "auto_map" not in json.loads((out / "config.json").read_text())
    assert not list(out.glob("*.py"))
    torch.testing.assert_close(_plain_forward_and_generate(out), _plain_forward_and_generate(out, trust_remote_code=True))


def test_contradicting_head_dim_spellings_are_refused_naming_the_field(tmp_path, no_model_loads):
    source = _hub_style(tmp_path / "hub", with_code=False)
    config = json.loads((source / "config.json").read_text())
    (source / "config.json").write_text(json.dumps({**config, "head_dim": 32}))
    refused(tmp_path, lambda: prune(str(source), str(tmp_path / "out"), PruningConfig(), **PRUNE_KW), ArchError,
            "attention_head_dim=16 .* head_dim=32")


# =========================================================================== 6. validation first
def test_duplicate_drop_layers_are_refused(ckpts, tmp_path, no_model_loads):
    refused(tmp_path, lambda: prune(str(ckpts["student"]), str(tmp_path / "out"), PruningConfig(drop_layers=[2, 2])),
            PruningConfigError, r"names layer\(s\) \[2\] more than once")


BAD_DATA = {  # file name, contents, expected message
    "missing": ("absent.txt", None, "no such file"),
    "empty": ("empty.jsonl", "", "file is empty"),
    "malformed": ("bad.jsonl", '{"text": "fine"}\n\n{"text": broken}\n', r"bad.jsonl:3: invalid JSON"),
    "no_text_field": ("other.jsonl", '{"body": "x"}\n', r"other.jsonl:1: record has no field 'text'"),
    "extension": ("data.csv", "a,b\n", "unsupported file extension"),
}


def _bad_file(tmp_path: Path, case: str) -> tuple[Path, str]:
    name, text, message = BAD_DATA[case]
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    if text is not None:
        (data / name).write_text(text)
    return data / name, message


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_bad_calibration_data_fails_before_the_model_loads(ckpts, tmp_path, case, no_model_loads):
    path, message = _bad_file(tmp_path, case)
    refused(tmp_path, lambda: prune(str(ckpts["student"]), str(tmp_path / "out"), PruningConfig(
        target_ffn_hidden_size=32), calib_data_path=str(path), **PRUNE_KW), (OSError, ValueError), message)


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_bad_distillation_data_fails_before_the_models_load(ckpts, tmp_path, case, no_model_loads):
    path, message = _bad_file(tmp_path, case)
    refused(tmp_path, lambda: distill(str(ckpts["teacher"]), str(ckpts["student"]), str(tmp_path / "out"),
                                      data_path=str(path), **_tiny_train()), (OSError, ValueError), message)


@pytest.mark.parametrize("stage", ["sft_kd", "rpo", "long_context", "instruct_sft"])
def test_malformed_chat_data_fails_before_the_models_load(ckpts, tmp_path, stage, no_model_loads):
    bad = tmp_path / "chat.jsonl"
    good = ({"prompt": "hi", "chosen": "hello", "rejected": "go away"} if stage == "rpo" else
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})
    bad.write_text(json.dumps(good) + "\n{oops\n")
    refused(tmp_path, lambda: STAGES[stage](ckpts, str(tmp_path / "out"), data_path=str(bad)), ValueError,
            r"chat.jsonl:2: invalid JSON")


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_wrong_checkpoint_path_names_its_argument(ckpts, tmp_path, stage, no_model_loads):
    wrong = {**ckpts, "student": tmp_path / "no_such_model"}
    refused(tmp_path, lambda: STAGES[stage](wrong, str(tmp_path / "out")), FileNotFoundError,
            r"(model_path|student_path)=.*no_such_model|no_such_model.*model_path")


# =========================================================================== pipeline and ablations
def _tree(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*"))


def test_pipeline_and_ablations_refuse_a_folder_of_someone_elses_files(tmp_path):
    from nemo_minitron.data.shipped_teacher import SHIPPED_TEACHER_DIR
    from nemo_minitron.outputs import OutputPathError
    from nemo_minitron.stages.ablations import ablations
    from nemo_minitron.stages.pipeline import pipeline

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my own file")
    before = _tree(mine)
    with pytest.raises(OutputPathError, match="pipeline: output_dir=.*not an output of this stage"):
        pipeline(output_dir=str(mine), scale=0.005)
    with pytest.raises(OutputPathError, match="pipeline: output_dir=.* contains the input teacher_dir"):
        shutil.copytree(SHIPPED_TEACHER_DIR, tmp_path / "their_teacher")
        pipeline(output_dir=str(tmp_path), teacher_dir=str(tmp_path / "their_teacher"), scale=0.005)
    with pytest.raises(OutputPathError, match="ablations: output_dir=.*not an output of this stage"):
        ablations(output_dir=str(mine), teacher_path=str(tmp_path / "teacher"), quick=True)
    with pytest.raises(OutputPathError, match="ablations: output_dir=.* contains the input teacher_path"):
        ablations(output_dir=str(tmp_path), teacher_path=str(tmp_path / "teacher"), quick=True)
    assert _tree(mine) == before
