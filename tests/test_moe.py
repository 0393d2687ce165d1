"""Hybrid MoE models (Nemotron 3 Nano style: Mamba + attention + MoE blocks): shapes, exact total and active
parameter counts, expert / expert-neuron / shared-expert pruning, every other axis on MoE hybrids, refusal of bad
targets before loading, and checkpoints that round-trip through transformers' own per-expert hub layout."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import logits, make_model
from nemo_minitron.arch import MOE, ArchError, HybridArch, preset
from nemo_minitron.models import adapter_for, load_model, save_checkpoint
from nemo_minitron.prune.config import PruningConfig, PruningConfigError
from nemo_minitron.prune.importance import ImportanceScores, estimate_importance
from nemo_minitron.prune.plan import PlanError, PruningPlan
from nemo_minitron.prune.rank import make_plan
from nemo_minitron.prune.search import SearchSpace, check_budget, enumerate_candidates
from nemo_minitron.prune.trim import apply_plan
from nemo_minitron.stages.prune import PLAN_FILE, SCORES_FILE, prune

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Every NemotronH layer kind: 2 MoE layers of 8 routed experts (top-2) and a shared expert, Mamba, attention, MLP.
MOE_ARCH = HybridArch(
    family="nemotron_h", pattern="ME*E-M", hidden_size=64, vocab_size=1000, ffn_hidden_size=96,
    num_attention_heads=4, num_query_groups=2, attention_head_dim=16, mamba_num_heads=8, mamba_head_dim=16,
    mamba_num_groups=2, mamba_state_dim=16, num_moe_experts=8, moe_router_topk=2, moe_ffn_hidden_size=32,
    moe_shared_expert_intermediate_size=48,
).validate()
#: Grouped routing (2 router groups, a token uses 1 of them), 2 shared experts, MLP biases.
GROUPED_ARCH = dataclasses.replace(MOE_ARCH, moe_router_num_groups=2, moe_router_group_topk=1,
                                   moe_shared_experts=2, mlp_bias=True).validate()
MOE_LAYERS = [i for i, s in enumerate(MOE_ARCH.pattern) if s == MOE]


def active_params_of(model: torch.nn.Module) -> int:
    """What one token uses, counted on the instantiated model: every parameter, except that of each MoE block's
    stacked routed experts only top-k of the experts' share."""
    arch = adapter_for(model).arch
    total = 0
    for name, param in model.named_parameters():
        if ".mixer.experts." in name:
            assert param.shape[0] == arch.num_moe_experts, name
            total += param.numel() // arch.num_moe_experts * arch.moe_router_topk
        else:
            total += param.numel()
    return total


