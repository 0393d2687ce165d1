"""Shared fixtures: tiny NemotronH / Mamba2 models with non-trivial weights, fixed inputs.

Everything here runs offline on CPU in milliseconds. Other test modules use these fixtures
(and ``logits`` / ``perturb_`` / ``TINY_ARCH`` via ``from conftest import ...``).
"""

from __future__ import annotations

import contextlib

import os
import sys
from pathlib import Path

# Never touch a model hub from the test suite.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Make the package importable from a plain checkout (no `pip install -e .` needed).
_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from nemo_minitron.arch import DECODER_LAYER, HybridArch  # noqa: E402
from nemo_minitron.models import build_model  # noqa: E402

#: Every Nemotron-H layer kind, 2 Mamba groups of 4 heads, GQA attention (4 query / 2 KV heads).
TINY_ARCH = HybridArch(
    family="nemotron_h",
    pattern="M-*M-M*-",
    hidden_size=64,
    vocab_size=1000,
    ffn_hidden_size=128,
    num_attention_heads=4,
    num_query_groups=2,
    attention_head_dim=16,
    mamba_num_heads=8,
    mamba_head_dim=16,
    mamba_num_groups=2,
    mamba_state_dim=16,
    mamba_conv_kernel=4,
    tie_word_embeddings=False,
).validate()

#: Mamba2ForCausalLM: hidden 64, expand 2 (8 heads x 16 = 128 = 2 * 64), 2 groups, tied embeddings.
TINY_MAMBA2_ARCH = HybridArch(
    family="mamba2",
    pattern="MMM",
    hidden_size=64,
    vocab_size=1000,
    mamba_num_heads=8,
    mamba_head_dim=16,
    mamba_num_groups=2,
    mamba_state_dim=16,
    mamba_conv_kernel=4,
    tie_word_embeddings=True,
).validate()



def _decoder(family: str, **changes) -> HybridArch:
    fields = dict(family=family, pattern=DECODER_LAYER * 3, hidden_size=64, vocab_size=1000, ffn_hidden_size=96,
                  num_attention_heads=4, num_query_groups=2, attention_head_dim=16, mlp_gated=True)
    return HybridArch(**{**fields, **changes}).validate()


#: One tiny plain transformer per family (3 decoder layers, 4 query heads in 2 KV groups), each with its
#: optional tensors switched on: biases, q/k norms, Gemma3's sandwich norms; tied and untied LM heads;
#: a head_dim other than hidden / heads (Mistral).
TINY_DECODER_ARCHS: dict[str, HybridArch] = {
    "llama": _decoder("llama", tie_word_embeddings=True, qkv_bias=True, attention_out_bias=True, mlp_bias=True),
    "qwen2": _decoder("qwen2", qkv_bias=True),
    "qwen3": _decoder("qwen3", qk_norm=True, qkv_bias=True, attention_out_bias=True),
    "mistral": _decoder("mistral", attention_head_dim=24),
    "gemma3": _decoder("gemma3", tie_word_embeddings=True, qk_norm=True, post_norms=True),
}


def make_decoder_model(family: str, seed: int = 0) -> nn.Module:
    """A tiny model of ``TINY_DECODER_ARCHS[family]`` with perturbed weights. Gemma3 gets a 4-token sliding
    window on its first and last layers, so attention layer types matter."""
    arch = TINY_DECODER_ARCHS[family]
    base = None
    if family == "gemma3":
        base = arch.to_hf_config()
        base.sliding_window = 4
        base.layer_types = ["sliding_attention", "full_attention", "sliding_attention"]
    model = build_model(arch, base_config=base, seed=seed).to(torch.float32).eval()
    return perturb_(model, seed=1234 + seed)


@torch.no_grad()
def perturb_(model: nn.Module, seed: int = 1234, scale: float = 0.05) -> nn.Module:
    """Add small seeded noise to EVERY parameter, in place.

    HF init leaves A_log / D / dt_bias / norm weights at constants (and biases at zero), which
    would make permutation and slicing tests pass by accident; after this every entry differs.
    Shared (tied) parameters are perturbed once.
    """
    gen = torch.Generator().manual_seed(seed)
    seen: set[int] = set()
    for _, param in sorted(model.named_parameters(remove_duplicate=True), key=lambda kv: kv[0]):
        if id(param) in seen:
            continue
        seen.add(id(param))
        noise = torch.randn(param.shape, generator=gen, dtype=torch.float32)
        param.add_((scale * noise).to(param.dtype))
    return model


