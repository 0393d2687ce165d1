"""Every downstream stage on a plain transformer: prune -> distill -> sft_kd -> rpo -> long_context -> eval, and
search, on a tiny Gemma3 (the family with the most quirks: tied head, sandwich norms, sliding windows, scaled
embeddings) with the offline 32000-token tokenizer."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from conftest import TINY_DECODER_ARCHS, perturb_
from nemo_minitron.arch import DECODER_LAYER
from nemo_minitron.models import build_model, load_model, save_checkpoint
from nemo_minitron.prune import PruningConfig
from nemo_minitron.prune.search import Candidate, SearchSpace, enumerate_candidates

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ARCH = dataclasses.replace(TINY_DECODER_ARCHS["gemma3"], vocab_size=32000, hidden_size=32, ffn_hidden_size=64)
TRAIN = dict(max_steps=2, micro_batch_size=2, global_batch_size=2, progress=False, seed=0)


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> dict[str, Path]:
    """The stages run one after the other, each on the previous one's checkpoint."""
    from nemo_minitron.data import load_default_tokenizer
    from nemo_minitron.evaluate import CLOZE_MC
    from nemo_minitron.stages.distill import DistillOptim, DistillTrain, distill
    from nemo_minitron.stages.eval import evaluate
    from nemo_minitron.stages.long_context import LongContextOptim, LongContextTrain, long_context
    from nemo_minitron.stages.prune import prune
    from nemo_minitron.stages.rpo import RPOOptim, RPOTrain, rpo
    from nemo_minitron.stages.sft_kd import SFTKDOptim, SFTKDTrain, sft_kd

    root = tmp_path_factory.mktemp("decoder_stages")
    paths = {name: root / name for name in ("teacher", "pruned", "distilled", "sft_kd", "rpo", "long_context", "eval")}
    base = ARCH.to_hf_config()
    base.sliding_window = 16
    base.layer_types = ["sliding_attention", "full_attention", "sliding_attention"]
    save_checkpoint(perturb_(build_model(ARCH.validate(), base_config=base, seed=0)), paths["teacher"],
                    tokenizer=load_default_tokenizer())
    prune(str(paths["teacher"]), str(paths["pruned"]),
          PruningConfig(target_hidden_size=24, target_ffn_hidden_size=32, target_num_attention_heads=2,
                        target_num_layers=2), num_samples=4, seq_length=32, layer_importance_samples=4, device="cpu")
    distill(str(paths["teacher"]), str(paths["pruned"]), str(paths["distilled"]),
            train=DistillTrain(seq_length=32, limit_val_batches=1, val_check_interval=2, **TRAIN),
            optim=DistillOptim(warmup_steps=1))
    sft_kd(str(paths["teacher"]), str(paths["distilled"]), str(paths["sft_kd"]), num_train=4, topk=8,
           train=SFTKDTrain(seq_length=96, **TRAIN), optim=SFTKDOptim(warmup_steps=1))
    rpo(str(paths["sft_kd"]), str(paths["rpo"]), num_prompts=4, num_samples=2, max_new_tokens=4, gold_chosen=True,
        train=RPOTrain(seq_length=96, **TRAIN), optim=RPOOptim(warmup_steps=1))
    long_context(str(paths["rpo"]), str(paths["long_context"]), min_len=160, max_len=220, num_train=2,
                 train=LongContextTrain(**{**TRAIN, "micro_batch_size": 1}), optim=LongContextOptim(warmup_steps=1))
    evaluate(str(paths["long_context"]), baseline_path=str(paths["teacher"]), output_dir=str(paths["eval"]),
             tasks=[CLOZE_MC], limit=2, ruler_lengths=[], speed=False, device="cpu")
    return paths


def test_every_stage_writes_a_reloadable_checkpoint_of_the_pruned_shape(chain):
    pruned = load_model(chain["pruned"])
    plan = json.loads((chain["pruned"] / "pruning_plan.json").read_text())
    source_types = ["sliding_attention", "full_attention", "sliding_attention"]
    assert pruned.config.layer_types == [source_types[block // 2] for block in plan["kept_layers"][::2]]
    for name in ("pruned", "distilled", "sft_kd", "rpo", "long_context"):
        model = load_model(chain[name])
        assert (model.config.model_type, model.config.hidden_size, model.config.num_hidden_layers) == (
            "gemma3_text", 24, 2), name
        assert model.lm_head.weight is model.model.embed_tokens.weight, name
        assert model.config.layer_types == pruned.config.layer_types, name
    assert plan["target"]["pattern"] == DECODER_LAYER * 2 and plan["target"]["post_norms"] is True
    report = json.loads((chain["eval"] / "eval_report.json").read_text())
    assert set(report["models"]) == {"baseline", "model"}
    weights = [load_model(chain[n]).model.embed_tokens.weight for n in ("distilled", "long_context")]
    assert not torch.equal(*weights)  # training changed the model


def test_search_over_a_decoder_family(tmp_path):
    from nemo_minitron.data import load_default_tokenizer
    from nemo_minitron.stages.search import search

    teacher = save_checkpoint(perturb_(build_model(ARCH.validate(), seed=1)), tmp_path / "teacher",
                              tokenizer=load_default_tokenizer())
    summary = search(str(teacher), str(tmp_path / "search"), target_params=ARCH.num_params() - 1, tolerance=0.02,
                     top_k=1, distill_steps=2, space=SearchSpace(fractions=[1.0, 0.5], num_attention_heads=[4, 2]),
                     num_samples=4, seq_length=32, val_samples=4,
                     distill_kwargs=dict(micro_batch_size=2, global_batch_size=2, limit_val_batches=1))
    best = summary["best_record"]
    assert best["params"] <= ARCH.num_params() - 1 and "-mh" not in best["name"]
    model = load_model(tmp_path / "search" / "selected")
    assert sum(p.numel() for p in model.parameters()) == best["params"]


def test_search_space_of_a_decoder_counts_decoder_layers_and_searches_heads_only_when_asked():
    from nemo_minitron.prune.importance import ImportanceScores

    scores = ImportanceScores(arch=ARCH, layers={"kl": torch.tensor([3.0, 1.0, 2.0])})
    default = enumerate_candidates(ARCH, scores, ARCH.num_params(), 0.9, SearchSpace(fractions=[1.0, 0.5]))
    assert {c.num_layers for c, _ in default} == {3, 2} and {c.num_attention_heads for c, _ in default} == {0}
    heads = enumerate_candidates(ARCH, scores, ARCH.num_params(), 0.9,
                                 SearchSpace(fractions=[1.0], num_attention_heads=[4, 3, 2]))
    assert {c.num_attention_heads for c, _ in heads} == {4, 2}  # 3 is not a multiple of the 2 KV groups
    assert {a.pattern for _, a in default} == {DECODER_LAYER * 3, DECODER_LAYER * 2}
    assert Candidate(2, 24, 32, 0, 0, 2).name == "L2-h24-f32-ah2"
    assert Candidate(2, 24, 32, 8, 16).name == "L2-h24-f32-mh8-md16"  # hybrid names are unchanged
