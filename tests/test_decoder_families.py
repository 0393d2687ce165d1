"""Plain transformer families (Llama, Qwen2, Qwen3, Mistral, Gemma3): shapes, trim rules and pruning on
every axis, on tiny random models of each family."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY_DECODER_ARCHS, assert_every_parameter_has_a_trim_rule, logits, make_decoder_model
from nemo_minitron.arch import ATTENTION, DECODER_LAYER, MLP, ArchError
from nemo_minitron.models import adapter_for, family_named, load_model, registry, save_checkpoint
from nemo_minitron.prune import PlanError, PruningConfig, PruningPlan, apply_plan, estimate_importance, make_plan

DECODERS = list(TINY_DECODER_ARCHS)
TIED = [name for name, arch in TINY_DECODER_ARCHS.items() if arch.tie_word_embeddings]


@pytest.fixture(scope="module")
def ids() -> torch.Tensor:
    return torch.randint(0, 1000, (2, 12), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def calibration() -> torch.Tensor:
    return torch.randint(0, 1000, (4, 16), generator=torch.Generator().manual_seed(1))


def _n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- shapes and rules
def test_every_decoder_family_is_registered():
    names = [f.name for f in registry.FAMILIES]
    assert all(name in names for name in DECODERS)
    assert family_named("gemma3").model_type == "gemma3_text"  # what Gemma3ForCausalLM and its GGUF load as


@pytest.mark.parametrize("family", DECODERS)
def test_arch_reads_back_from_the_model_and_counts_its_parameters(family):
    model = make_decoder_model(family)
    arch = TINY_DECODER_ARCHS[family]
    assert adapter_for(model).arch == arch
    assert arch.num_params() == _n_params(model)
    assert arch.num_layers == 3 and len(arch.pattern) == 6 and arch.layers[1] == (2, 3)


@pytest.mark.parametrize("family", DECODERS)
def test_every_parameter_has_a_trim_rule(family):
    model = make_decoder_model(family)
    arch, fam = TINY_DECODER_ARCHS[family], adapter_for(model).family
    assert_every_parameter_has_a_trim_rule(model, arch.pattern)
    for key in model.state_dict():
        rule = fam.trim_rule(key, arch.pattern)
        if rule.block is not None:  # attention-side tensors belong to the attention block, the rest to the MLP's
            assert arch.pattern[rule.block] == (ATTENTION if ".self_attn." in key or "input_layernorm" in key
                                                or (family == "gemma3" and "post_attention" in key) else MLP), key
    assert fam.trim_rule("model.layers.0.mlp.new_weight", arch.pattern) is None
    assert fam.trim_rule("model.layers.3.input_layernorm.weight", arch.pattern) is None  # no 4th layer


@pytest.mark.parametrize("family, changes, message", [
    ("mistral", dict(qkv_bias=True), "qkv_bias=True: mistral models always have qkv_bias=False"),
    ("qwen2", dict(qkv_bias=False), "qkv_bias=False: qwen2 models always have qkv_bias=True"),
    ("llama", dict(qkv_bias=True, attention_out_bias=False), "one setting \\(attention_bias\\)"),
    ("qwen3", dict(qk_norm=False), "qk_norm=False"),
    ("gemma3", dict(post_norms=False), "post_norms=False"),
    ("llama", dict(mlp_gated=False), "mlp_gated=False"),
    ("llama", dict(pattern="*-*"), "'\\*-' repeated"),
    ("gemma3", dict(hidden_size=66), "hidden_size=66 must be a multiple of num_attention_heads=4"),
])
def test_layouts_a_family_cannot_have_are_refused(family, changes, message):
    with pytest.raises(ArchError, match=message):
        dataclasses.replace(TINY_DECODER_ARCHS[family], **changes).validate()


def test_nemotron_h_refuses_transformer_layout_flags(tiny_arch):
    with pytest.raises(ArchError, match="mlp_gated=True: nemotron_h"):
        dataclasses.replace(tiny_arch, mlp_gated=True).validate()


# --------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("family", DECODERS)
def test_keep_all_plan_is_exact(family, ids):
    model = make_decoder_model(family)
    pruned = apply_plan(model, PruningPlan.keep_all(TINY_DECODER_ARCHS[family]))
    assert torch.equal(logits(pruned, ids), logits(model, ids))
    assert getattr(pruned.config, "layer_types", None) == getattr(model.config, "layer_types", None)


def _head_plan(arch, order: list[int]) -> PruningPlan:
    plan = PruningPlan.keep_all(arch)
    plan.attention_heads = {i: list(order) for i in plan.attention_heads}
    return plan


@pytest.mark.parametrize("family", DECODERS)
def test_query_heads_permuted_within_their_kv_group_change_nothing(family, ids):
    """Heads 0,1 read KV head 0 and heads 2,3 read KV head 1: swapping within a group is the same model."""
    model = make_decoder_model(family)
    swapped = apply_plan(model, _head_plan(TINY_DECODER_ARCHS[family], [1, 0, 3, 2]))
    assert not torch.equal(swapped.model.layers[0].self_attn.q_proj.weight, model.model.layers[0].self_attn.q_proj.weight)
    torch.testing.assert_close(logits(swapped, ids), logits(model, ids), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", DECODERS)
def test_query_heads_moved_across_kv_groups_change_the_model_and_are_refused(family, ids):
    model = make_decoder_model(family)
    plan = _head_plan(TINY_DECODER_ARCHS[family], [0, 2, 1, 3])
    with pytest.raises(PlanError, match="KV group"):
        plan.validate()
    crossed = apply_plan(model, plan, validate=False)
    assert (logits(crossed, ids) - logits(model, ids)).abs().max() > 1e-3


# --------------------------------------------------------------------------- pruning every axis
_ALL_AXES = PruningConfig(target_hidden_size=48, target_ffn_hidden_size=64, target_num_attention_heads=2,
                          target_num_layers=2)


@pytest.mark.parametrize("family", DECODERS)
def test_prune_every_axis_then_reload_with_plain_transformers_and_generate(family, calibration, ids, tmp_path):
    from transformers import AutoModelForCausalLM

    model = make_decoder_model(family)
    source = TINY_DECODER_ARCHS[family]
    scores = estimate_importance(model, calibration, batch_size=2, progress=False)
    assert scores.layers["kl"].shape == scores.layers["cosine"].shape == (source.num_layers,)
    assert sorted(scores.ffn) == [1, 3, 5] and sorted(scores.attention) == [0, 2, 4]
    plan = make_plan(scores, _ALL_AXES)
    assert len(plan.kept_layers) == 4 and all(b % 2 == 0 and b + 1 in plan.kept_layers for b in plan.kept_layers[::2])
    pruned = apply_plan(model, plan)
    target = plan.target
    assert (target.num_layers, target.hidden_size, target.ffn_hidden_size, target.num_attention_heads) == (2, 48, 64, 2)
    assert target.num_query_groups == source.num_query_groups and target.attention_head_dim == source.attention_head_dim
    assert adapter_for(pruned).arch == target and _n_params(pruned) == target.num_params()
    assert pruned.config.head_dim == source.attention_head_dim
    expected = logits(pruned, ids)

    save_checkpoint(pruned, tmp_path / "pruned")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "pruned", local_files_only=True).eval()
    assert type(reloaded) is type(model)
    assert torch.equal(logits(reloaded, ids), expected)
    assert torch.equal(logits(load_model(tmp_path / "pruned"), ids), expected)
    out = reloaded.generate(ids[:1, :4], max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert out.shape == (1, 10)
    if source.tie_word_embeddings:
        assert reloaded.lm_head.weight is reloaded.model.embed_tokens.weight


@pytest.mark.parametrize("family", TIED)
def test_tied_lm_head_stays_tied(family, calibration):
    model = make_decoder_model(family)
    scores = estimate_importance(model, calibration, layer_metrics=(), progress=False)
    pruned = apply_plan(model, make_plan(scores, PruningConfig(target_hidden_size=32)))
    assert pruned.config.tie_word_embeddings
    assert pruned.lm_head.weight is pruned.model.embed_tokens.weight
    assert _n_params(pruned) == TINY_DECODER_ARCHS[family].replace(hidden_size=32).num_params()


def test_depth_keeps_or_drops_decoder_layers_whole(calibration):
    model = make_decoder_model("llama")
    arch = TINY_DECODER_ARCHS["llama"]
    scores = estimate_importance(model, calibration, layer_metrics=("cosine",), progress=False)
    plan = make_plan(scores, PruningConfig(drop_layers=[2]))  # 1-based decoder layer numbers
    assert plan.kept_layers == [0, 1, 4, 5] and plan.kept_source_layers == [0, 2]
    assert plan.target.pattern == DECODER_LAYER * 2
    split = dataclasses.replace(plan, kept_layers=[0, 1, 2, 5])
    with pytest.raises(PlanError, match="whole"):
        split.validate()
    assert make_plan(scores, PruningConfig(target_num_layers=1, layer_metric="cosine")).target.num_layers == 1
    with pytest.raises(ValueError, match="target_num_layers=4 is larger"):
        make_plan(scores, PruningConfig(target_num_layers=4))
    assert arch.num_layers == 3


def test_kl_layer_scores_equal_removing_the_decoder_layer(calibration):
    model = make_decoder_model("qwen3")
    scores = estimate_importance(model, calibration, batch_size=4, layer_metrics=("kl",), progress=False)
    full = F.log_softmax(logits(model, calibration), dim=-1)
    for layer in range(3):
        dropped = apply_plan(model, make_plan(scores, PruningConfig(drop_layers=[layer + 1])))
        part = F.log_softmax(logits(dropped, calibration), dim=-1)
        kl = (full.exp() * (full - part)).sum(-1).mean()
        torch.testing.assert_close(scores.layers["kl"][layer], kl, rtol=2e-3, atol=1e-7)


def test_gated_ffn_neurons_are_scored_on_the_down_proj_input(calibration):
    """A neuron whose up row is zero never reaches down_proj (act(gate) * 0): its score is exactly zero."""
    model = make_decoder_model("mistral")
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight[5].zero_()
    scores = estimate_importance(model, calibration, layer_metrics=(), progress=False)
    assert scores.ffn[3][5] == 0 and (scores.ffn[3] > 0).sum() == 95


def test_gemma3_depth_pruning_keeps_the_kept_layers_attention_types(calibration):
    model = make_decoder_model("gemma3")
    scores = estimate_importance(model, calibration, layer_metrics=(), progress=False)
    pruned = apply_plan(model, make_plan(scores, PruningConfig(drop_layers=[1])))
    assert pruned.config.layer_types == ["full_attention", "sliding_attention"]
    assert pruned.config.sliding_window == 4
    assert [layer.self_attn.sliding_window for layer in pruned.model.layers] == [None, 4]


def test_gemma3_hidden_pruning_keeps_embedding_values_and_the_tied_head(calibration, ids):
    """Gemma3 multiplies embeddings by sqrt(hidden_size): pruned embeddings keep the source's values on the
    kept channels, and the tied head's logits are those of the source head on those channels."""
    from transformers.models.gemma3.modeling_gemma3 import Gemma3RMSNorm

    model = make_decoder_model("gemma3")
    scores = estimate_importance(model, calibration, layer_metrics=(), progress=False)
    plan = make_plan(scores, PruningConfig(target_hidden_size=40))
    pruned = apply_plan(model, plan)
    kept = torch.as_tensor(plan.hidden)
    with torch.no_grad():
        torch.testing.assert_close(pruned.model.embed_tokens(ids), model.model.embed_tokens(ids)[..., kept])
        x = torch.randn(3, 40)
        source_norm = Gemma3RMSNorm(40, eps=model.config.rms_norm_eps)
        source_norm.weight.copy_(model.model.norm.weight[kept])
        expected = source_norm(x) @ model.lm_head.weight[:, kept].T
        torch.testing.assert_close(pruned.lm_head(pruned.model.norm(x)), expected, rtol=1e-5, atol=1e-5)


def test_arch_files_hold_transformer_flags_only_when_set(tiny_arch):
    """Plans and scores of hybrid models read as before the flags existed; decoders round-trip."""
    from nemo_minitron.arch import HybridArch, TRANSFORMER_FLAGS

    assert not set(TRANSFORMER_FLAGS) & set(tiny_arch.to_dict())
    for arch in TINY_DECODER_ARCHS.values():
        assert HybridArch(**arch.to_dict()) == arch and arch.to_dict()["mlp_gated"] is True
