"""Model families and adapters, the fused in_proj / conv1d layout, and checkpoint I/O."""

from __future__ import annotations

import json
import re

import pytest
import torch

from conftest import (TINY_ARCH, TINY_DECODER_ARCHS, TINY_MAMBA2_ARCH, assert_every_parameter_has_a_trim_rule, logits,
                      make_model)
from nemo_minitron.arch import ATTENTION, MAMBA, MLP, ArchError
from nemo_minitron.atomic import atomic_directory
from nemo_minitron.models import (adapter_for, build_model, family_for_model_type, family_named,
                                  is_complete_checkpoint, load_model, load_tokenizer, read_config_json,
                                  save_checkpoint)
from nemo_minitron.models import registry
from nemo_minitron.models.family import FFN_IN, HEADS_OUT, IN_PROJ, OUT_PROJ
from nemo_minitron.models.mamba_layout import CONV_PARTS, MambaShape, split_in_proj, split_rows

FAMILIES = ["nemotron_h", "mamba2"]


@pytest.fixture(params=FAMILIES)
def family_model(request, tiny_model, tiny_mamba2_model):
    """(arch, model) of each family."""
    if request.param == "nemotron_h":
        return TINY_ARCH, tiny_model
    return TINY_MAMBA2_ARCH, tiny_mamba2_model


class _MambaMixer:
    """A Mamba mixer with its fused weights split into named views (test helper)."""

    def __init__(self, mixer, shape: MambaShape):
        self.mixer, self.shape = mixer, shape
        self.in_proj, self.conv1d, self.out_proj, self.gated_norm = mixer.in_proj, mixer.conv1d, mixer.out_proj, mixer.norm
        self.A_log, self.D, self.dt_bias = mixer.A_log, mixer.D, mixer.dt_bias

    def projections(self):
        return split_in_proj(self.in_proj.weight, self.shape)

    def conv_weights(self):
        return split_conv(self.conv1d.weight, self.shape)


def split_conv(tensor, shape):
    return split_rows(tensor, shape, CONV_PARTS)


def _merge(pieces):
    return torch.cat(list(pieces.values()), dim=0)


def _mamba_views(model):
    adapter = adapter_for(model)
    return [_MambaMixer(layer.mixer, adapter.mamba_shape) for layer in adapter.layers() if layer.kind == MAMBA]


def _shape(arch) -> MambaShape:
    return MambaShape.of(arch)


# --------------------------------------------------------------------------- layout: split / merge
def test_split_merge_in_proj_and_conv_are_exact(family_model):
    arch, model = family_model
    views = _mamba_views(model)
    assert len(views) == arch.count(MAMBA) > 0
    for view in views:
        w = view.in_proj.weight
        assert torch.equal(_merge(split_in_proj(w, view.shape)), w)
        cw = view.conv1d.weight
        assert torch.equal(_merge(split_conv(cw, view.shape)), cw)
        if view.conv1d.bias is not None:
            assert torch.equal(_merge(split_conv(view.conv1d.bias, view.shape)), view.conv1d.bias)


def test_split_part_sizes_are_documented_ones(family_model):
    arch, model = family_model
    i, gn, h = arch.mamba_inner_size, arch.mamba_num_groups * arch.mamba_state_dim, arch.mamba_num_heads
    k = arch.mamba_conv_kernel
    for view in _mamba_views(model):
        assert view.shape == _shape(arch)
        parts = view.projections()
        assert list(parts) == ["z", "x", "B", "C", "dt"]
        assert {p: tuple(t.shape) for p, t in parts.items()} == {
            "z": (i, arch.hidden_size), "x": (i, arch.hidden_size), "B": (gn, arch.hidden_size),
            "C": (gn, arch.hidden_size), "dt": (h, arch.hidden_size)}
        conv = view.conv_weights()
        assert list(conv) == ["x", "B", "C"]
        assert {p: tuple(t.shape) for p, t in conv.items()} == {"x": (i, 1, k), "B": (gn, 1, k), "C": (gn, 1, k)}
        assert view.A_log.shape == view.D.shape == view.dt_bias.shape == (h,)
        assert view.out_proj.weight.shape == (arch.hidden_size, i)