def make_model(arch: HybridArch, seed: int = 0, perturb_seed: int = 1234) -> nn.Module:
    """``build_model(arch, seed)`` in eval mode, float32, with every parameter perturbed."""
    model = build_model(arch, seed=seed)
    model = model.to(torch.float32).eval()
    return perturb_(model, seed=perturb_seed)


def assert_every_parameter_has_a_trim_rule(model: nn.Module, pattern: str) -> None:
    """The family's trim rules cover every state-dict entry, and rebuild its key."""
    from nemo_minitron.models import adapter_for

    family = adapter_for(model).family
    for key, tensor in model.state_dict().items():
        rule = family.trim_rule(key, pattern)
        assert rule is not None, key
        assert len(rule.axes) <= tensor.ndim, key
        if rule.block is not None:
            assert family.param_key(rule.block, rule.suffix) == key


@torch.no_grad()
def logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Full-sequence logits ``[batch, seq, vocab]`` without cache and without grad."""
    return model(input_ids=ids, use_cache=False).logits


#: A stage-test model with the 32000-token default tokenizer: 2.1M parameters, of which
#: 2 x 1.02M are embedding and LM head.
STAGE_ARCH = HybridArch(
    family="nemotron_h", pattern="M-*", hidden_size=32, vocab_size=32000, ffn_hidden_size=64,
    num_attention_heads=2, num_query_groups=1, attention_head_dim=16, mamba_num_heads=4, mamba_head_dim=16,
    mamba_num_groups=2, mamba_state_dim=16, mamba_conv_kernel=4,
).validate()


def save_teacher_and_student(root: Path) -> dict[str, Path]:
    """Two different STAGE_ARCH checkpoints with the default tokenizer under ``root``."""
    from nemo_minitron.data import load_default_tokenizer
    from nemo_minitron.models import save_checkpoint

    tokenizer = load_default_tokenizer()
    paths = {"root": root, "teacher": root / "teacher", "student": root / "student"}
    save_checkpoint(make_model(STAGE_ARCH, seed=0, perturb_seed=1), paths["teacher"], tokenizer=tokenizer)
    save_checkpoint(make_model(STAGE_ARCH, seed=1, perturb_seed=2), paths["student"], tokenizer=tokenizer)
    return paths


@pytest.fixture(scope="session")
def tiny_arch() -> HybridArch:
    return TINY_ARCH


@pytest.fixture(scope="session")
def tiny_mamba2_arch() -> HybridArch:
    return TINY_MAMBA2_ARCH


@pytest.fixture
def tiny_model(tiny_arch: HybridArch) -> nn.Module:
    """A fresh (function-scoped, so tests may edit it) NemotronH model with perturbed weights."""
    return make_model(tiny_arch)


@pytest.fixture
def tiny_mamba2_model(tiny_mamba2_arch: HybridArch) -> nn.Module:
    """A fresh Mamba2 model with perturbed weights."""
    return make_model(tiny_mamba2_arch)


@pytest.fixture
def input_ids(tiny_arch: HybridArch) -> torch.Tensor:
    """A fixed random ``LongTensor [2, 32]`` (valid for both tiny models: vocab 1000)."""
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, tiny_arch.vocab_size, (2, 32), generator=gen, dtype=torch.long)


@pytest.fixture
def logits_fn():
    """The :func:`logits` helper as a fixture, for modules that prefer not to import conftest."""
    return logits


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module: on a shared 2-core machine two threads make tiny passes slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@contextlib.contextmanager
def private_cache(tmp_path_factory: pytest.TempPathFactory, name: str):
    """``$NEMO_MINITRON_CACHE`` pointed at a fresh folder for the duration (test artifacts stay out
    of the user's ~/.cache/nemo_minitron); for a module-scoped autouse fixture."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NEMO_MINITRON_CACHE", str(tmp_path_factory.mktemp(name)))
        yield


def lr_trace(make_scheduler, steps: int) -> list[float]:
    """The learning rates a scheduler gives over ``steps`` steps of an optimizer of base LR 1.0
    (``make_scheduler(optimizer)`` builds it)."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = make_scheduler(optimizer)
    out = []
    for _ in range(steps):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out