def num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture
def ids() -> torch.Tensor:
    return torch.randint(0, MOE_ARCH.vocab_size, (6, 24), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def moe_scored():
    """The tiny MoE model and its importance scores (6 samples x 24 tokens: every expert is reached)."""
    model = make_model(MOE_ARCH)
    calib = torch.randint(0, MOE_ARCH.vocab_size, (6, 24), generator=torch.Generator().manual_seed(1))
    return model, estimate_importance(model, calib, batch_size=3, kl_max_samples=3, progress=False)


# =========================================================================== shapes and counts
@pytest.mark.parametrize("arch", [MOE_ARCH, GROUPED_ARCH], ids=["moe", "grouped+bias"])
def test_total_and_active_counts_equal_the_model(arch):
    model = make_model(arch)
    assert arch.num_params() == num_params(model)
    assert arch.num_active_params() == active_params_of(model) < arch.num_params()
    assert adapter_for(model).arch == arch
    assert HybridArch.from_hf_config(arch.to_hf_config()) == arch


def test_counts_without_moe_are_unchanged(tiny_arch):
    assert tiny_arch.num_active_params() == tiny_arch.num_params()
    assert set(tiny_arch.to_dict()) == {f.name for f in dataclasses.fields(HybridArch)} - {
        "num_moe_experts", "moe_router_topk", "moe_ffn_hidden_size", "moe_shared_expert_intermediate_size",
        "moe_shared_experts", "moe_router_num_groups", "moe_router_group_topk",
        "mlp_gated", "qkv_bias", "attention_out_bias", "qk_norm", "post_norms"}


@pytest.mark.parametrize("name, total, active", [
    # Model Optimizer's Nemotron-3-Nano tutorial logs: 31.58B / 3.58B source, 22.28B / 3.00B best subnet.
    ("nemotron-3-nano-30b-a3b", 31.58e9, 3.58e9), ("nemotron-3-nano-22b-a3b", 22.28e9, 3.00e9)])
def test_nano_presets_count_exactly_on_the_meta_device(name, total, active):
    from transformers import AutoModelForCausalLM

    arch = preset(name)
    assert (arch.count("M"), arch.count("E"), arch.count("*"), arch.num_layers) == (23, 23, 6, 52)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(arch.to_hf_config())
    assert arch.num_params() == num_params(model)
    assert arch.num_active_params() == active_params_of(model)
    assert arch.num_params() == pytest.approx(total, abs=0.005e9)
    assert arch.num_active_params() == pytest.approx(active, abs=0.005e9)


def test_the_22b_preset_is_the_30b_pruned_on_the_published_axes():
    source, target = preset("nemotron-3-nano-30b-a3b"), preset("nemotron-3-nano-22b-a3b")
    config = PruningConfig(target_hidden_size=2304, target_num_moe_experts=104,
                           target_moe_shared_expert_intermediate_size=3072)
    config.check(source)
    assert config.target_widths(source) == target


def test_the_nano_recipe_prunes_to_the_preset():
    from recipes.scale import NEMOTRON_3_NANO_TO_22B_A3B

    source = preset("nemotron-3-nano-30b-a3b")
    NEMOTRON_3_NANO_TO_22B_A3B.check(source)
    assert NEMOTRON_3_NANO_TO_22B_A3B.target_widths(source) == preset("nemotron-3-nano-22b-a3b")


@pytest.mark.parametrize("changes, message", [
    (dict(num_moe_experts=0), "num_moe_experts"),
    (dict(moe_router_topk=9), "moe_router_topk=9"),
    (dict(num_moe_experts=7, moe_router_num_groups=2), "not divisible by moe_router_num_groups"),
    (dict(moe_shared_experts=5), "moe_shared_expert_intermediate_size=48 is not divisible by moe_shared_experts=5"),
    (dict(moe_router_group_topk=2), "topk_group"),
    (dict(pattern="MX*"), "'X'"),
])
def test_invalid_moe_shapes_name_the_field(changes, message):
    with pytest.raises(ArchError, match=message):
        dataclasses.replace(MOE_ARCH, **changes).validate()


def test_latent_moe_is_refused():
    config = MOE_ARCH.to_hf_config()
    config.moe_latent_size = 16
    with pytest.raises(ArchError, match="moe_latent_size=16.*not supported"):
        HybridArch.from_hf_config(config)


# =========================================================================== exactness
def test_keep_all_is_exact(ids):
    model = make_model(MOE_ARCH)
    assert torch.equal(logits(apply_plan(model, PruningPlan.keep_all(MOE_ARCH)), ids), logits(model, ids))


def test_plan_without_targets_is_keep_all(moe_scored, ids):
    model, scores = moe_scored
    plan = make_plan(scores, PruningConfig())
    assert plan == PruningPlan.keep_all(MOE_ARCH)
    assert torch.equal(logits(apply_plan(model, plan), ids), logits(model, ids))


def test_an_all_zero_expert_is_the_first_removed(ids):
    """Expert 0 of the first MoE layer has all-zero weights: its routed output is 0, so it is removed first,
    although ties would keep the lower index (the hard case); every other expert scores above 0."""
    model = make_model(MOE_ARCH)
    layer = MOE_LAYERS[0]
    experts = model.model.layers[layer].mixer.experts
    with torch.no_grad():
        experts.up_proj[0].zero_()
        experts.down_proj[0].zero_()
    scores = estimate_importance(model, ids, batch_size=3, layer_metrics=(), progress=False)
    table = scores.moe_experts[layer]
    assert scores.moe_expert_tokens[layer][0] > 0  # the router still sends it tokens
    assert table[0] == 0 and bool((table[1:] > 0).all())
    plan = make_plan(scores, PruningConfig(target_num_moe_experts=MOE_ARCH.num_moe_experts - 1))
    assert plan.moe_experts[layer] == list(range(1, MOE_ARCH.num_moe_experts))


def test_expert_scores_are_routed_output_norms(ids):
    """The score of an expert is the mean over its routed tokens of ||router weight * expert(x)||: doubling an
    expert's down projection doubles exactly its own score."""
    model = make_model(MOE_ARCH)
    before = estimate_importance(model, ids, batch_size=3, layer_metrics=(), progress=False)
    with torch.no_grad():
        model.model.layers[MOE_LAYERS[0]].mixer.experts.down_proj[3].mul_(2)
    after = estimate_importance(model, ids, batch_size=3, layer_metrics=(), progress=False)
    ratio = after.moe_experts[MOE_LAYERS[0]] / before.moe_experts[MOE_LAYERS[0]]
    assert ratio[3] == pytest.approx(2, rel=1e-5)
    assert torch.allclose(ratio[torch.arange(8) != 3], torch.ones(7), rtol=1e-5)


def test_zeroed_neurons_of_each_expert_are_removed_and_logits_kept(ids):
    """Each routed expert gets a different set of dead neurons (zero up_proj rows; relu2(0) = 0), and the shared
    expert dead neurons in both of its halves: pruning exactly that many removes exactly those, per expert,
    and the model computes the same function."""
    model = make_model(GROUPED_ARCH)
    gen = torch.Generator().manual_seed(3)
    dead: dict[int, list[set[int]]] = {}
    with torch.no_grad():
        for layer in MOE_LAYERS:
            mixer = model.model.layers[layer].mixer
            dead[layer] = []
            for e in range(GROUPED_ARCH.num_moe_experts):
                rows = torch.randperm(GROUPED_ARCH.moe_ffn_hidden_size, generator=gen)[:8]
                mixer.experts.up_proj[e, rows] = 0
                dead[layer].append(set(rows.tolist()))
            half = GROUPED_ARCH.moe_shared_expert_intermediate_size // 2
            for rows in (torch.tensor([1, 5, 7]), torch.tensor([half, half + 2, half + 9])):
                mixer.shared_experts.up_proj.weight[rows] = 0
                mixer.shared_experts.up_proj.bias[rows] = 0
    reference = logits(model, ids)
    scores = estimate_importance(model, ids, batch_size=3, layer_metrics=(), progress=False)
    config = PruningConfig(target_moe_ffn_hidden_size=GROUPED_ARCH.moe_ffn_hidden_size - 8,
                           target_moe_shared_expert_intermediate_size=GROUPED_ARCH.moe_shared_expert_intermediate_size - 6)
    plan = make_plan(scores, config)
    for layer in MOE_LAYERS:
        for e, kept in zip(plan.moe_experts[layer], plan.moe_ffn[layer]):
            assert set(kept) == set(range(GROUPED_ARCH.moe_ffn_hidden_size)) - dead[layer][e]
        assert not {1, 5, 7, 24, 26, 33} & set(plan.moe_shared[layer])
    assert len({tuple(k) for k in plan.moe_ffn[MOE_LAYERS[0]]}) > 1  # the experts really keep different neurons
    pruned = apply_plan(model, plan)
    assert num_params(pruned) == plan.target.num_params()
    torch.testing.assert_close(logits(pruned, ids), reference, rtol=1e-5, atol=1e-5)


def test_experts_stay_in_their_router_group(ids):
    model = make_model(GROUPED_ARCH)
    scores = estimate_importance(model, ids, batch_size=3, layer_metrics=(), progress=False)
    scores.moe_experts[MOE_LAYERS[0]] = torch.tensor([9.0, 8, 7, 6, 1, 2, 3, 4])  # group 0 dominates
    plan = make_plan(scores, PruningConfig(target_num_moe_experts=4))
    assert plan.moe_experts[MOE_LAYERS[0]] == [0, 1, 6, 7]  # two per router group
    bad = dataclasses.replace(plan, moe_experts={**plan.moe_experts, MOE_LAYERS[0]: [0, 1, 2, 7]})
    with pytest.raises(PlanError, match="router group"):
        bad.validate()
    pruned = apply_plan(model, plan)
    assert logits(pruned, ids).isfinite().all()


# =========================================================================== every axis on an MoE hybrid
AXES = {
    "hidden": dict(target_hidden_size=48),
    "mamba_heads": dict(target_mamba_num_heads=4),
    "mamba_head_dim": dict(target_mamba_head_dim=8),
    "attention_heads": dict(target_num_attention_heads=2),
    "ffn": dict(target_ffn_hidden_size=64),
    "experts": dict(target_num_moe_experts=4),
    "expert_ffn": dict(target_moe_ffn_hidden_size=16),
    "shared": dict(target_moe_shared_expert_intermediate_size=24),
    "depth": dict(target_num_layers=4),
    "drop_moe_layers": dict(drop_layers=[2, 4]),
    "everything": dict(target_hidden_size=48, target_mamba_num_heads=4, target_mamba_head_dim=8,
                       target_num_attention_heads=2, target_ffn_hidden_size=64, target_num_moe_experts=4,
                       target_moe_ffn_hidden_size=16, target_moe_shared_expert_intermediate_size=24,
                       target_num_layers=5),
}


@pytest.mark.parametrize("axis", sorted(AXES))
def test_every_axis_prunes_an_moe_hybrid(moe_scored, axis, ids):
    model, scores = moe_scored
    plan = make_plan(scores, PruningConfig(**AXES[axis]))
    pruned = apply_plan(model, plan)
    assert adapter_for(pruned).arch == plan.target
    assert num_params(pruned) == plan.target.num_params() < MOE_ARCH.num_params()
    assert active_params_of(pruned) == plan.target.num_active_params()
    out = logits(pruned, ids)
    assert out.shape == (*ids.shape, MOE_ARCH.vocab_size) and out.isfinite().all()
    if axis == "drop_moe_layers":
        assert plan.target.pattern == "M*-M" and MOE not in plan.target.pattern
        assert plan.target.num_moe_experts == 0 and plan.target.num_active_params() == plan.target.num_params()


def test_depth_pruning_ranks_moe_layers_like_any_other(moe_scored):
    _, scores = moe_scored
    kl = scores.layer_scores("kl")
    keep = 3
    plan = make_plan(scores, PruningConfig(target_num_layers=keep))
    assert sorted(plan.kept_layers) == sorted(torch.sort(kl, descending=True, stable=True).indices[:keep].tolist())


# =========================================================================== bad targets, before any loading
BAD = [
    ("more_experts_than_exist", MOE_ARCH, dict(target_num_moe_experts=9), r"target_num_moe_experts=9 is larger"),
    ("top_k_above_kept", dataclasses.replace(MOE_ARCH, moe_router_topk=3), dict(target_num_moe_experts=2),
     r"target_num_moe_experts=2 would keep fewer experts than the num_experts_per_tok=3.*at least 3 experts"),
    ("top_k_above_reachable_groups", dataclasses.replace(GROUPED_ARCH, moe_router_topk=3),
     dict(target_num_moe_experts=4), r"target_num_moe_experts=4 would leave a token 2 experts.*num_experts_per_tok=3.*at least 6 experts"),
    ("experts_not_divisible_by_groups", GROUPED_ARCH, dict(target_num_moe_experts=5),
     r"target_num_moe_experts=5 is not divisible by the 2 router groups.*same number of experts"),
    ("one_expert_per_group", dataclasses.replace(GROUPED_ARCH, moe_router_topk=1), dict(target_num_moe_experts=2),
     r"target_num_moe_experts=2 leaves 1 expert\(s\) per router group"),
    ("shared_not_divisible", GROUPED_ARCH, dict(target_moe_shared_expert_intermediate_size=31),
     r"target_moe_shared_expert_intermediate_size=31 is not divisible by the 2 shared experts"),
    ("shared_larger", MOE_ARCH, dict(target_moe_shared_expert_intermediate_size=49),
     r"target_moe_shared_expert_intermediate_size=49 is larger"),
    ("expert_ffn_larger", MOE_ARCH, dict(target_moe_ffn_hidden_size=33), r"target_moe_ffn_hidden_size=33 is larger"),
    ("expert_ffn_zero", MOE_ARCH, dict(target_moe_ffn_hidden_size=0), r"target_moe_ffn_hidden_size=0 must be"),
    ("experts_without_moe", preset("tiny"), dict(target_num_moe_experts=4),
     r"target_num_moe_experts cannot be set.*no MoE layers"),
]


@pytest.mark.parametrize("arch, kwargs, pattern", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_moe_targets_are_refused_before_loading(tmp_path, arch, kwargs, pattern):
    folder = tmp_path / "config_only"
    arch.validate().to_hf_config().save_pretrained(folder)
    with pytest.raises(PruningConfigError, match=r"pruning_config\." + pattern):
        prune(str(folder), str(tmp_path / "out"), PruningConfig(**kwargs), device="cpu")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config_only"]


# =========================================================================== checkpoints
def _hub_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers state dict in the layout of NVIDIA's hub checkpoints: ``backbone.`` and one tensor per expert."""
    out = {}
    for key, tensor in state.items():
        key = "backbone." + key.removeprefix("model.") if key.startswith("model.") else key
        if key.endswith(("mixer.experts.up_proj", "mixer.experts.down_proj")):
            stem, proj = key.rsplit(".", 1)
            out.update({f"{stem}.{e}.{proj}.weight": w.clone() for e, w in enumerate(tensor)})
        else:
            out[key] = tensor.clone().contiguous()
    return out


def test_hub_per_expert_checkpoint_round_trips_through_pruning(tmp_path, ids):
    """A checkpoint written by hand in the hub layout (per-expert tensors, ``backbone.``, MTP weights and
    ``num_nextn_predict_layers=1``) loads through transformers' conversion, prunes, saves in the same hub layout
    (transformers splits the experts again) and reloads with plain transformers: same logits, generate works,
    the MTP layer is dropped and the config says so."""
    from transformers import AutoModelForCausalLM

    model = make_model(MOE_ARCH)
    src = tmp_path / "hub"
    src.mkdir()
    hub = _hub_layout(model.state_dict())
    assert "backbone.layers.1.mixer.experts.7.down_proj.weight" in hub
    hub["mtp.layers.0.mixer.q_proj.weight"] = torch.randn(8, 8)
    save_file(hub, str(src / "model.safetensors"), metadata={"format": "pt"})
    config = MOE_ARCH.to_hf_config().to_dict()
    config.update(num_nextn_predict_layers=1, architectures=["NemotronHForCausalLM"])
    (src / "config.json").write_text(json.dumps(config))

    loaded = load_model(src).eval()
    assert torch.equal(logits(loaded, ids), logits(model, ids))
    scores = estimate_importance(loaded, ids, batch_size=3, layer_metrics=(), progress=False)
    plan = make_plan(scores, PruningConfig(target_num_moe_experts=6, target_moe_ffn_hidden_size=24,
                                           target_moe_shared_expert_intermediate_size=40, target_hidden_size=56))
    pruned = apply_plan(loaded, plan)
    out = save_checkpoint(pruned, tmp_path / "pruned", source=src)
    saved = load_file(str(out / "model.safetensors"))
    assert "backbone.layers.1.mixer.experts.5.up_proj.weight" in saved
    assert "backbone.layers.1.mixer.experts.6.up_proj.weight" not in saved
    assert saved["backbone.layers.1.mixer.experts.5.up_proj.weight"].shape == (24, 56)
    assert not any(k.startswith("mtp.") for k in saved)
    written = json.loads((out / "config.json").read_text())
    assert (written["n_routed_experts"], written["num_experts_per_tok"], written["moe_intermediate_size"],
            written["moe_shared_expert_intermediate_size"], written["num_nextn_predict_layers"]) == (6, 2, 24, 40, 0)

    plain = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    assert torch.equal(logits(plain, ids), logits(pruned, ids))
    generated = plain.generate(ids[:1, :6], max_new_tokens=5, do_sample=False)
    assert generated.shape == (1, 11)
    assert torch.equal(generated, pruned.generate(ids[:1, :6], max_new_tokens=5, do_sample=False))


def test_bf16_save_keeps_the_router_correction_bias_fp32(tmp_path):
    model = make_model(MOE_ARCH)
    bias = model.model.layers[1].mixer.gate.e_score_correction_bias
    bias.copy_(torch.linspace(0.1, 0.1001, 8))
    want = bias.clone()
    out = save_checkpoint(model, tmp_path / "bf16", dtype=torch.bfloat16)
    saved = load_file(str(out / "model.safetensors"))
    assert saved["backbone.layers.1.mixer.gate.weight"].dtype == torch.bfloat16
    assert torch.equal(saved["backbone.layers.1.mixer.gate.e_score_correction_bias"], want)


# =========================================================================== the prune stage and scores files
CALIB_TEXT = ("The quick brown fox jumps over the lazy dog while the river runs past the old mill.",
              "Scientists measured the temperature of the lake every morning for three years.",
              "A small village on the coast depends on fishing, tourism and a weekly market.")
STAGE_MOE = dataclasses.replace(MOE_ARCH, vocab_size=32000, hidden_size=32, moe_ffn_hidden_size=16,
                                moe_shared_expert_intermediate_size=24, ffn_hidden_size=48).validate()


def test_prune_stage_on_an_moe_checkpoint(tmp_path):
    from nemo_minitron.data.tokenizer import load_default_tokenizer

    save_checkpoint(make_model(STAGE_MOE), tmp_path / "model", tokenizer=load_default_tokenizer())
    calib = tmp_path / "calib.txt"
    calib.write_text("\n".join(CALIB_TEXT * 12) + "\n")
    config = PruningConfig(target_num_moe_experts=4, target_moe_ffn_hidden_size=8, target_hidden_size=24)
    summary = prune(str(tmp_path / "model"), str(tmp_path / "out"), config, calib_data_path=str(calib),
                    num_samples=6, seq_length=32, batch_size=3, layer_importance_samples=3, device="cpu")
    plan = PruningPlan.load(tmp_path / "out" / PLAN_FILE)
    assert plan.target == config.target_widths(STAGE_MOE) and summary["target_params"] == plan.target.num_params()
    data = json.loads((tmp_path / "out" / PLAN_FILE).read_text())
    assert len(data["moe_experts"]["1"]) == 4 and len(data["moe_ffn"]["1"]) == 4 and len(data["moe_ffn"]["1"][0]) == 8
    scores = ImportanceScores.load(tmp_path / "out" / SCORES_FILE)
    assert set(scores.moe_experts) == set(scores.moe_ffn) == set(scores.moe_shared) == set(MOE_LAYERS)
    assert scores.moe_ffn[1].shape == (8, 16) and int(scores.moe_expert_tokens[1].sum()) == 6 * 32 * 2
    assert make_plan(scores, config) == plan
    pruned = load_model(tmp_path / "out")
    assert num_params(pruned) == plan.target.num_params()


# =========================================================================== search budgets
def test_search_under_an_active_parameter_budget(moe_scored):
    _, scores = moe_scored
    budget = int(MOE_ARCH.num_active_params() * 0.8)
    space = SearchSpace(num_layers=[6], fractions=[1.0, 0.75, 0.5])
    found = enumerate_candidates(MOE_ARCH, scores, None, 0.1, space, target_active_params=budget)
    assert found and all(0.9 * budget <= arch.num_active_params() <= budget for _, arch in found)
    assert {arch.num_moe_experts for _, arch in found} > {8}  # expert counts are searched too
    cap = min(arch.num_params() for _, arch in found) + 1
    capped = enumerate_candidates(MOE_ARCH, scores, cap, 0.1, space, target_active_params=budget)
    assert capped and all(arch.num_params() <= cap for _, arch in capped) and len(capped) < len(found)


def test_budget_errors_name_the_argument(tiny_arch):
    with pytest.raises(ValueError, match="target_params.*or target_active_params"):
        check_budget(MOE_ARCH, None, None)
    with pytest.raises(ValueError, match="target_active_params needs a model with MoE layers"):
        check_budget(tiny_arch, None, 1000)
    with pytest.raises(ValueError, match="active parameters"):
        check_budget(MOE_ARCH, None, MOE_ARCH.num_active_params())


def test_search_stage_under_an_active_budget_distills_an_moe_candidate(tmp_path):
    """The search stage end to end on an MoE checkpoint: an active budget with a total cap admits exactly the
    candidate with fewer experts and narrower experts; it is pruned, distilled from the MoE teacher and saved."""
    from nemo_minitron.data.tokenizer import load_default_tokenizer
    from nemo_minitron.stages.search import search

    teacher = tmp_path / "teacher"
    save_checkpoint(make_model(STAGE_MOE), teacher, tokenizer=load_default_tokenizer())
    small = STAGE_MOE.replace(num_moe_experts=6, moe_ffn_hidden_size=8)
    space = SearchSpace(num_layers=[6], hidden_size=[32], ffn_hidden_size=[48], mamba_num_heads=[8],
                        mamba_head_dim=[16], num_moe_experts=[8, 6], moe_ffn_hidden_size=[16, 8],
                        moe_shared_expert_intermediate_size=[24])
    summary = search(str(teacher), str(tmp_path / "search"), target_params=small.num_params(),
                     target_active_params=STAGE_MOE.num_active_params() - 1, tolerance=0.2, top_k=1,
                     distill_steps=2, space=space, num_samples=4, seq_length=32, val_samples=4,
                     distill_kwargs=dict(micro_batch_size=2, global_batch_size=2, limit_val_batches=1))
    best = summary["best_record"]
    assert summary["num_candidates"] == 1 and (best["num_moe_experts"], best["moe_ffn_hidden_size"]) == (6, 8)
    assert (best["params"], best["active_params"]) == (small.num_params(), small.num_active_params())
    distilled = load_model(tmp_path / "search" / "selected")
    assert adapter_for(distilled).arch == small
