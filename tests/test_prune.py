"""Group-aware pruning: plans, trimming, exact parameter counts, reload, bad targets, reuse, callback.

Everything runs on tiny models (hidden 64, vocab 1000 or 32000, seq 32) on CPU, offline.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random

import pytest
import torch

from conftest import TINY_ARCH, TINY_MAMBA2_ARCH, logits, make_model
from nemo_minitron.arch import ATTENTION, MAMBA, MLP, HybridArch
from nemo_minitron.models import adapter_for, load_model, save_checkpoint
from nemo_minitron.models.mamba_layout import CONV_PARTS, split_in_proj, split_rows
from nemo_minitron.prune import (ImportanceScores, MinitronPruningCallback, PlanError, PruningConfig,
                                 PruningConfigError, PruningPlan, apply_plan, estimate_importance, make_plan,
                                 rank_mamba)
from nemo_minitron.prune.importance import SCORES_FILE
from nemo_minitron.stages.prune import PLAN_FILE, PLOT_FILE, SUMMARY_FILE, prune

FAMILIES = ["nemotron_h", "mamba2"]
ARCHS = {"nemotron_h": TINY_ARCH, "mamba2": TINY_MAMBA2_ARCH}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # shared (tied) tensors counted once


@pytest.fixture(params=FAMILIES)
def family(request, tiny_model, tiny_mamba2_model):
    """(arch, model) for each supported family (fresh, perturbed weights)."""
    return (TINY_ARCH, tiny_model) if request.param == "nemotron_h" else (TINY_MAMBA2_ARCH, tiny_mamba2_model)


@pytest.fixture(scope="module")
def scored():
    """Per family: a perturbed tiny model and its importance scores on 6 random sequences."""
    out = {}
    gen = torch.Generator().manual_seed(7)
    for name, arch in ARCHS.items():
        model = make_model(arch)
        calib = torch.randint(0, arch.vocab_size, (6, 32), generator=gen)
        out[name] = (model, estimate_importance(model, calib, batch_size=4, progress=False))
    return out


# =========================================================================== identity / permutations
def test_keep_all_plan_is_exact_identity(family, input_ids):
    arch, model = family
    before = logits(model, input_ids)
    plan = PruningPlan.keep_all(arch).validate()
    pruned = apply_plan(model, plan)
    assert pruned is not model
    assert adapter_for(pruned).arch == arch
    assert num_params(pruned) == num_params(model) == arch.num_params()
    assert torch.equal(logits(pruned, input_ids), before)
    # The source model is untouched.
    assert torch.equal(logits(model, input_ids), before)


def _within_group_permutation(size: int, groups: int, rng: random.Random) -> list[int]:
    """A permutation of range(size) that moves every index only inside its contiguous group."""
    per = size // groups
    out: list[int] = []
    for g in range(groups):
        block = list(range(g * per, (g + 1) * per))
        while block == sorted(block):  # make sure something really moves
            rng.shuffle(block)
        out += block
    return out


def test_within_group_permutation_of_mamba_heads_preserves_logits(family, input_ids):
    """Reordering heads inside their group (and head channels consistently across heads, eq. 18)
    moves z/x/dt rows of in_proj, conv1d x channels, A_log, D, dt_bias, the gated-norm weight and
    out_proj columns together; the model computes the same function (eq. 17)."""
    arch, model = family
    before = logits(model, input_ids)
    rng = random.Random(0)
    plan = PruningPlan.keep_all(arch)
    for i in plan.mamba_heads:
        plan.mamba_heads[i] = _within_group_permutation(arch.mamba_num_heads, arch.mamba_num_groups, rng)
        plan.mamba_channels[i] = _within_group_permutation(arch.mamba_head_dim, 1, rng)
    for i in plan.attention_heads:  # attention heads inside their KV group, for good measure
        plan.attention_heads[i] = _within_group_permutation(arch.num_attention_heads, arch.num_query_groups, rng)
    plan.validate()
    permuted = apply_plan(model, plan)
    # Every per-head / per-channel tensor moved exactly as the plan says (written out by hand) ...
    first = min(plan.mamba_heads)
    src, dst = adapter_for(model).layers()[first].mixer, adapter_for(permuted).layers()[first].mixer
    shape = adapter_for(model).mamba_shape
    heads, channels, hd = plan.mamba_heads[first], plan.mamba_channels[first], arch.mamba_head_dim
    inner = [h * hd + c for h in heads for c in channels]  # new flat channel p*hd+k <- source index
    assert not torch.equal(src.A_log, dst.A_log)
    for name in ("A_log", "D", "dt_bias"):
        assert torch.equal(getattr(dst, name), getattr(src, name)[heads]), name
    sp, dp = split_in_proj(src.in_proj.weight, shape), split_in_proj(dst.in_proj.weight, shape)
    assert torch.equal(dp["z"], sp["z"][inner]) and torch.equal(dp["x"], sp["x"][inner])
    assert torch.equal(dp["dt"], sp["dt"][heads])
    assert torch.equal(dp["B"], sp["B"]) and torch.equal(dp["C"], sp["C"])  # shared per group: untouched
    sc, dc = split_rows(src.conv1d.weight, shape, CONV_PARTS), split_rows(dst.conv1d.weight, shape, CONV_PARTS)
    assert torch.equal(dc["x"], sc["x"][inner]) and torch.equal(dc["B"], sc["B"]) and torch.equal(dc["C"], sc["C"])
    if src.conv1d.bias is not None:
        sb, db = split_rows(src.conv1d.bias, shape, CONV_PARTS), split_rows(dst.conv1d.bias, shape, CONV_PARTS)
        assert torch.equal(db["x"], sb["x"][inner]) and torch.equal(db["B"], sb["B"])
    assert torch.equal(dst.norm.weight, src.norm.weight[inner])
    assert torch.equal(dst.out_proj.weight, src.out_proj.weight[:, inner])
    # ... and the function did not change.
    torch.testing.assert_close(logits(permuted, input_ids), before, rtol=0, atol=1e-5)


def test_unknown_parameter_fails_loudly(family):
    """A weight the family has no trim rule for is never copied through unpruned."""
    arch, model = family
    first = adapter_for(model).layers()[0]
    first.mixer.register_parameter("surprise", torch.nn.Parameter(torch.zeros(3)))
    with pytest.raises(PlanError, match=r"do not know how to prune parameter '.*layers\.0\.mixer\.surprise'"):
        apply_plan(model, PruningPlan.keep_all(arch))


def test_cross_group_swap_changes_logits_and_is_rejected(family, input_ids):
    arch, model = family
    before = logits(model, input_ids)
    per = arch.mamba_heads_per_group
    heads = list(range(arch.mamba_num_heads))
    heads[0], heads[per] = heads[per], heads[0]  # head 0 (group 0) <-> first head of group 1
    plan = PruningPlan.keep_all(arch)
    first = min(plan.mamba_heads)
    plan.mamba_heads[first] = heads  # one layer only
    with pytest.raises(PlanError, match=rf"mamba_heads\[{first}\].*group"):
        plan.validate()
    with pytest.raises(PlanError, match="group"):
        apply_plan(model, plan)  # validate=True by default
    swapped = apply_plan(model, plan, validate=False)
    after = logits(swapped, input_ids)
    diff = (after - before).abs()
    # Materially different: not float noise (the within-group permutation stays below 1e-5).
    assert diff.max() > 0.1
    assert diff.mean() > 1e-2 * before.abs().mean()


# =========================================================================== parameter counts
NEMOTRON_TARGETS = {
    "mamba_heads": dict(target_mamba_num_heads=4),
    "mamba_head_dim": dict(target_mamba_head_dim=8),
    "ffn": dict(target_ffn_hidden_size=48),
    "hidden": dict(target_hidden_size=40),
    "attention_heads": dict(target_num_attention_heads=2),
    "depth_target_num_layers": dict(target_num_layers=5),
    "depth_drop_layers": dict(drop_layers=[2, 3, 8]),
    "all": dict(target_mamba_num_heads=6, target_mamba_head_dim=12, target_ffn_hidden_size=96,
                target_hidden_size=48, target_num_attention_heads=2, target_num_layers=6),
    "all_flap_cosine": dict(target_mamba_num_heads=2, target_hidden_size=32, target_num_layers=7,
                            mamba_metric="flap", layer_metric="cosine"),
}
MAMBA2_TARGETS = {
    "mamba_heads": dict(target_mamba_num_heads=4),  # 4 x 16 = 64 = 1 x hidden
    "mamba_head_dim": dict(target_mamba_head_dim=8),  # 8 x 8 = 64
    "hidden": dict(target_hidden_size=32),  # 128 = 4 x 32
    "depth": dict(target_num_layers=2),
    "drop_layers": dict(drop_layers=[1]),
    "all": dict(target_mamba_num_heads=4, target_hidden_size=32, target_num_layers=2),
}
TARGET_CASES = ([("nemotron_h", k, v) for k, v in NEMOTRON_TARGETS.items()]
                + [("mamba2", k, v) for k, v in MAMBA2_TARGETS.items()])


@pytest.mark.parametrize("family_name,case,target", TARGET_CASES, ids=[f"{f}-{c}" for f, c, _ in TARGET_CASES])
def test_pruned_param_count_equals_formula(scored, family_name, case, target, input_ids):
    model, scores = scored[family_name]
    source = ARCHS[family_name]
    config = PruningConfig(**target)
    plan = make_plan(scores, config)
    pruned = apply_plan(model, plan)
    assert plan.target.num_params() < source.num_params()
    assert num_params(pruned) == plan.target.num_params()
    assert adapter_for(pruned).arch == plan.target
    # Each requested axis has the requested size; untouched axes keep theirs.
    for field_name, attr in [("target_mamba_num_heads", "mamba_num_heads"), ("target_mamba_head_dim", "mamba_head_dim"),
                             ("target_ffn_hidden_size", "ffn_hidden_size"), ("target_hidden_size", "hidden_size"),
                             ("target_num_attention_heads", "num_attention_heads"),
                             ("target_num_layers", "num_layers")]:
        want = target.get(field_name, getattr(source, attr))
        if field_name == "target_num_layers" and "drop_layers" in target:
            want = source.num_layers - len(target["drop_layers"])
        kind = {"mamba_num_heads": MAMBA, "mamba_head_dim": MAMBA, "ffn_hidden_size": MLP,
                "num_attention_heads": ATTENTION}.get(attr)
        if kind is not None and kind not in plan.target.pattern:
            continue  # depth pruning removed every layer of that kind (its widths read 0)
        assert getattr(plan.target, attr) == want, attr
    out = logits(pruned, input_ids)
    assert out.shape == (*input_ids.shape, source.vocab_size)
    assert torch.isfinite(out).all()


def test_drop_layers_are_one_based(scored):
    _, scores = scored["nemotron_h"]
    plan = make_plan(scores, PruningConfig(drop_layers=[1, 8]))
    assert plan.kept_layers == [1, 2, 3, 4, 5, 6]
    assert plan.target.pattern == TINY_ARCH.pattern[1:7]


def test_target_num_layers_keeps_the_most_important_layers(scored):
    _, scores = scored["nemotron_h"]
    for metric in ("kl", "cosine"):
        plan = make_plan(scores, PruningConfig(target_num_layers=5, layer_metric=metric))
        ranked = sorted(range(TINY_ARCH.num_layers), key=lambda i: -float(scores.layers[metric][i]))
        assert plan.kept_layers == sorted(ranked[:5])
        assert plan.target.pattern == "".join(TINY_ARCH.pattern[i] for i in plan.kept_layers)


def test_mamba_metric_choice_is_used(scored):
    _, scores = scored["nemotron_h"]
    for metric in ("x", "z", "out_proj", "flap"):
        plan = make_plan(scores, PruningConfig(target_mamba_num_heads=4, target_mamba_head_dim=8, mamba_metric=metric))
        for i, table in scores.mamba[metric].items():
            heads, channels = rank_mamba(table, TINY_ARCH.mamba_num_groups, 4, 8)
            assert plan.mamba_heads[i] == heads and plan.mamba_channels[i] == channels


# =========================================================================== reload
def test_save_and_reload_pruned_model_is_exact(scored, family, tmp_path, input_ids):
    arch, _ = family
    name = arch.family
    model, scores = scored[name]
    target = NEMOTRON_TARGETS["all"] if name == "nemotron_h" else MAMBA2_TARGETS["all"]
    plan = make_plan(scores, PruningConfig(**target))
    pruned = apply_plan(model, plan)
    save_checkpoint(pruned, tmp_path / "pruned")
    reloaded = load_model(tmp_path / "pruned").eval()
    assert torch.equal(logits(reloaded, input_ids), logits(pruned, input_ids))
    assert num_params(reloaded) == plan.target.num_params()
    from transformers import AutoConfig

    assert HybridArch.from_hf_config(AutoConfig.from_pretrained(tmp_path / "pruned")) == plan.target
    saved = json.loads((tmp_path / "pruned" / "config.json").read_text())
    t = plan.target
    assert saved["hidden_size"] == t.hidden_size
    if name == "nemotron_h":
        assert saved["mamba_num_heads"] == t.mamba_num_heads and saved["mamba_head_dim"] == t.mamba_head_dim
        assert saved["intermediate_size"] == t.ffn_hidden_size
        assert saved["num_attention_heads"] == t.num_attention_heads
        assert saved["num_key_value_heads"] == t.num_query_groups
        blocks = {"linear_attention": MAMBA, "full_attention": ATTENTION, "mlp": MLP}
        assert "".join(blocks[b] for b in saved["layers_block_type"]) == t.pattern
    else:
        assert saved["num_heads"] == t.mamba_num_heads and saved["head_dim"] == t.mamba_head_dim
        assert saved["num_hidden_layers"] == t.num_layers
        assert saved["expand"] * t.hidden_size == t.mamba_num_heads * t.mamba_head_dim
        assert saved["tie_word_embeddings"] is True
        assert reloaded.get_output_embeddings().weight is reloaded.get_input_embeddings().weight


# =========================================================================== ranking (Algorithm 1)
def algorithm_1_reference(s: list[list[float]], num_groups: int, keep_heads: int, keep_channels: int
                          ) -> tuple[set[int], set[int]]:
    """The paper's Algorithm 1, written out with loops and plain floats."""
    m_h, m_d = len(s), len(s[0])
    # 3: channel scores s_d = ||s[:, d]||_2
    s_d = []
    for d in range(m_d):
        total = 0.0
        for h in range(m_h):
            total += s[h][d] ** 2
        s_d.append(math.sqrt(total))
    # 4: top-k_d channels
    d_top = sorted(range(m_d), key=lambda d: s_d[d], reverse=True)[:keep_channels]
    # 5: head scores on the kept channels only
    f = []
    for h in range(m_h):
        total = 0.0
        for d in d_top:
            total += s[h][d] ** 2
        f.append(math.sqrt(total))
    # 6-10: rank within each group, keep k_g per group, concatenate
    per_group, k_g = m_h // num_groups, keep_heads // num_groups
    ranking: list[int] = []
    for g in range(num_groups):
        members = list(range(g * per_group, (g + 1) * per_group))
        members.sort(key=lambda h: f[h], reverse=True)
        ranking += members[:k_g]
    return set(ranking), set(d_top)