def test_split_returns_views_that_write_through(tiny_model):
    view = _mamba_views(tiny_model)[0]
    with torch.no_grad():
        view.projections()["dt"].fill_(3.0)
        view.conv_weights()["C"].fill_(-2.0)
    assert torch.all(view.in_proj.weight[-view.shape.num_heads:] == 3.0)
    assert torch.all(view.conv1d.weight[-view.shape.group_state:] == -2.0)
    assert not torch.any(view.in_proj.weight[: -view.shape.num_heads] == 3.0)


def test_split_rejects_wrong_row_count():
    shape = MambaShape(num_heads=4, head_dim=8, num_groups=2, state_dim=4)
    with pytest.raises(ValueError, match="rows"):
        split_in_proj(torch.zeros(2 * 32 + 2 * 8 + 4 + 1, 16), shape)
    with pytest.raises(ValueError, match="rows"):
        split_conv(torch.zeros(32 + 16 - 1, 1, 4), shape)


def test_mamba_shape_group_helpers():
    shape = MambaShape(num_heads=8, head_dim=4, num_groups=2, state_dim=16)
    assert (shape.inner, shape.group_state, shape.conv_dim, shape.heads_per_group) == (32, 32, 96, 4)
    assert [shape.group_of_head(h) for h in range(8)] == [0, 0, 0, 0, 1, 1, 1, 1]
    idx = shape.channel_index(torch.tensor([1, 6]), torch.tensor([0, 3]))
    assert idx.tolist() == [4, 7, 24, 27]


# --------------------------------------------------------------------------- layout: behaviour
def _zeroed_logits(model, ids, where: str, part: str):
    """Logits after zeroing ``part`` of every Mamba layer's in_proj rows ('proj') or conv taps ('conv')."""
    with torch.no_grad():
        for view in _mamba_views(model):
            pieces = view.projections() if where == "proj" else view.conv_weights()
            pieces[part].zero_()
    return logits(model, ids)


@pytest.mark.parametrize("part", ["x", "B", "C"])
def test_in_proj_parts_feed_the_matching_conv_channels(family_model, input_ids, part):
    """Zeroing the ``part`` rows of in_proj (conv input) must equal zeroing the ``part`` conv taps
    (conv weight): both leave exactly conv bias on those channels. This ties the two layouts together."""
    arch, model = family_model
    state = {k: v.clone() for k, v in model.state_dict().items()}
    base = logits(model, input_ids)
    via_proj = _zeroed_logits(model, input_ids, "proj", part)
    model.load_state_dict(state)
    via_conv = _zeroed_logits(model, input_ids, "conv", part)
    assert not torch.allclose(via_proj, base)
    torch.testing.assert_close(via_proj, via_conv, rtol=1e-5, atol=1e-5)


def test_in_proj_parts_have_distinct_effects(family_model, input_ids):
    arch, model = family_model
    state = {k: v.clone() for k, v in model.state_dict().items()}
    outs = {}
    for part in ("z", "x", "B", "C", "dt"):
        model.load_state_dict(state)
        outs[part] = _zeroed_logits(model, input_ids, "proj", part)
    parts = list(outs)
    for a in range(len(parts)):
        for b in range(a + 1, len(parts)):
            assert not torch.allclose(outs[parts[a]], outs[parts[b]]), (parts[a], parts[b])


