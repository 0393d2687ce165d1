"""Architecture search: budget, group constraint, tie-breaking, resumability."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from conftest import TINY_ARCH, TINY_MAMBA2_ARCH
from nemo_minitron.arch import HybridArch
from nemo_minitron.data import load_default_tokenizer
from nemo_minitron.models import build_model, load_model, save_checkpoint
from nemo_minitron.prune import ImportanceScores
from nemo_minitron.prune import search as search_mod
from nemo_minitron.prune.search import Candidate, SearchSpace, enumerate_candidates, pick_best
from nemo_minitron.stages.search import search


def _layer_scores(arch: HybridArch) -> ImportanceScores:
    g = torch.Generator().manual_seed(0)
    return ImportanceScores(arch=arch, layers={"kl": torch.rand(arch.num_layers, generator=g)})


@pytest.mark.parametrize("arch", [TINY_ARCH, TINY_MAMBA2_ARCH], ids=["nemotron_h", "mamba2"])
def test_candidates_are_exactly_those_within_budget(arch: HybridArch) -> None:
    scores = _layer_scores(arch)
    space = SearchSpace(fractions=[1.0, 0.75, 0.5])
    target, tol = int(arch.num_params() * 0.8), 0.15
    found = enumerate_candidates(arch, scores, target, tol, space)
    assert found, "the space should contain candidates in the budget"
    for cand, shape in found:
        assert target * (1 - tol) <= shape.num_params() <= target
        assert shape.mamba_num_heads % shape.mamba_num_groups == 0  # group constraint
        if shape.family == "mamba2":
            assert shape.mamba_inner_size % shape.hidden_size == 0  # HF Mamba2 integer expand
    # Brute force over the same axes: every distinct valid in-budget shape is found, nothing else.
    axes = space.axis_values(arch)
    expected = set()
    for values in itertools.product(*axes.values()):
        cand = Candidate(**dict(zip(axes, values)))
        try:
            cand.pruning_config(arch).check(arch)
            shape = search_mod.candidate_arch(arch, scores, cand)
        except ValueError:
            continue
        if target * (1 - tol) <= shape.num_params() <= target:
            expected.add(shape)
    assert {shape for _, shape in found} == expected
    assert len(found) == len(expected)  # no duplicate shapes


def test_depth_candidates_drop_least_important_layers() -> None:
    arch = TINY_ARCH
    scores = _layer_scores(arch)
    cand = Candidate(arch.num_layers - 2, arch.hidden_size, arch.ffn_hidden_size, arch.mamba_num_heads,
                     arch.mamba_head_dim)
    shape = search_mod.candidate_arch(arch, scores, cand)
    weakest = set(torch.argsort(scores.layers["kl"])[:2].tolist())
    assert shape.pattern == "".join(s for i, s in enumerate(arch.pattern) if i not in weakest)


def test_unchanged_axes_are_not_targets() -> None:
    a = TINY_ARCH
    config = Candidate(a.num_layers, a.hidden_size, a.ffn_hidden_size // 2, a.mamba_num_heads, a.mamba_head_dim
                       ).pruning_config(a)
    assert config.target_ffn_hidden_size == a.ffn_hidden_size // 2
    assert config.target_hidden_size is None and config.target_num_layers is None


def test_pick_best_breaks_ties_by_throughput() -> None:
    rows = [
        {"name": "a", "distilled_loss": 2.000, "throughput_tok_s": 100.0},
        {"name": "b", "distilled_loss": 2.005, "throughput_tok_s": 300.0},
        {"name": "c", "distilled_loss": 2.500, "throughput_tok_s": 900.0},
    ]
    assert pick_best(rows, tie_tolerance=0.01)["name"] == "b"  # within 1 %: the faster wins
    assert pick_best(rows, tie_tolerance=0.0)["name"] == "a"  # no tie: the lowest loss wins


def test_search_end_to_end_and_resumes_from_cache(tmp_path, monkeypatch) -> None:
    arch = HybridArch(pattern="M-*M-", hidden_size=32, vocab_size=32000, ffn_hidden_size=64, num_attention_heads=4,
                      num_query_groups=2, attention_head_dim=8, mamba_num_heads=8, mamba_head_dim=8,
                      mamba_num_groups=2, mamba_state_dim=8)
    teacher = tmp_path / "teacher"
    save_checkpoint(build_model(arch, seed=0), teacher, tokenizer=load_default_tokenizer())
    out = tmp_path / "search"
    # Width-only shrinks are tiny next to the 32000-token embeddings: a budget just under the full
    # model admits the FFN/Mamba/depth variants and excludes halving the hidden size.
    target = arch.num_params() - 1
    kwargs = dict(target_params=target, tolerance=0.02, top_k=2, distill_steps=2,
                  space=SearchSpace(num_layers=[5, 4], fractions=[1.0, 0.5]), num_samples=4, seq_length=32,
                  val_samples=4, distill_kwargs=dict(micro_batch_size=2, global_batch_size=2, limit_val_batches=1))
    summary = search(str(teacher), str(out), **kwargs)
    assert summary["best_record"]["params"] <= target
    for name in ("search_results.csv", "search_results.md", "search.png", "search_summary.json",
                 "importance.safetensors"):
        assert (out / name).is_file(), name
    records = json.loads((out / "search_summary.json").read_text())["candidates"]
    assert sum("distilled_loss" in r for r in records) == 2
    best_dir = out / "candidates" / summary["best"] / "distilled"
    assert sum(p.numel() for p in load_model(best_dir).parameters()) == summary["best_record"]["params"]

    def no_more_pruning(*args, **kw):
        raise AssertionError("a resumed search must reuse cached candidates")

    monkeypatch.setattr(search_mod, "apply_plan", no_more_pruning)
    again = search(str(teacher), str(out), **kwargs)
    assert again["best"] == summary["best"]


def test_search_rejects_impossible_budget(tmp_path) -> None:
    arch = HybridArch(pattern="M-", hidden_size=32, vocab_size=32000, ffn_hidden_size=64, mamba_num_heads=4,
                      mamba_head_dim=8, mamba_num_groups=2, mamba_state_dim=8)
    path = tmp_path / "m"
    save_checkpoint(build_model(arch, seed=0), path, tokenizer=load_default_tokenizer())
    with pytest.raises(ValueError, match="target_params"):
        search(str(path), str(tmp_path / "s"), target_params=arch.num_params() * 2)
