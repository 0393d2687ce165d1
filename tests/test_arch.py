"""HybridArch: exact parameter count, HF config round trips, validation messages."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nemo_minitron.arch import (ATTENTION, DECODER_LAYER, MAMBA, MLP, NEMOTRON_H_8B_PATTERN, PRESETS, ArchError,
                                HybridArch, preset)
from nemo_minitron.models import family_named


def hf_param_count(arch: HybridArch) -> int:
    """Parameters of the real HF model of this shape, built without allocating memory."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(arch.to_hf_config())
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- strategies
_widths = st.sampled_from([8, 16, 24, 32])


@st.composite
def nemotron_h_archs(draw, all_kinds: bool = False) -> HybridArch:
    """Random valid NemotronH shapes (never tied: NemotronHForCausalLM has no tied LM head).
    Fields of layer kinds absent from the pattern are left at 0."""
    if all_kinds:
        body = draw(st.text(alphabet="M*-", min_size=0, max_size=4))
        order = draw(st.permutations([MAMBA, ATTENTION, MLP]))
        pattern = "".join(order) + body
    else:
        pattern = draw(st.text(alphabet="M*-", min_size=1, max_size=6))
    fields: dict = dict(
        family="nemotron_h", pattern=pattern, hidden_size=draw(_widths),
        vocab_size=draw(st.integers(16, 300)),
        mamba_proj_bias=draw(st.booleans()), mamba_conv_bias=draw(st.booleans()), mlp_bias=draw(st.booleans()),
    )
    if MAMBA in pattern:
        groups = draw(st.sampled_from([1, 2, 4]))
        fields.update(
            mamba_num_groups=groups,
            mamba_num_heads=groups * draw(st.integers(1, 3)),
            mamba_head_dim=draw(st.sampled_from([4, 8, 16])),
            mamba_state_dim=draw(st.sampled_from([4, 8, 16])),
            mamba_conv_kernel=draw(st.integers(2, 4)),
        )
    if ATTENTION in pattern:
        kv = draw(st.sampled_from([1, 2, 4]))
        fields.update(
            num_query_groups=kv,
            num_attention_heads=kv * draw(st.integers(1, 3)),  # GQA (or MHA when the factor is 1)
            attention_head_dim=draw(st.sampled_from([4, 8, 16])),
        )
    if MLP in pattern:
        fields.update(ffn_hidden_size=draw(st.integers(1, 96)))
    return HybridArch(**fields).validate()


@st.composite
def mamba2_archs(draw) -> HybridArch:
    """Random valid Mamba2 shapes: heads*head_dim is an integer multiple (expand) of hidden."""
    groups = draw(st.sampled_from([1, 2, 4]))
    heads = groups * draw(st.integers(1, 4))
    head_dim = draw(st.sampled_from([4, 8, 16]))
    inner = heads * head_dim
    hidden = draw(st.sampled_from([d for d in range(4, inner + 1) if inner % d == 0]))
    return HybridArch(
        family="mamba2", pattern=MAMBA * draw(st.integers(1, 4)), hidden_size=hidden,
        vocab_size=draw(st.integers(16, 300)), mamba_num_heads=heads, mamba_head_dim=head_dim,
        mamba_num_groups=groups, mamba_state_dim=draw(st.sampled_from([4, 8, 16])),
        mamba_conv_kernel=draw(st.integers(2, 4)), tie_word_embeddings=draw(st.booleans()),
        mamba_proj_bias=draw(st.booleans()), mamba_conv_bias=draw(st.booleans()),
    ).validate()