RANK_SETTINGS = [  # (heads, head_dim, groups, keep_heads, keep_channels)
    (8, 16, 2, 4, 8),
    (8, 16, 1, 3, 16),
    (16, 8, 4, 8, 5),
    (16, 32, 8, 8, 1),
    (12, 4, 3, 12, 2),
    (32, 16, 4, 4, 12),
]


@pytest.mark.parametrize("heads,head_dim,groups,keep_heads,keep_channels", RANK_SETTINGS)
def test_rank_mamba_matches_algorithm_1(heads, head_dim, groups, keep_heads, keep_channels):
    gen = torch.Generator().manual_seed(heads * 1000 + keep_channels)
    for trial in range(5):
        scores = torch.rand(heads, head_dim, generator=gen, dtype=torch.float64)
        if trial % 2:  # heavy-tailed scores, like real activations
            scores = scores.pow(4) * 10
        kept_heads, kept_channels = rank_mamba(scores, groups, keep_heads, keep_channels)
        ref_heads, ref_channels = algorithm_1_reference(scores.tolist(), groups, keep_heads, keep_channels)
        assert set(kept_channels) == ref_channels
        assert set(kept_heads) == ref_heads
        assert kept_heads == sorted(kept_heads) and kept_channels == sorted(kept_channels)
        per_group = heads // groups
        counts = [sum(1 for h in kept_heads if h // per_group == g) for g in range(groups)]
        assert counts == [keep_heads // groups] * groups


def test_head_scores_use_only_the_kept_channels():
    """Eq. 22: heads are scored on the kept channels, not on all of them."""
    s = torch.tensor([[3.0, 0.0, 0.0],
                      [0.0, 2.9, 2.9]])
    # channel norms [3, 2.9, 2.9]: top-2 = {0, 1} (tie broken toward the lower index);
    # on those, head 0 scores 3.0 > head 1's 2.9 ...
    assert rank_mamba(s, 1, 1, 2) == ([0], [0, 1])
    # ... while on all channels head 1 scores sqrt(2) * 2.9 = 4.10 > 3.0.
    assert rank_mamba(s, 1, 1, 3) == ([1], [0, 1, 2])


def _synthetic_scores(arch: HybridArch, gen: torch.Generator) -> ImportanceScores:
    """Random scores of the right shapes for ``arch`` (no model needed to rank)."""
    s = ImportanceScores(arch=arch, hidden=torch.rand(arch.hidden_size, generator=gen))
    for i, kind in enumerate(arch.pattern):
        if kind == MAMBA:
            for metric in ("x", "z", "out_proj", "flap"):
                s.mamba.setdefault(metric, {})[i] = torch.rand(arch.mamba_num_heads, arch.mamba_head_dim, generator=gen)
        elif kind == MLP:
            s.ffn[i] = torch.rand(arch.ffn_hidden_size, generator=gen)
        else:
            s.attention[i] = torch.rand(arch.num_attention_heads, generator=gen)
    s.layers = {"kl": torch.rand(arch.num_layers, generator=gen), "cosine": torch.rand(arch.num_layers, generator=gen)}
    return s


def test_groups_keep_equal_counts_even_when_one_group_dominates():
    """A global top-k would keep only group-0 heads here; group-aware ranking may not."""
    arch = dataclasses.replace(TINY_ARCH, num_attention_heads=8, num_query_groups=2, mamba_num_heads=8,
                               mamba_num_groups=2).validate()
    scores = _synthetic_scores(arch, torch.Generator().manual_seed(0))
    for i in scores.attention:
        scores.attention[i] = torch.tensor([10.0, 9.0, 8.0, 7.0, 1.0, 2.0, 3.0, 4.0])
    loud = torch.cat([torch.full((4, arch.mamba_head_dim), 5.0), torch.full((4, arch.mamba_head_dim), 1.0)])
    for i in scores.mamba["x"]:
        scores.mamba["x"][i] = loud + torch.arange(8.0)[:, None] * 0.01
    plan = make_plan(scores, PruningConfig(target_num_attention_heads=4, target_mamba_num_heads=4))
    for i in plan.attention_heads:
        assert plan.attention_heads[i] == [0, 1, 6, 7]
    for i in plan.mamba_heads:
        assert plan.mamba_heads[i] == [2, 3, 6, 7]


@pytest.mark.parametrize("heads,groups,keep", [(8, 2, 4), (8, 4, 4), (12, 3, 6), (16, 2, 2), (8, 1, 3)])
def test_attention_heads_keep_equal_counts_per_kv_group(heads, groups, keep):
    arch = dataclasses.replace(TINY_ARCH, num_attention_heads=heads, num_query_groups=groups).validate()
    gen = torch.Generator().manual_seed(heads + groups + keep)
    for _ in range(5):
        scores = _synthetic_scores(arch, gen)
        plan = make_plan(scores, PruningConfig(target_num_attention_heads=keep))
        per_src, per_keep = heads // groups, keep // groups
        for i, kept in plan.attention_heads.items():
            for g in range(groups):
                in_group = [h for h in kept if h // per_src == g]
                assert len(in_group) == per_keep
                # and they are the top ones of that group
                group_scores = scores.attention[i][g * per_src:(g + 1) * per_src]
                best = sorted(range(per_src), key=lambda j: -float(group_scores[j]))[:per_keep]
                assert sorted(in_group) == sorted(g * per_src + j for j in best)


# =========================================================================== bad targets
BAD_TARGETS = [
    # (id, family, config kwargs, regex the message must match)
    ("mamba_heads_not_divisible", "nemotron_h", dict(target_mamba_num_heads=5),
     r"target_mamba_num_heads=5 is not divisible by the 2 Mamba groups.*valid values: 2, 4, 6, 8"),
    ("attention_heads_not_divisible", "nemotron_h", dict(target_num_attention_heads=3),
     r"target_num_attention_heads=3 is not divisible.*KV groups.*valid values: 2, 4"),
    ("mamba_heads_larger", "nemotron_h", dict(target_mamba_num_heads=10), r"target_mamba_num_heads=10 is larger"),
    ("hidden_larger", "nemotron_h", dict(target_hidden_size=128), r"target_hidden_size=128 is larger.*64"),
    ("ffn_larger", "nemotron_h", dict(target_ffn_hidden_size=129), r"target_ffn_hidden_size=129 is larger"),
    ("layers_larger", "nemotron_h", dict(target_num_layers=9), r"target_num_layers=9 is larger"),
    ("ffn_zero", "nemotron_h", dict(target_ffn_hidden_size=0), r"target_ffn_hidden_size=0 must be a positive"),
    ("hidden_zero", "nemotron_h", dict(target_hidden_size=0), r"target_hidden_size=0 must be a positive"),
    ("layers_zero", "nemotron_h", dict(target_num_layers=0), r"target_num_layers=0 must be a positive"),
    ("head_dim_negative", "nemotron_h", dict(target_mamba_head_dim=-4), r"target_mamba_head_dim=-4 must be a positive"),
    ("attention_negative", "nemotron_h", dict(target_num_attention_heads=-2),
     r"target_num_attention_heads=-2 must be a positive"),
    ("drop_layer_zero", "nemotron_h", dict(drop_layers=[0]), r"drop_layers=\[0\].*1-based.*1\.\.8"),
    ("drop_layer_n_plus_1", "nemotron_h", dict(drop_layers=[3, 9]), r"drop_layers=\[3, 9\].*\[9\].*1\.\.8"),
    ("drop_every_layer", "nemotron_h", dict(drop_layers=list(range(1, 9))), r"drop_layers would drop every layer"),
    ("layers_and_drop_layers", "nemotron_h", dict(target_num_layers=6, drop_layers=[1]),
     r"target_num_layers or pruning_config\.drop_layers, not both"),
    ("ffn_without_mlp_layers", "mamba2", dict(target_ffn_hidden_size=64),
     r"target_ffn_hidden_size cannot be set.*no MLP layers"),
    ("attention_without_attention_layers", "mamba2", dict(target_num_attention_heads=2),
     r"target_num_attention_heads cannot be set.*no attention layers"),
    ("mamba2_non_integer_expand", "mamba2", dict(target_mamba_head_dim=12), r"invalid shape.*integer multiple"),
    ("unknown_mamba_metric", "nemotron_h", dict(mamba_metric="w_x"), r"mamba_metric='w_x' is not one of"),
    ("unknown_layer_metric", "nemotron_h", dict(layer_metric="kld"), r"layer_metric='kld' is not one of"),
]


@pytest.mark.parametrize("family_name,kwargs,pattern", [b[1:] for b in BAD_TARGETS], ids=[b[0] for b in BAD_TARGETS])
def test_bad_target_error_names_the_field(family_name, kwargs, pattern):
    with pytest.raises(PruningConfigError, match=r"pruning_config\." + pattern if not pattern.startswith("invalid")
                       else pattern):
        PruningConfig(**kwargs).check(ARCHS[family_name])


@pytest.mark.parametrize("family_name,kwargs,pattern", [b[1:] for b in BAD_TARGETS], ids=[b[0] for b in BAD_TARGETS])
def test_bad_target_fails_before_any_work(tmp_path, family_name, kwargs, pattern):
    """The folder holds only config.json: if the model, tokenizer or calibration data were loaded
    first, the error would be a missing-file error instead of the PruningConfigError."""
    folder = tmp_path / "config_only"
    ARCHS[family_name].to_hf_config().save_pretrained(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json"]
    with pytest.raises(PruningConfigError, match=pattern):
        prune(str(folder), str(tmp_path / "out"), PruningConfig(**kwargs), device="cpu")
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config_only"]


def test_make_plan_checks_the_config_too(scored):
    _, scores = scored["nemotron_h"]
    with pytest.raises(PruningConfigError, match="target_mamba_num_heads"):
        make_plan(scores, PruningConfig(target_mamba_num_heads=3))


# =========================================================================== plan files
def test_plan_json_round_trip(scored, tmp_path):
    _, scores = scored["nemotron_h"]
    plan = make_plan(scores, PruningConfig(**NEMOTRON_TARGETS["all"]))
    path = plan.save(tmp_path / "plan.json")
    data = json.loads(path.read_text())
    assert data["format"] == "nemo-minitron/pruning-plan/v1"
    loaded = PruningPlan.load(path)
    assert loaded == plan
    assert loaded.to_dict() == plan.to_dict()
    assert all(isinstance(k, int) for k in loaded.mamba_heads)


def _edit(data: dict, **changes) -> dict:
    data = json.loads(json.dumps(data))
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split("__")
        for p in parents:
            node = node[p]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value
    return data


_DELETE = object()


def test_plan_load_rejects_malformed_files(scored, tmp_path):
    _, scores = scored["nemotron_h"]
    plan = make_plan(scores, PruningConfig(target_mamba_num_heads=4, target_num_attention_heads=2))
    good = plan.to_dict()
    first_mamba, first_attn = str(min(plan.mamba_heads)), str(min(plan.attention_heads))
    cases = {
        "missing_hidden": (_edit(good, hidden=_DELETE), r"not a pruning plan"),
        "unknown_arch_field": (_edit(good, source__bogus=1), r"not a pruning plan"),
        "wrong_count": (_edit(good, hidden=good["hidden"][:-1]), r"hidden keeps 63 entries but the target needs 64"),
        "out_of_range": (_edit(good, ffn={**good["ffn"], "1": [200] + good["ffn"]["1"][1:]}), r"ffn\[1\].*outside"),
        "repeated": (_edit(good, mamba_channels={**good["mamba_channels"], first_mamba: [0] * 16}), r"repeated"),
        "cross_group": (_edit(good, mamba_heads={**good["mamba_heads"], first_mamba: [4, 5, 0, 1]}),
                        r"cannot move to Mamba group"),
        "cross_kv_group": (_edit(good, attention_heads={**good["attention_heads"], first_attn: [2, 0]}),
                           r"cannot move to KV group"),
        "pattern_mismatch": (_edit(good, kept_layers=[0, 1, 2, 3, 4, 5, 7]), r"kept_layers"),
        "unsorted_layers": (_edit(good, kept_layers=list(reversed(good["kept_layers"]))), r"ascending"),
        "missing_layer_table": (_edit(good, ffn={"1": good["ffn"]["1"]}), r"ffn must list exactly"),
        "not_a_dict": ([1, 2, 3], r"not a pruning plan"),
        "axis_not_a_dict": (_edit(good, ffn=[1, 2]), r"not a pruning plan"),
        "layer_key_not_an_int": (_edit(good, ffn={**good["ffn"], "one": [1]}), r"not a pruning plan"),
    }
    for name, (data, pattern) in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(data))
        with pytest.raises(PlanError, match=pattern):
            PruningPlan.load(path)
    broken = tmp_path / "truncated.json"
    broken.write_text(json.dumps(good)[:100])
    with pytest.raises(PlanError, match="truncated.json is not a pruning plan: invalid JSON"):
        PruningPlan.load(broken)
    with pytest.raises(FileNotFoundError, match="pruning plan"):
        PruningPlan.load(tmp_path / "missing.json")


def test_apply_plan_refuses_a_plan_for_another_model(scored, tiny_mamba2_model):
    _, scores = scored["nemotron_h"]
    plan = make_plan(scores, PruningConfig(target_hidden_size=32))
    with pytest.raises(PlanError, match="plan was made for"):
        apply_plan(tiny_mamba2_model, plan)
    other = make_model(dataclasses.replace(TINY_ARCH, ffn_hidden_size=96))
    with pytest.raises(PlanError, match="plan was made for"):
        apply_plan(other, plan)


# =========================================================================== checkpoints end to end
#: The tiny shape with the default tokenizer's vocabulary, so the calibration text tokenizes into it.
CKPT_ARCH = dataclasses.replace(TINY_ARCH, vocab_size=32000).validate()
CALIB_TEXT = (
    "The quick brown fox jumps over the lazy dog while the river runs past the old mill. "
    "Scientists measured the temperature of the lake every morning for three years. "
    "A small village on the coast depends on fishing, tourism and a weekly market. "
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A perturbed tiny NemotronH checkpoint (vocab 32000 + default tokenizer) and a text file."""
    from nemo_minitron.data.tokenizer import load_default_tokenizer

    root = tmp_path_factory.mktemp("prune_ckpt")
    save_checkpoint(make_model(CKPT_ARCH), root / "model", tokenizer=load_default_tokenizer())
    calib = root / "calib.txt"
    calib.write_text("\n".join(CALIB_TEXT * (k + 1) for k in range(12)) + "\n")
    return root / "model", calib


PRUNE_KW = dict(num_samples=6, seq_length=32, batch_size=4, layer_importance_samples=4, device="cpu")


def test_prune_stage_writes_everything_and_reprunes_from_scores(checkpoint, tmp_path, monkeypatch, input_ids):
    model_path, calib = checkpoint
    config = PruningConfig(target_mamba_num_heads=4, target_ffn_hidden_size=64, target_hidden_size=48,
                           target_num_layers=7)
    first = tmp_path / "first"
    summary = prune(str(model_path), str(first), config, calib_data_path=str(calib), **PRUNE_KW)
    for name in ("config.json", "model.safetensors", PLAN_FILE, SCORES_FILE, PLOT_FILE, SUMMARY_FILE,
                 "tokenizer_config.json"):
        assert (first / name).is_file(), name
    plan = PruningPlan.load(first / PLAN_FILE)
    assert json.loads((first / SUMMARY_FILE).read_text())["target_params"] == plan.target.num_params()
    assert summary["target_params"] == plan.target.num_params() < summary["source_params"] == CKPT_ARCH.num_params()
    pruned = load_model(first).eval()
    assert num_params(pruned) == plan.target.num_params()
    assert (first / PLOT_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    scores = ImportanceScores.load(first / SCORES_FILE)
    assert scores.arch == CKPT_ARCH and set(scores.layers) == {"kl", "cosine"}
    assert scores.meta["num_samples"] == 6 and scores.meta["kl_samples"] == 4

    # Re-prune from the saved scores: no calibration data, no forward pass through estimation.
    def boom(*args, **kwargs):
        raise AssertionError("calibration must not run when scores_path is given")

    monkeypatch.setattr("nemo_minitron.prune.oneshot.estimate_importance", boom)
    monkeypatch.setattr("nemo_minitron.prune.importance.estimate_importance", boom)
    monkeypatch.setattr("nemo_minitron.data.tokens.calibration_tokens", boom)
    second = tmp_path / "second"
    summary2 = prune(str(model_path), str(second), config, scores_path=str(first / SCORES_FILE), **PRUNE_KW)
    assert PruningPlan.load(second / PLAN_FILE) == plan
    assert summary2["calibration"]["reused_scores"] == str(first / SCORES_FILE)
    ids = input_ids.clamp_max(CKPT_ARCH.vocab_size - 1)
    assert torch.equal(logits(load_model(second).eval(), ids), logits(pruned, ids))
    # ... and to another target, equal to ranking the loaded scores directly.
    other = PruningConfig(target_mamba_num_heads=6, target_num_attention_heads=2, drop_layers=[2])
    third = tmp_path / "third"
    prune(str(model_path), str(third), other, scores_path=str(first / SCORES_FILE), **PRUNE_KW)
    assert PruningPlan.load(third / PLAN_FILE) == make_plan(scores, other)
    assert num_params(load_model(third)) == make_plan(scores, other).target.num_params()


def test_scores_for_another_arch_are_refused(scored, tmp_path, tiny_mamba2_model):
    _, scores = scored["nemotron_h"]
    path = scores.save(tmp_path / SCORES_FILE)
    other = dataclasses.replace(TINY_ARCH, ffn_hidden_size=96).validate()
    folder = tmp_path / "other"
    other.to_hf_config().save_pretrained(folder)  # config only: the refusal must come before loading
    with pytest.raises(ValueError, match="was computed for"):
        prune(str(folder), str(tmp_path / "out"), PruningConfig(target_ffn_hidden_size=64),
                         scores_path=str(path), device="cpu")
    assert not (tmp_path / "out").exists()
    # In memory too: a plan from these scores does not fit another model.
    plan = make_plan(scores, PruningConfig(target_hidden_size=32))
    with pytest.raises(PlanError, match="plan was made for"):
        apply_plan(tiny_mamba2_model, plan)


# =========================================================================== Lightning callback
def test_callback_prunes_then_fits(tiny_arch):
    import lightning as L

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(3)
    calibration = torch.randint(0, tiny_arch.vocab_size, (4, 32), generator=gen)
    train_ids = torch.randint(0, tiny_arch.vocab_size, (6, 32), generator=gen)

    class LM(L.LightningModule):
        def __init__(self, model):
            super().__init__()
            self.model = model
            self.losses: list[float] = []
            self.modes: list[bool] = []

        def training_step(self, batch, batch_idx):
            loss = self.model(input_ids=batch, labels=batch, use_cache=False).loss
            self.losses.append(loss.item())
            self.modes.append(all(m.training for m in self.model.modules()))
            return loss

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-3)

    source = make_model(tiny_arch).train()
    module = LM(source)
    config = PruningConfig(target_mamba_num_heads=4, target_ffn_hidden_size=64, target_hidden_size=48,
                           target_num_layers=6)
    callback = MinitronPruningCallback(config, calibration=calibration, batch_size=2, layer_importance_samples=2)
    trainer = L.Trainer(max_steps=3, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[callback])
    loader = torch.utils.data.DataLoader(train_ids, batch_size=2)
    trainer.fit(module, loader)

    assert callback.plan is not None and callback.scores is not None
    target = callback.plan.target
    assert target.num_layers == 6 and target.hidden_size == 48
    assert module.model is not source
    assert adapter_for(module.model).arch == target
    assert num_params(module.model) == target.num_params()
    optimizer = trainer.optimizers[0]
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert in_optimizer == {id(p) for p in module.model.parameters()}
    assert sum(p.numel() for group in optimizer.param_groups for p in group["params"]) == target.num_params()
    assert trainer.global_step == 3 and len(module.losses) == 3
    assert all(math.isfinite(x) for x in module.losses)
    assert module.modes == [True] * 3  # estimation's eval() was undone: the pruned model trains
    # Training really updated the pruned weights (AdamW state exists for them).
    assert all(id(p) in {id(q) for q in optimizer.state} for p in module.model.parameters() if p.requires_grad)


def test_callback_needs_calibration_or_scores():
    with pytest.raises(ValueError, match="calibration"):
        MinitronPruningCallback(PruningConfig(target_hidden_size=32))