def test_z_rows_are_the_gate_of_the_gated_norm(family_model, input_ids):
    """The gated RMSNorm receives ``gate = norm(h) @ z.T``; hook its input to check the z rows."""
    arch, model = family_model
    view = _mamba_views(model)[0]
    seen = {}

    def grab_in_proj_input(module, args):
        seen["u"] = args[0].detach().clone()

    def grab_gate(module, args, kwargs):
        gate = kwargs.get("gate", args[1] if len(args) > 1 else None)
        seen["gate"] = gate.detach().clone()

    hooks = [view.in_proj.register_forward_pre_hook(grab_in_proj_input),
             view.gated_norm.register_forward_pre_hook(grab_gate, with_kwargs=True)]
    try:
        logits(model, input_ids)
    finally:
        for h in hooks:
            h.remove()
    z = view.projections()["z"]
    bias = split_in_proj(view.in_proj.bias, view.shape)["z"] if view.in_proj.bias is not None else None
    expected = torch.nn.functional.linear(seen["u"], z, bias)
    torch.testing.assert_close(seen["gate"], expected, rtol=1e-5, atol=1e-5)


def test_zeroing_x_conv_channels_and_bias_silences_the_mixer(family_model, input_ids):
    """x is the SSM input (after conv + SiLU): with x == 0 the scan and the D skip give 0."""
    arch, model = family_model
    view = _mamba_views(model)[0]
    out = {}
    handle = view.mixer.register_forward_hook(lambda m, a, o: out.__setitem__("y", o))
    try:
        with torch.no_grad():
            view.conv_weights()["x"].zero_()
            split_conv(view.conv1d.bias, view.shape)["x"].zero_()
        logits(model, input_ids)
        assert torch.count_nonzero(out["y"]) == 0
    finally:
        handle.remove()


# --------------------------------------------------------------------------- adapters
def test_adapter_lists_layers_in_order(tiny_model, tiny_arch):
    adapter = adapter_for(tiny_model)
    assert adapter.family.name == "nemotron_h"
    layers = adapter.layers()
    assert [layer.kind for layer in layers] == list(tiny_arch.pattern)
    assert [layer.index for layer in layers] == list(range(tiny_arch.num_layers))
    for layer, block in zip(layers, tiny_model.model.layers):
        assert layer.block is block and layer.mixer is block.mixer and layer.norm is block.norm
    assert [layer.index for layer in layers if layer.kind == ATTENTION] == [2, 6]
    assert [layer.index for layer in layers if layer.kind == MLP] == [1, 4, 7]
    assert adapter.arch == tiny_arch
    assert adapter.family.param_key(3, "mixer.in_proj.weight") == "model.layers.3.mixer.in_proj.weight"
    assert "model.layers.3.mixer.in_proj.weight" in tiny_model.state_dict()


def test_adapter_probes(tiny_model, tiny_arch):
    adapter = adapter_for(tiny_model)
    h = tiny_arch.hidden_size
    for layer in adapter.layers():
        if layer.kind == MAMBA:
            assert adapter.probe(layer, IN_PROJ) is layer.mixer.in_proj
            assert adapter.probe(layer, IN_PROJ).weight.shape == (tiny_arch.mamba_in_proj_size, h)
            assert adapter.probe(layer, OUT_PROJ).weight.shape == (h, tiny_arch.mamba_inner_size)
            assert layer.mixer.conv1d.weight.shape[0] == tiny_arch.mamba_conv_dim
            assert layer.mixer.norm.weight.shape == (tiny_arch.mamba_inner_size,)
            with pytest.raises(TypeError, match="no 'heads_out'"):
                adapter.probe(layer, HEADS_OUT)
        elif layer.kind == ATTENTION:
            q, kv = tiny_arch.num_attention_heads, tiny_arch.num_query_groups
            d = tiny_arch.attention_head_dim
            assert layer.mixer.q_proj.weight.shape == (q * d, h)
            assert layer.mixer.k_proj.weight.shape == layer.mixer.v_proj.weight.shape == (kv * d, h)
            assert adapter.probe(layer, HEADS_OUT) is layer.mixer.o_proj
            assert adapter.probe(layer, HEADS_OUT).weight.shape == (h, q * d)
            with pytest.raises(TypeError):
                adapter.probe(layer, FFN_IN)
        else:
            assert adapter.probe(layer, FFN_IN) is layer.mixer.up_proj
            assert adapter.probe(layer, FFN_IN).weight.shape == (tiny_arch.ffn_hidden_size, h)
            assert layer.mixer.down_proj.weight.shape == (h, tiny_arch.ffn_hidden_size)
            with pytest.raises(TypeError):
                adapter.probe(layer, IN_PROJ)
    assert adapter.lm_head is tiny_model.get_output_embeddings()
    assert adapter.final_norm.weight.shape == (tiny_arch.hidden_size,)
    assert adapter.ssm_mixers() == [layer.mixer for layer in adapter.layers() if layer.kind == MAMBA]