@st.composite
def decoder_archs(draw) -> HybridArch:
    """Random valid plain-transformer shapes of every decoder family, with the optional tensors it allows."""
    family = draw(st.sampled_from(["llama", "qwen2", "qwen3", "mistral", "gemma3"]))
    kv = draw(st.sampled_from([1, 2, 4]))
    heads = kv * draw(st.integers(1, 3))
    hidden = heads * draw(st.integers(1, 8)) if family in ("llama", "gemma3") else draw(_widths)
    bias = draw(st.booleans()) if family in ("llama", "qwen3", "gemma3") else family == "qwen2"
    return HybridArch(
        family=family, pattern=DECODER_LAYER * draw(st.integers(1, 3)), hidden_size=hidden,
        vocab_size=draw(st.integers(16, 300)), ffn_hidden_size=draw(st.integers(1, 96)),
        num_query_groups=kv, num_attention_heads=heads,
        attention_head_dim=draw(st.sampled_from([4, 8, 16])), tie_word_embeddings=draw(st.booleans()),
        mlp_gated=True, qkv_bias=bias, attention_out_bias=bias and family != "qwen2",
        mlp_bias=family == "llama" and draw(st.booleans()), qk_norm=family in ("qwen3", "gemma3"),
        post_norms=family == "gemma3",
    ).validate()


_hyp = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- num_params
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_num_params_matches_hf_model_for_every_preset(name):
    arch = PRESETS[name]
    assert arch.num_params() == hf_param_count(arch)


@pytest.mark.parametrize("name, billions", [
    ("nemotron-h-8b", 8.1), ("nemotron-h-4b", 4.5), ("mamba2-130m", 0.13), ("mamba2-370m", 0.37),
    ("mamba2-780m", 0.78), ("mamba2-1.3b", 1.34), ("mamba2-2.7b", 2.70),
    # Model cards: Llama-3.1-8B 8.03B, Llama-3.1-Minitron-4B-Width 4.51B, -Depth 4.54B, Mistral-NeMo-12B 12.2B,
    # MN-Minitron-8B 8.41B, SmolLM2-135M 134.5M, Gemma 3 270M 268M.
    ("llama-3.1-8b", 8.03), ("llama-3.1-minitron-4b-width", 4.51), ("llama-3.1-minitron-4b-depth", 4.54),
    ("mistral-nemo-12b", 12.25), ("mn-minitron-8b", 8.41), ("smollm2-135m", 0.1345), ("gemma3-270m", 0.268),
])
def test_preset_sizes_are_the_published_ones(name, billions):
    assert preset(name).num_params() / 1e9 == pytest.approx(billions, rel=0.03)


@_hyp
@given(nemotron_h_archs())
def test_num_params_matches_hf_model_nemotron_h(arch):
    assert arch.num_params() == hf_param_count(arch)


@_hyp
@given(mamba2_archs())
def test_num_params_matches_hf_model_mamba2(arch):
    assert arch.num_params() == hf_param_count(arch)


@_hyp
@given(decoder_archs())
def test_num_params_matches_hf_model_decoders(arch):
    assert arch.num_params() == hf_param_count(arch)


@_hyp
@given(decoder_archs())
def test_round_trip_decoder_archs(arch):
    assert HybridArch.from_hf_config(arch.to_hf_config()) == arch


@pytest.mark.parametrize("pruned, teacher, changed, billions", [
    ("llama-3.1-minitron-4b-width", "llama-3.1-8b", dict(hidden_size=3072, ffn_hidden_size=9216), 4.51),
    ("llama-3.1-minitron-4b-depth", "llama-3.1-8b", dict(pattern=DECODER_LAYER * 16), 4.54),
    ("mn-minitron-8b", "mistral-nemo-12b", dict(hidden_size=4096, ffn_hidden_size=11520), 8.41),
])
def test_minitron_presets_are_their_teacher_pruned_on_the_published_axes(pruned, teacher, changed, billions):
    assert preset(pruned) == dataclasses.replace(preset(teacher), **changed)
    assert preset(pruned).num_layers == (16 if "depth" in pruned else preset(teacher).num_layers)
    assert preset(pruned).num_params() / 1e9 == pytest.approx(billions, abs=0.005)  # the model cards' rounding


def test_nemotron_h_tied_embeddings_are_rejected(tiny_arch):
    """NemotronHForCausalLM (transformers) never ties lm_head to the embeddings: a tied arch would
    have a parameter count that does not match the model, so validate() refuses it."""
    tied = dataclasses.replace(tiny_arch, tie_word_embeddings=True)
    with pytest.raises(ArchError, match="tie_word_embeddings"):
        tied.validate()
    with pytest.raises(ArchError, match="tie_word_embeddings"):
        tied.to_hf_config()


