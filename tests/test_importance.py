"""Importance estimation checked against hand computations on tiny models.

Every score ``estimate_importance`` records is recomputed here from activations captured with
our own hooks (or, for layer importance, from a real depth-pruned model), so a wrong hook point,
aggregation or normalisation shows up as a number mismatch.
"""

from __future__ import annotations

from collections import defaultdict

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY_ARCH, TINY_MAMBA2_ARCH, logits, make_model
from nemo_minitron.arch import ATTENTION, MAMBA, MLP, HybridArch
from nemo_minitron.models import adapter_for, build_model
from nemo_minitron.prune import ImportanceScores, PruningPlan, apply_plan, estimate_importance

ARCHS = {"nemotron_h": TINY_ARCH, "mamba2": TINY_MAMBA2_ARCH}
TOL = dict(rtol=1e-4, atol=1e-6)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def calibration() -> torch.Tensor:
    """7 samples x 32 tokens: with batch_size=3 the last batch is partial."""
    gen = torch.Generator().manual_seed(11)
    return torch.randint(0, TINY_ARCH.vocab_size, (7, 32), generator=gen)


@pytest.fixture(scope="module", params=list(ARCHS))
def estimated(request, calibration):
    """(model, scores) per family: every metric, KL on all samples, uneven batches."""
    model = make_model(ARCHS[request.param])
    scores = estimate_importance(model, calibration, batch_size=3, kl_max_samples=None, progress=False)
    return model, scores


def l2_of_sequence_means(acts: list[torch.Tensor]) -> torch.Tensor:
    """sqrt(sum over samples of (mean over seq of |a|)^2), per channel; acts: [batch, seq, ch]."""
    per_sample = torch.cat([a.double().abs().mean(dim=1) for a in acts])  # [samples, ch]
    return per_sample.pow(2).sum(dim=0).sqrt()