def test_adapter_mamba2(tiny_mamba2_model, tiny_mamba2_arch):
    adapter = adapter_for(tiny_mamba2_model)
    assert adapter.family.name == "mamba2" and adapter.backbone is tiny_mamba2_model.backbone
    assert [layer.kind for layer in adapter.layers()] == [MAMBA] * tiny_mamba2_arch.num_layers
    assert adapter.arch == tiny_mamba2_arch
    assert adapter.family.param_key(0, "norm.weight") == "backbone.layers.0.norm.weight"
    assert adapter.lm_head is tiny_mamba2_model.get_output_embeddings()
    assert adapter.lm_head.weight is tiny_mamba2_model.get_input_embeddings().weight  # tied
    assert adapter.final_norm is tiny_mamba2_model.backbone.norm_f
    assert adapter.mamba_shape == _shape(tiny_mamba2_arch)


def test_final_norm_feeds_the_lm_head(family_model, input_ids):
    arch, model = family_model
    adapter = adapter_for(model)
    assert adapter.lm_head.bias is None
    with torch.no_grad():
        adapter.final_norm.weight.zero_()
    assert torch.count_nonzero(logits(model, input_ids)) == 0


def test_adapter_config_for_keeps_base_fields(tiny_model, tiny_arch):
    tiny_model.config.eos_token_id = 11
    smaller = tiny_arch.replace(mamba_num_heads=4, ffn_hidden_size=64)
    cfg = adapter_for(tiny_model).config_for(smaller)
    assert cfg.eos_token_id == 11 and cfg.mamba_num_heads == 4 and cfg.intermediate_size == 64


def test_unsupported_model_type_names_families():
    with pytest.raises(ArchError) as err:
        family_for_model_type("gpt2")
    assert "nemotron_h" in str(err.value) and "mamba2" in str(err.value) and "gemma3" in str(err.value)


def test_registry_lists_each_family_once():
    assert [f.name for f in registry.FAMILIES] == FAMILIES + list(TINY_DECODER_ARCHS)
    for family in registry.FAMILIES:
        assert family_named(family.name) is family is family_for_model_type(family.model_type)


def test_every_parameter_has_a_trim_rule(family_model):
    """The family's trim rules cover every state-dict entry, and nothing else matches."""
    arch, model = family_model
    family = adapter_for(model).family
    assert_every_parameter_has_a_trim_rule(model, arch.pattern)
    assert family.trim_rule("lm_head.bias", arch.pattern) is None
    assert family.trim_rule(family.param_key(0, "mixer.new_weight"), arch.pattern) is None
    assert family.trim_rule(family.param_key(len(arch.pattern), "norm.weight"), arch.pattern) is None


# --------------------------------------------------------------------------- build_model
def test_build_model_is_deterministic_per_seed(tiny_arch):
    a = build_model(tiny_arch, seed=3).state_dict()
    b = build_model(tiny_arch, seed=3).state_dict()
    c = build_model(tiny_arch, seed=4).state_dict()
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_build_model_matches_arch(family_model):
    arch, model = family_model
    assert sum(p.numel() for p in model.parameters()) == arch.num_params()
    assert adapter_for(model).arch == arch
    assert next(model.parameters()).dtype == torch.float32


def test_build_model_with_base_config(tiny_model, tiny_arch):
    tiny_model.config.layer_norm_epsilon = 1e-6
    smaller = tiny_arch.replace(hidden_size=32)
    model = build_model(smaller, base_config=tiny_model.config, seed=0)
    assert model.config.layer_norm_epsilon == 1e-6
    assert adapter_for(model).arch == smaller