def test_nemotron_h_config_with_tie_flag_reads_as_untied(tiny_arch):
    """A checkpoint whose config says tie_word_embeddings=True still has its own lm_head."""
    from transformers import AutoModelForCausalLM, NemotronHConfig

    cfg = NemotronHConfig(**{**family_named("nemotron_h").config_fields(tiny_arch), "tie_word_embeddings": True})
    arch = HybridArch.from_hf_config(cfg)
    assert arch.tie_word_embeddings is False and arch == tiny_arch
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    assert arch.num_params() == sum(p.numel() for p in model.parameters())


def test_num_params_counts_each_layer_kind(tiny_arch):
    base = tiny_arch.num_params()
    for symbol in (MAMBA, ATTENTION, MLP):
        bigger = tiny_arch.replace(pattern=tiny_arch.pattern + symbol)
        assert bigger.num_params() - base == tiny_arch.layer_params(symbol)
    with pytest.raises(ArchError, match="'O'"):
        tiny_arch.layer_params("O")


# --------------------------------------------------------------------------- presets
def test_nemotron_h_8b_preset_layout():
    arch = preset("nemotron-h-8b")
    assert arch.pattern == NEMOTRON_H_8B_PATTERN
    assert arch.num_layers == 52
    assert (arch.count(MAMBA), arch.count(ATTENTION), arch.count(MLP)) == (24, 4, 24)
    small = preset("nemotron-h-4b")
    assert small.pattern == arch.pattern  # width-only pruning keeps all 52 layers
    assert small.mamba_num_heads % small.mamba_num_groups == 0


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_valid_and_describable(name):
    arch = PRESETS[name].validate()
    assert f"{arch.num_layers}L" in arch.describe()


def test_unknown_preset_lists_choices():
    with pytest.raises(ArchError, match="nemotron-h-8b"):
        preset("nemotron-h-800b")


def test_tiny_preset_exercises_group_aware_pruning():
    arch = preset("tiny")
    assert {MAMBA, ATTENTION, MLP} <= set(arch.pattern)
    assert arch.mamba_num_groups > 1 and arch.num_query_groups < arch.num_attention_heads


# --------------------------------------------------------------------------- HF config round trips
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_round_trip_presets(name):
    arch = PRESETS[name]
    assert HybridArch.from_hf_config(arch.to_hf_config()) == arch


@_hyp
@given(st.one_of(nemotron_h_archs(), nemotron_h_archs(all_kinds=True), mamba2_archs()))
def test_round_trip_random_archs(arch):
    assert HybridArch.from_hf_config(arch.to_hf_config()) == arch


def test_round_trip_arch_without_attention_or_mlp():
    """HF configs need placeholder widths (>= 1) for absent layer kinds; they must not leak back."""
    arch = HybridArch(family="nemotron_h", pattern="MM", hidden_size=16, vocab_size=50, mamba_num_heads=4,
                      mamba_head_dim=8, mamba_num_groups=2, mamba_state_dim=8).validate()
    assert HybridArch.from_hf_config(arch.to_hf_config()) == arch
    no_mamba = HybridArch(family="nemotron_h", pattern="*-", hidden_size=16, vocab_size=50, ffn_hidden_size=8,
                          num_attention_heads=2, num_query_groups=1, attention_head_dim=8).validate()
    assert HybridArch.from_hf_config(no_mamba.to_hf_config()) == no_mamba


def test_fields_of_absent_layer_kinds_are_canonical(tiny_arch):
    """Two archs describing the same model compare equal, whatever their unused widths say."""
    mamba_only = dataclasses.replace(tiny_arch, pattern="MM")
    assert mamba_only == dataclasses.replace(tiny_arch, pattern="MM", ffn_hidden_size=7, num_attention_heads=3)
    assert mamba_only.num_attention_heads == mamba_only.ffn_hidden_size == 0