@torch.no_grad()
def capture(model, calibration: torch.Tensor, points: dict[str, tuple], batch_size: int = 2) -> dict[str, list]:
    """Run plain forward passes and record what the named modules see.

    ``points``: name -> (module, "out" | "in"); "in" is the first positional input.
    """
    seen: dict[str, list] = defaultdict(list)
    handles = []
    for name, (module, where) in points.items():
        if where == "out":
            handles.append(module.register_forward_hook(lambda m, a, o, name=name: seen[name].append(o.detach())))
        else:
            handles.append(module.register_forward_pre_hook(lambda m, a, name=name: seen[name].append(a[0].detach())))
    try:
        for start in range(0, calibration.shape[0], batch_size):
            model(input_ids=calibration[start:start + batch_size], use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return seen


def _layers_of(adapter, kind):
    return [layer for layer in adapter.layers() if layer.kind == kind]


# =========================================================================== activation scores
def test_ffn_scores_match_hand_computation(estimated, calibration):
    model, scores = estimated
    adapter = adapter_for(model)
    mlps = _layers_of(adapter, MLP)
    if not mlps:
        assert scores.ffn == {}
        return
    seen = capture(model, calibration, {f"norm{l.index}": (l.norm, "out") for l in mlps})
    assert sorted(scores.ffn) == [l.index for l in mlps]
    for layer in mlps:
        up = layer.mixer.up_proj
        # up_proj(norm(x)), computed by hand from the captured normalized input
        acts = [F.linear(x, up.weight, up.bias) for x in seen[f"norm{layer.index}"]]
        expected = l2_of_sequence_means(acts)
        assert scores.ffn[layer.index].shape == (model.config.intermediate_size,)
        torch.testing.assert_close(scores.ffn[layer.index].double(), expected, **TOL)


def test_mamba_x_z_out_proj_scores_match_hand_computation(estimated, calibration):
    model, scores = estimated
    adapter = adapter_for(model)
    arch = adapter.arch
    inner = arch.mamba_inner_size
    points = {}
    for layer in _layers_of(adapter, MAMBA):
        view = layer.mixer
        points[f"in{layer.index}"] = (view.in_proj, "out")
        points[f"o{layer.index}"] = (view.out_proj, "in")
    seen = capture(model, calibration, points)
    for layer in _layers_of(adapter, MAMBA):
        i = layer.index
        z = [a[..., :inner] for a in seen[f"in{i}"]]  # in_proj rows: z | x | B | C | dt
        x = [a[..., inner:2 * inner] for a in seen[f"in{i}"]]
        for metric, acts in (("z", z), ("x", x), ("out_proj", seen[f"o{i}"])):
            expected = l2_of_sequence_means(acts).view(arch.mamba_num_heads, arch.mamba_head_dim)
            torch.testing.assert_close(scores.mamba[metric][i].double(), expected, **TOL)


def test_flap_matches_hand_computation(estimated, calibration):
    """S_j = ||W_O[:, j]||^2 * Var(out_proj input column j), sample variance over all tokens."""
    model, scores = estimated
    adapter = adapter_for(model)
    arch = adapter.arch
    layers = _layers_of(adapter, MAMBA)
    seen = capture(model, calibration, {f"o{l.index}": (l.mixer.out_proj, "in") for l in layers})
    for layer in layers:
        tokens = torch.cat([a.reshape(-1, a.shape[-1]) for a in seen[f"o{layer.index}"]]).double()
        assert tokens.shape[0] == calibration.numel()
        w = layer.mixer.out_proj.weight.double()  # [hidden, I]
        expected = torch.empty(tokens.shape[1], dtype=torch.float64)
        for j in range(tokens.shape[1]):
            column = tokens[:, j]
            mean = column.sum() / len(column)
            var = ((column - mean) ** 2).sum() / (len(column) - 1)
            expected[j] = (w[:, j] ** 2).sum() * var
        got = scores.mamba["flap"][layer.index]
        assert got.shape == (arch.mamba_num_heads, arch.mamba_head_dim)
        torch.testing.assert_close(got.double().flatten(), expected, rtol=1e-4, atol=1e-9)


def test_attention_and_embedding_scores_match_hand_computation(estimated, calibration):
    model, scores = estimated
    adapter = adapter_for(model)
    arch = adapter.arch
    layers = adapter.layers()
    points = {f"norm{l.index}": (l.norm, "out") for l in layers}
    points["final"] = (adapter.final_norm, "out")
    for layer in _layers_of(adapter, ATTENTION):
        points[f"o{layer.index}"] = (layer.mixer.o_proj, "in")
    seen = capture(model, calibration, points)
    # Embedding channels (eq. 27): summed over every norm that reads the residual stream.
    expected_hidden = sum(l2_of_sequence_means(seen[f"norm{l.index}"]) for l in layers)
    expected_hidden = expected_hidden + l2_of_sequence_means(seen["final"])
    assert scores.hidden.shape == (arch.hidden_size,)
    torch.testing.assert_close(scores.hidden.double(), expected_hidden, **TOL)
    # Attention heads: per-channel scores of the o_proj input, L2 over each head's channels.
    assert sorted(scores.attention) == [l.index for l in _layers_of(adapter, ATTENTION)]
    for layer in _layers_of(adapter, ATTENTION):
        per_channel = l2_of_sequence_means(seen[f"o{layer.index}"])
        expected = per_channel.view(arch.num_attention_heads, arch.attention_head_dim).norm(dim=1)
        torch.testing.assert_close(scores.attention[layer.index].double(), expected, **TOL)


# =========================================================================== layer scores
def drop_layer_plan(arch: HybridArch, layer: int) -> PruningPlan:
    """keep_all minus one layer: a real depth-pruning plan."""
    plan = PruningPlan.keep_all(arch)
    plan.kept_layers = [i for i in plan.kept_layers if i != layer]
    plan.target = arch.replace(pattern="".join(arch.pattern[i] for i in plan.kept_layers))
    for axis in ("mamba_heads", "mamba_channels", "ffn", "attention_heads"):
        getattr(plan, axis).pop(layer, None)
    return plan.validate()


def kl_full_vs(full: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """Per sample: mean over tokens of KL(full || other), computed in float64."""
    log_p = F.log_softmax(full.double(), dim=-1)
    log_q = F.log_softmax(other.double(), dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1).mean(-1)


def test_kl_layer_scores_equal_real_layer_removal(estimated, calibration):
    """The skip-hook used during estimation gives the same KL as a model with the layer really
    removed by ``apply_plan`` (cross-checks both)."""
    model, scores = estimated
    arch = adapter_for(model).arch
    full = logits(model, calibration)
    expected = torch.empty(arch.num_layers, dtype=torch.float64)
    for i in range(arch.num_layers):
        dropped = apply_plan(model, drop_layer_plan(arch, i))
        assert dropped.config.num_hidden_layers == arch.num_layers - 1
        expected[i] = kl_full_vs(full, logits(dropped, calibration)).mean()
    assert scores.meta["kl_samples"] == calibration.shape[0]
    assert (expected > 0).all()
    torch.testing.assert_close(scores.layers["kl"].double(), expected, rtol=2e-3, atol=1e-7)


def test_kl_uses_only_the_first_kl_max_samples(calibration):
    model = make_model(TINY_ARCH)
    scores = estimate_importance(model, calibration, batch_size=2, layer_metrics=("kl",), kl_max_samples=3,
                                 progress=False)
    assert scores.meta["kl_samples"] == 3
    assert set(scores.layers) == {"kl"}
    first3 = calibration[:3]
    full = logits(model, first3)
    for i in (0, 2, 5):
        dropped = apply_plan(model, drop_layer_plan(TINY_ARCH, i))
        expected = kl_full_vs(full, logits(dropped, first3)).mean()
        torch.testing.assert_close(scores.layers["kl"][i].double(), expected, rtol=2e-3, atol=1e-7)


def test_cosine_layer_scores_match_hand_computation(estimated, calibration):
    """1 - cos(block input, block output) over the hidden dim, mean over tokens and samples."""
    model, scores = estimated
    adapter = adapter_for(model)
    pairs: dict[int, list] = defaultdict(list)
    handles = []
    for layer in adapter.layers():
        def hook(m, args, kwargs, out, i=layer.index):
            x = args[0] if args else kwargs["hidden_states"]
            y = out[0] if isinstance(out, tuple) else out
            pairs[i].append((x.detach().double(), y.detach().double()))
        handles.append(layer.block.register_forward_hook(hook, with_kwargs=True))
    try:
        logits(model, calibration)
    finally:
        for h in handles:
            h.remove()
    for i, [(x, y)] in pairs.items():
        cos = (x * y).sum(-1) / (x.norm(dim=-1) * y.norm(dim=-1))  # [samples, seq]
        expected = (1 - cos).mean()
        torch.testing.assert_close(scores.layers["cosine"][i].double(), expected, rtol=1e-4, atol=1e-7)


def test_scores_do_not_depend_on_batch_size(calibration):
    """Aggregation is over samples, so batching must not matter (KL across uneven batches is
    covered by ``test_kl_layer_scores_equal_real_layer_removal``)."""
    model = make_model(TINY_ARCH)
    calib = calibration[:5]
    a = estimate_importance(model, calib, batch_size=1, layer_metrics=("cosine",), progress=False)
    b = estimate_importance(model, calib, batch_size=5, layer_metrics=("cosine",), progress=False)
    torch.testing.assert_close(a.hidden, b.hidden, rtol=1e-4, atol=1e-6)
    for i in a.ffn:
        torch.testing.assert_close(a.ffn[i], b.ffn[i], rtol=1e-4, atol=1e-6)
    for metric in a.mamba:
        for i in a.mamba[metric]:
            torch.testing.assert_close(a.mamba[metric][i], b.mamba[metric][i], rtol=1e-3, atol=1e-7)
    for metric in a.layers:
        torch.testing.assert_close(a.layers[metric], b.layers[metric], rtol=2e-3, atol=1e-7)


# =========================================================================== files and contract
def test_scores_save_load_round_trip_is_exact(estimated, tmp_path):
    _, scores = estimated
    path = scores.save(tmp_path / "importance.safetensors")
    loaded = ImportanceScores.load(path)
    assert loaded.arch == scores.arch
    assert loaded.meta == scores.meta
    assert torch.equal(loaded.hidden, scores.hidden)
    assert loaded.ffn.keys() == scores.ffn.keys() and all(torch.equal(loaded.ffn[i], scores.ffn[i]) for i in scores.ffn)
    assert loaded.attention.keys() == scores.attention.keys()
    assert all(torch.equal(loaded.attention[i], scores.attention[i]) for i in scores.attention)
    assert loaded.mamba.keys() == scores.mamba.keys() == {"x", "z", "out_proj", "flap"}
    for metric in scores.mamba:
        assert loaded.mamba[metric].keys() == scores.mamba[metric].keys()
        assert all(torch.equal(loaded.mamba[metric][i], scores.mamba[metric][i]) for i in scores.mamba[metric])
    assert loaded.layers.keys() == scores.layers.keys() == {"kl", "cosine"}
    assert all(torch.equal(loaded.layers[m], scores.layers[m]) for m in scores.layers)
    with pytest.raises(FileNotFoundError, match="scores_path"):
        ImportanceScores.load(tmp_path / "nope.safetensors")


def test_missing_metrics_are_reported(calibration):
    model = make_model(TINY_ARCH)
    scores = estimate_importance(model, calibration[:2], layer_metrics=(), progress=False)
    assert scores.layers == {}
    with pytest.raises(KeyError, match="no layer importance for metric 'kl'"):
        scores.layer_scores("kl")
    with pytest.raises(KeyError, match="no Mamba scores for metric 'w'"):
        scores.mamba_scores("w")


@pytest.mark.parametrize("shape", [(0, 32), (32,), (2, 4, 8), (0,)])
def test_calibration_must_be_2d_and_non_empty(shape):
    model = make_model(TINY_ARCH)
    with pytest.raises(ValueError, match=r"calibration must be a non-empty \[samples, seq_len\]"):
        estimate_importance(model, torch.zeros(shape, dtype=torch.long), progress=False)


def _hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("training", [True, False])
def test_estimation_leaves_the_model_as_it_was(calibration, input_ids, training):
    model = make_model(TINY_ARCH)  # eval mode
    before = logits(model, input_ids)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.train(training)
    hooks = _hook_count(model)
    estimate_importance(model, calibration[:2], batch_size=2, progress=False)
    assert model.training is training
    assert all(m.training is training for m in model.modules())
    assert _hook_count(model) == hooks
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    model.eval()
    assert torch.equal(logits(model, input_ids), before)


def test_hooks_are_removed_and_mode_restored_after_a_failure(calibration):
    model = make_model(TINY_ARCH).train()
    hooks = _hook_count(model)
    bad = calibration[:3].clone()
    bad[2, 5] = TINY_ARCH.vocab_size + 10  # out of the embedding table: fails in the second batch
    with pytest.raises((IndexError, RuntimeError)):
        estimate_importance(model, bad, batch_size=2, progress=False)
    assert model.training and _hook_count(model) == hooks


def test_estimation_runs_under_grad_enabled_callers_without_building_graphs(calibration):
    model = make_model(TINY_ARCH)
    with torch.enable_grad():
        scores = estimate_importance(model, calibration[:2], layer_metrics=("cosine",), progress=False)
    assert not scores.hidden.requires_grad
    assert all(not t.requires_grad for t in scores.ffn.values())
    assert all(p.grad is None for p in model.parameters())


# =========================================================================== trained teacher
#: A small teacher with every layer kind and 2 Mamba groups; vocab = the default tokenizer's.
TEACHER_ARCH = HybridArch(
    family="nemotron_h", pattern="M-*M-M*-", hidden_size=64, vocab_size=32000, ffn_hidden_size=256,
    num_attention_heads=4, num_query_groups=2, attention_head_dim=16, mamba_num_heads=8, mamba_head_dim=16,
    mamba_num_groups=2, mamba_state_dim=16,
)
TEACHER_TRAIN = dict(max_steps=40, seq_length=64, micro_batch_size=4, global_batch_size=4, val_check_interval=0,
                     seed=0)
TEACHER_OPTIM = dict(lr=1e-2, warmup_steps=4)


def _cv(values: torch.Tensor) -> float:
    """Coefficient of variation: 0 for perfectly uniform scores."""
    v = values.double().flatten()
    return float(v.std() / v.mean())


def _spread(values: torch.Tensor) -> float:
    """max / min: how many times more the most important layer matters than the least."""
    v = values.double()
    return float(v.max() / v.min().clamp_min(1e-12))


def _uniformity(scores: ImportanceScores) -> dict[str, float]:
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return {
        "mamba_heads": mean([_cv(t.norm(dim=1)) for t in scores.mamba["x"].values()]),
        "ffn": mean([_cv(t) for t in scores.ffn.values()]),
        "hidden": _cv(scores.hidden),
        "layers_kl": _spread(scores.layers["kl"]),
        "layers_cosine": _spread(scores.layers["cosine"]),
    }


@pytest.fixture(scope="session")
def trained_teacher(tmp_path_factory):
    pretrain = pytest.importorskip("nemo_minitron.stages.pretrain")
    folder = tmp_path_factory.mktemp("teacher") / "model"
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # session scope: set up before the module-scoped one_torch_thread fixture
    try:
        pretrain.pretrain(str(folder), arch=TEACHER_ARCH, train=pretrain.PretrainTrain(**TEACHER_TRAIN),
                          optim=pretrain.PretrainOptim(**TEACHER_OPTIM))
    finally:
        torch.set_num_threads(before)
    return folder


def test_importance_of_the_trained_teacher_is_not_uniform(trained_teacher):
    """Training makes some heads, neurons, channels and layers matter far more than others.

    The same scores of the teacher's own initialisation (same seed, same shape) are close to
    uniform, so this fails if scoring is broken (e.g. constant, or blind to the weights) or
    if training did not change the structure the scores see.
    """
    from nemo_minitron.data import cached_packed_corpus
    from nemo_minitron.models import load_model

    calib = cached_packed_corpus("validation", 64)[:8]
    teacher = load_model(trained_teacher).eval()
    initial = build_model(TEACHER_ARCH, seed=TEACHER_TRAIN["seed"]).eval()
    trained = _uniformity(estimate_importance(teacher, calib, batch_size=4, progress=False))
    at_init = _uniformity(estimate_importance(initial, calib, batch_size=4, progress=False))
    report = {k: (round(trained[k], 3), round(at_init[k], 3)) for k in trained}  # (trained, at init)
    print("uniformity (trained, at init):", report)
    # Widths: coefficient of variation several times that at initialisation, and large in absolute terms.
    for key, floor in (("mamba_heads", 0.08), ("ffn", 0.3), ("hidden", 0.15)):
        assert trained[key] > floor, report
        assert trained[key] > 2.5 * at_init[key], report
    # Layers: even at init they differ (depth position), ~10x from least to most important; after
    # training the spread is an order of magnitude larger.
    for key, floor in (("layers_kl", 30), ("layers_cosine", 20)):
        assert trained[key] > floor, report
        assert trained[key] > 3 * at_init[key], report