def test_fixture_weights_are_not_constants(family_model):
    """The fixtures perturb HF's constant inits (A_log, D, dt_bias, norms), so permutations are visible."""
    arch, model = family_model
    for name, p in model.named_parameters():
        assert p.numel() == 1 or p.detach().unique().numel() > 1, name


# --------------------------------------------------------------------------- checkpoint I/O
def _tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = "the quick brown fox jumps over a lazy dog and runs far away".split()
    vocab = {"<unk>": 0, "<pad>": 1, "</s>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", eos_token="</s>")


def test_save_load_gives_identical_logits(family_model, input_ids, tmp_path):
    arch, model = family_model
    expected = logits(model, input_ids)
    path = save_checkpoint(model, tmp_path / "ckpt")
    assert path == tmp_path / "ckpt" and is_complete_checkpoint(path)
    assert read_config_json(path)["model_type"] == arch.family
    loaded = load_model(path).eval()
    assert type(loaded) is type(model)
    assert adapter_for(loaded).arch == arch
    assert torch.equal(logits(loaded, input_ids), expected)
    for (name, p), (name2, q) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert name == name2 and torch.equal(p, q), name
    # no temporary folders are left next to the checkpoint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_save_checkpoint_saves_tokenizer_and_extra(tiny_model, tmp_path):
    tok = _tiny_tokenizer()
    path = save_checkpoint(tiny_model, tmp_path / "ckpt", tokenizer=tok,
                           extra=lambda folder: (folder / "plan.json").write_text(json.dumps({"ok": 1})))
    assert (path / "tokenizer.json").is_file()
    assert json.loads((path / "plan.json").read_text()) == {"ok": 1}
    loaded = load_tokenizer(path)
    text = "the quick zebra jumps"
    assert loaded(text).input_ids == tok(text).input_ids == [3, 4, 0, 7]
    assert loaded.get_vocab() == tok.get_vocab()
    assert loaded.eos_token == "</s>"


def test_save_checkpoint_failing_extra_leaves_nothing(tiny_model, tmp_path):
    def boom(folder):
        raise RuntimeError("extra failed")

    with pytest.raises(RuntimeError, match="extra failed"):
        save_checkpoint(tiny_model, tmp_path / "ckpt", extra=boom)
    assert list(tmp_path.iterdir()) == []
    assert not is_complete_checkpoint(tmp_path / "ckpt")


def test_save_checkpoint_overwrites_existing(tiny_model, tiny_mamba2_model, input_ids, tmp_path):
    save_checkpoint(tiny_mamba2_model, tmp_path / "ckpt")
    save_checkpoint(tiny_model, tmp_path / "ckpt")
    assert read_config_json(tmp_path / "ckpt")["model_type"] == "nemotron_h"
    assert torch.equal(logits(load_model(tmp_path / "ckpt"), input_ids), logits(tiny_model, input_ids))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_atomic_directory_exception_leaves_no_target_and_no_temp(tmp_path):
    target = tmp_path / "sub" / "out"
    with pytest.raises(KeyError):
        with atomic_directory(target) as tmp:
            assert tmp.parent == target.parent and tmp != target
            (tmp / "half-written.bin").write_bytes(b"x" * 10)
            raise KeyError("interrupted")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_atomic_directory_keeps_existing_target_on_failure(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "config.json").write_text('{"model_type": "nemotron_h"}')
    (target / "nested").mkdir()
    (target / "nested" / "w.bin").write_bytes(b"old")
    before = {p.relative_to(target): (p.read_bytes() if p.is_file() else None) for p in target.rglob("*")}
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(target) as tmp:
            (tmp / "config.json").write_text("{}")
            raise KeyboardInterrupt
    after = {p.relative_to(target): (p.read_bytes() if p.is_file() else None) for p in target.rglob("*")}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_directory_success_replaces_target(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    with atomic_directory(target) as tmp:
        assert not (tmp / "stale.txt").exists()
        (tmp / "new.txt").write_text("new")
        assert not (target / "new.txt").exists()  # nothing visible until the end
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_load_model_missing_folder_names_the_path(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        load_model(missing)


def test_load_model_folder_without_config_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_model(tmp_path)


def test_load_model_unsupported_family_names_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 16}))
    with pytest.raises(ArchError) as err:
        load_model(tmp_path)
    msg = str(err.value)
    assert "gpt2" in msg and "nemotron_h" in msg and "mamba2" in msg
    assert isinstance(err.value, ValueError)