def test_to_hf_config_describes_the_shape(tiny_arch):
    cfg = tiny_arch.to_hf_config()
    assert cfg.model_type == "nemotron_h"
    assert cfg.hybrid_override_pattern == tiny_arch.pattern
    assert cfg.num_hidden_layers == tiny_arch.num_layers
    assert (cfg.mamba_num_heads, cfg.mamba_head_dim, cfg.n_groups, cfg.ssm_state_size) == (8, 16, 2, 16)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim) == (4, 2, 16)


def test_to_hf_config_mamba2_expand(tiny_mamba2_arch):
    cfg = tiny_mamba2_arch.to_hf_config()
    assert cfg.model_type == "mamba2"
    assert cfg.expand == 2 and cfg.num_heads * cfg.head_dim == cfg.expand * cfg.hidden_size
    assert cfg.num_hidden_layers == tiny_mamba2_arch.num_layers


def test_to_hf_config_base_keeps_other_fields_nemotron_h(tiny_arch):
    from transformers import NemotronHConfig

    base = tiny_arch.to_hf_config()
    assert isinstance(base, NemotronHConfig)
    base.layer_norm_epsilon = 1e-6
    base.eos_token_id = 7
    base.bos_token_id = 5
    base.time_step_min = 0.002
    base.chunk_size = 64
    smaller = tiny_arch.replace(pattern="M*-", hidden_size=48, ffn_hidden_size=64, mamba_num_heads=4,
                                num_attention_heads=2, num_query_groups=1)
    cfg = smaller.to_hf_config(base=base)
    assert type(cfg) is type(base)
    assert (cfg.layer_norm_epsilon, cfg.eos_token_id, cfg.bos_token_id) == (1e-6, 7, 5)
    assert (cfg.time_step_min, cfg.chunk_size) == (0.002, 64)
    # ... while every shape field comes from the new arch (including the layer count).
    assert HybridArch.from_hf_config(cfg) == smaller
    assert cfg.num_hidden_layers == 3 and cfg.hybrid_override_pattern == "M*-"
    assert base.num_hidden_layers == tiny_arch.num_layers  # base untouched


def test_to_hf_config_base_keeps_other_fields_mamba2(tiny_mamba2_arch):
    base = tiny_mamba2_arch.to_hf_config()
    base.layer_norm_epsilon = 1e-6
    base.eos_token_id = 7
    base.time_step_min = 0.002
    smaller = tiny_mamba2_arch.replace(pattern="MM", hidden_size=32, mamba_num_heads=4)  # expand 2 kept
    cfg = smaller.to_hf_config(base=base)
    assert (cfg.layer_norm_epsilon, cfg.eos_token_id, cfg.time_step_min) == (1e-6, 7, 0.002)
    assert HybridArch.from_hf_config(cfg) == smaller
    assert cfg.expand == 2


def test_to_hf_config_base_of_other_family_is_an_error(tiny_arch, tiny_mamba2_arch):
    with pytest.raises(ArchError, match="family"):
        tiny_arch.to_hf_config(base=tiny_mamba2_arch.to_hf_config())


def test_from_hf_config_unknown_model_type_names_supported_families():
    from transformers import GPT2Config

    with pytest.raises(ArchError) as err:
        HybridArch.from_hf_config(GPT2Config(n_embd=16, n_head=2, n_layer=1))
    msg = str(err.value)
    assert "gpt2" in msg and "nemotron_h" in msg and "mamba2" in msg and "llama" in msg