def test_is_complete_checkpoint(tmp_path):
    assert not is_complete_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    assert not is_complete_checkpoint(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert is_complete_checkpoint(tmp_path)


def test_make_model_helper_is_reproducible(tiny_arch, input_ids):
    a, b = make_model(tiny_arch), make_model(tiny_arch)
    assert torch.equal(logits(a, input_ids), logits(b, input_ids))
    assert not torch.equal(logits(a, input_ids), logits(make_model(tiny_arch, perturb_seed=9), input_ids))


def test_logits_shape(family_model, input_ids):
    arch, model = family_model
    out = logits(model, input_ids)
    assert out.shape == (2, 32, arch.vocab_size) and not out.requires_grad
    assert torch.isfinite(out).all()


def test_attention_free_nemotron_h_generates_with_cache_like_without() -> None:
    """Depth pruning can drop every attention layer; transformers 5.23 then cannot size the cache."""
    from nemo_minitron.models.generation import generation_kwargs, needs_counting_cache

    arch = TINY_ARCH.replace(pattern="M-M-")
    model = make_model(arch).eval()
    assert needs_counting_cache(model) and not needs_counting_cache(make_model(TINY_ARCH))
    ids = torch.randint(0, arch.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="Attention layers"):
        model.generate(input_ids=ids, max_new_tokens=3, do_sample=False, use_cache=True)  # the bug worked around
    with generation_kwargs(model) as extra:
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=5, do_sample=False,
                             **extra)
    ref = ids
    with torch.no_grad():
        for _ in range(5):
            ref = torch.cat([ref, model(input_ids=ref, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(out, ref)
    assert not model._forward_hooks  # the counting hook is removed after the call


# --------------------------------------------------------------------------- widening the MLPs


@pytest.mark.parametrize("family", ["nemotron_h", "llama", "qwen2"])
def test_widening_the_ffn_keeps_the_logits_and_only_the_new_zero_columns_make_that_so(family, input_ids):
    from conftest import make_decoder_model
    from nemo_minitron.models.widen import widen_ffn

    model = make_model(TINY_ARCH) if family == "nemotron_h" else make_decoder_model(family)
    arch = adapter_for(model).arch
    ids = input_ids % arch.vocab_size
    wide = widen_ffn(model, arch.ffn_hidden_size + 40, seed=3)
    assert adapter_for(wide).arch == arch.replace(ffn_hidden_size=arch.ffn_hidden_size + 40)
    assert sum(p.numel() for p in wide.parameters()) == arch.replace(ffn_hidden_size=arch.ffn_hidden_size + 40).num_params()
    torch.testing.assert_close(logits(wide, ids), logits(model, ids), rtol=0, atol=1e-5)
    # The old weights are kept as they were, the new input rows are random (they must learn), and the
    # new output columns are what keeps the logits: fill them and the model changes.
    old, new = model.state_dict(), wide.state_dict()
    downs = [k for k in new if k.endswith("down_proj.weight")]
    ups = [k for k in new if k.endswith("up_proj.weight")]
    assert downs and ups
    for key in ups:
        assert torch.equal(new[key][:arch.ffn_hidden_size], old[key]) and new[key][arch.ffn_hidden_size:].abs().min() > 0
    with torch.no_grad():
        for key in downs:
            assert torch.equal(new[key][:, :arch.ffn_hidden_size], old[key])
            assert not new[key][:, arch.ffn_hidden_size:].any()
            wide.get_parameter(key)[:, arch.ffn_hidden_size:].normal_(std=0.05)
    assert (logits(wide, ids) - logits(model, ids)).abs().max() > 1e-3


def test_widening_is_deterministic_and_the_new_columns_learn(input_ids):
    from nemo_minitron.models.widen import widen_ffn

    model = make_model(TINY_ARCH)
    wide = widen_ffn(model, 160, seed=0)
    for key, tensor in widen_ffn(model, 160, seed=0).state_dict().items():
        assert torch.equal(tensor, wide.state_dict()[key]), key
    wide.train()
    wide(input_ids=input_ids, labels=input_ids, use_cache=False).loss.backward()
    down = next(p for n, p in wide.named_parameters() if n.endswith("down_proj.weight"))
    assert down.grad[:, TINY_ARCH.ffn_hidden_size:].abs().sum() > 0


def test_widening_to_the_same_width_copies_and_narrowing_is_refused(input_ids):
    from nemo_minitron.models.widen import widen_ffn

    model = make_model(TINY_ARCH)
    same = widen_ffn(model, TINY_ARCH.ffn_hidden_size)
    assert all(torch.equal(t, model.state_dict()[k]) for k, t in same.state_dict().items())
    with pytest.raises(ArchError, match="ffn_hidden_size=64"):
        widen_ffn(model, 64)
    with pytest.raises(ArchError, match="MLP"):
        widen_ffn(make_model(TINY_MAMBA2_ARCH), 64)


# ----------------------------------------------------------------------------- checkpoint averaging
def test_the_average_of_copies_is_the_checkpoint_in_its_dtype(tiny_model, input_ids, tmp_path):
    from nemo_minitron.models.average import AVERAGED_FILE, average_checkpoints

    a = save_checkpoint(tiny_model, tmp_path / "a", dtype=torch.bfloat16)
    b = save_checkpoint(tiny_model, tmp_path / "b")  # the same weights in bf16 already
    out = average_checkpoints([a, b, a], tmp_path / "avg")
    original, averaged = load_model(a, dtype="auto"), load_model(out, dtype="auto")
    for (name, x), (_, y) in zip(original.state_dict().items(), averaged.state_dict().items()):
        assert y.dtype == x.dtype and torch.equal(x, y), name
    assert torch.equal(logits(original, input_ids), logits(averaged, input_ids))
    assert json.loads((out / AVERAGED_FILE).read_text()) == [str(a), str(b), str(a)]


def test_the_average_is_the_mean_and_bad_input_is_refused_before_loading(tiny_model, tmp_path):
    from nemo_minitron.models.average import average_checkpoints
    from nemo_minitron.outputs import OutputPathError

    a = save_checkpoint(tiny_model, tmp_path / "a")
    other = make_model(TINY_ARCH)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn_like(p))
    b = save_checkpoint(other, tmp_path / "b")
    out = average_checkpoints([a, b], tmp_path / "avg")
    x, y, mean = (load_model(p).state_dict() for p in (a, b, out))
    changed = 0
    for name in mean:
        assert torch.allclose(mean[name], (x[name] + y[name]) / 2, atol=1e-6), name
        changed += not torch.equal(mean[name], x[name])
    assert changed > len(mean) // 2  # the inputs really differ

    wide = save_checkpoint(make_model(TINY_ARCH.replace(ffn_hidden_size=2 * TINY_ARCH.ffn_hidden_size)), tmp_path / "w")
    with pytest.raises(ValueError, match="is not the shape of"):
        average_checkpoints([a, wide], tmp_path / "bad")
    with pytest.raises(ValueError, match="at least two"):
        average_checkpoints([a], tmp_path / "one")
    with pytest.raises(FileNotFoundError, match="no finished checkpoint"):
        average_checkpoints([a, tmp_path / "missing"], tmp_path / "none")
    with pytest.raises(OutputPathError, match="is the input"):
        average_checkpoints([a, b], b)
    assert not any((tmp_path / name).exists() for name in ("bad", "one", "none"))
    assert torch.equal(load_model(b).state_dict()[next(iter(y))], next(iter(y.values())))  # b untouched