def test_from_hf_config_reads_moe_layers(tiny_arch):
    """A config with an MoE layer reads as a pattern with 'E' and the config's MoE widths (tests/test_moe.py)."""
    from transformers import NemotronHConfig

    cfg = NemotronHConfig(**family_named("nemotron_h").config_fields(tiny_arch))
    cfg.layers_block_type = cfg.layers_block_type[:-1] + ["moe"]
    arch = HybridArch.from_hf_config(cfg)
    assert arch.pattern == tiny_arch.pattern[:-1] + "E"
    assert (arch.num_moe_experts, arch.moe_router_topk) == (cfg.n_routed_experts, cfg.num_experts_per_tok)


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize("changes, fields", [
    (dict(mamba_num_heads=6, mamba_num_groups=4), ["mamba_num_heads", "mamba_num_groups"]),
    (dict(num_attention_heads=4, num_query_groups=3), ["num_query_groups", "num_attention_heads"]),
    (dict(pattern=""), ["pattern"]),
    (dict(pattern="M-O*"), ["pattern", "'O'"]),
    (dict(hidden_size=0), ["hidden_size"]),
    (dict(vocab_size=-5), ["vocab_size"]),
    (dict(ffn_hidden_size=0), ["ffn_hidden_size"]),
    (dict(mamba_head_dim=0), ["mamba_head_dim"]),
    (dict(mamba_num_groups=0), ["mamba_num_groups"]),
    (dict(attention_head_dim=-1), ["attention_head_dim"]),
    (dict(num_query_groups=0), ["num_query_groups"]),
    (dict(family="gpt2"), ["family", "nemotron_h", "mamba2", "llama"]),
], ids=["heads%groups", "kv-heads", "empty-pattern", "unknown-symbol", "hidden0", "vocab<0", "ffn0",
        "mamba-head-dim0", "mamba-groups0", "attn-head-dim<0", "kv0", "family"])
def test_validate_names_the_field(tiny_arch, changes, fields):
    bad = dataclasses.replace(tiny_arch, **changes)
    with pytest.raises(ArchError) as err:
        bad.validate()
    for field in fields:
        assert field in str(err.value)
    with pytest.raises(ArchError):  # replace() validates too
        tiny_arch.replace(**changes)


def test_validate_mamba2_with_attention_layers(tiny_mamba2_arch):
    bad = dataclasses.replace(tiny_mamba2_arch, pattern="M*M", num_attention_heads=2, num_query_groups=1,
                              attention_head_dim=8)
    with pytest.raises(ArchError, match="mamba2") as err:
        bad.validate()
    assert "pattern" in str(err.value)
    with pytest.raises(ArchError, match="mamba2"):
        dataclasses.replace(tiny_mamba2_arch, pattern="M-", ffn_hidden_size=8).validate()


def test_validate_mamba2_inner_not_multiple_of_hidden(tiny_mamba2_arch):
    bad = dataclasses.replace(tiny_mamba2_arch, mamba_num_heads=6)  # 6*16 = 96, hidden 64
    with pytest.raises(ArchError) as err:
        bad.validate()
    msg = str(err.value)
    assert "mamba_num_heads*mamba_head_dim" in msg and "hidden_size" in msg
    # The same width is fine for nemotron_h, which has no `expand`.
    dataclasses.replace(tiny_mamba2_arch, family="nemotron_h", mamba_num_heads=6,
                        tie_word_embeddings=False).validate()


def test_validate_returns_self_and_ignores_fields_of_absent_kinds():
    arch = HybridArch(pattern="MM", hidden_size=16, vocab_size=10, mamba_num_heads=2, mamba_head_dim=4)
    assert arch.validate() is arch  # attention / MLP widths may stay 0 without '*' / '-'
    with pytest.raises(ArchError, match="ffn_hidden_size"):
        arch.replace(pattern="MM-")
    with pytest.raises(ArchError, match="num_attention_heads"):
        arch.replace(pattern="M*")


def test_to_hf_config_validates_first(tiny_arch):
    with pytest.raises(ArchError, match="mamba_num_groups"):
        dataclasses.replace(tiny_arch, mamba_num_groups=3).to_hf_config()


def test_derived_sizes(tiny_arch):
    a = tiny_arch
    assert a.mamba_inner_size == 128
    assert a.mamba_conv_dim == 128 + 2 * 2 * 16
    assert a.mamba_in_proj_size == 2 * 128 + 2 * 2 * 16 + 8
    assert a.mamba_heads_per_group == 4
    assert a.num_layers == len(a.pattern) == 8
