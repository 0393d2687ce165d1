"""Activation-based importance from forward passes on calibration data (paper sections 3.1-3.4).

One calibration sweep records every score any pruning decision may need: Mamba scores from
the W_x output, W_z output and out_proj input plus FLAP (all four, so the metric can be changed
later for free), FFN neurons, attention heads, embedding channels, and layer importance (KL
divergence when a layer is skipped, and 1 - cos(input, output); a layer is ``HybridArch.layers``: one
block of a hybrid, a whole decoder layer of a plain transformer). Scores are saved to one
safetensors file and re-pruning to another target needs no new forward passes.

Aggregation follows Minitron: |activation| averaged over the sequence, then the L2 norm over
all calibration samples.

MoE blocks add three scores. Routed experts, as Model Optimizer scores them: the L2 norm of an expert's
*routed output* (its output times the router weight the token gave it, i.e. exactly what the expert adds to
the block's output), averaged over the calibration tokens routed to it (0 for an expert no token reached).
Neurons of each routed expert: |up_proj output| (the paper's eq. 26, as for dense FFN neurons) averaged over
each sample's tokens routed to that expert, then the L2 norm over samples; every expert has its own scores.
Shared-expert neurons: exactly as dense FFN neurons (the shared expert sees every token).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from ..atomic import atomic_file
from ..arch import ATTENTION, MAMBA, MLP, MOE, HybridArch
from ..models import adapter_for
from ..models.family import (FFN_ACT, FFN_IN, HEADS_OUT, IN_PROJ, OUT_PROJ, ROUTED_EXPERTS, SHARED_FFN_IN,
                             RoutedCall, RoutedExperts)
from ..models.mamba_layout import split_in_proj

SCORES_FILE = "importance.safetensors"


@dataclass
class ImportanceScores:
    arch: HybridArch
    #: metric ("x", "z", "out_proj", "flap") -> layer index -> [mamba_num_heads, mamba_head_dim]
    mamba: dict[str, dict[int, torch.Tensor]] = field(default_factory=dict)
    ffn: dict[int, torch.Tensor] = field(default_factory=dict)
    attention: dict[int, torch.Tensor] = field(default_factory=dict)
    hidden: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    #: metric ("kl", "cosine") -> [num_layers] (``arch.layers``); higher = more important
    layers: dict[str, torch.Tensor] = field(default_factory=dict)
    #: MoE layer index -> [num_moe_experts]: mean L2 norm of each expert's routed output per routed token
    moe_experts: dict[int, torch.Tensor] = field(default_factory=dict)
    #: MoE layer index -> [num_moe_experts]: calibration tokens routed to each expert (a diagnostic)
    moe_expert_tokens: dict[int, torch.Tensor] = field(default_factory=dict)
    #: MoE layer index -> [num_moe_experts, moe_ffn_hidden_size]: each routed expert's neurons
    moe_ffn: dict[int, torch.Tensor] = field(default_factory=dict)
    #: MoE layer index -> [moe_shared_expert_intermediate_size]: the shared expert's neurons
    moe_shared: dict[int, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def mamba_scores(self, metric: str) -> dict[int, torch.Tensor]:
        if metric not in self.mamba:
            raise KeyError(f"no Mamba scores for metric {metric!r}; have {sorted(self.mamba)}")
        return self.mamba[metric]

    def layer_scores(self, metric: str) -> torch.Tensor:
        if metric not in self.layers:
            raise KeyError(f"no layer importance for metric {metric!r}; have {sorted(self.layers)} "
                           "(estimate with that layer metric enabled)")
        return self.layers[metric]

    # ---------------------------------------------------------------- files
    def save(self, path: str | os.PathLike) -> Path:
        tensors: dict[str, torch.Tensor] = {"hidden": self.hidden}
        for metric, table in self.mamba.items():
            tensors.update({f"mamba.{metric}.{i}": t for i, t in table.items()})
        tensors.update({f"ffn.{i}": t for i, t in self.ffn.items()})
        tensors.update({f"attention.{i}": t for i, t in self.attention.items()})
        tensors.update({f"layers.{m}": t for m, t in self.layers.items()})
        for kind in _MOE_TABLES:
            tensors.update({f"{kind}.{i}": t for i, t in getattr(self, kind).items()})
        meta = {"arch": json.dumps(self.arch.to_dict()), "meta": json.dumps(self.meta)}
        path = Path(path)
        with atomic_file(path) as tmp:
            save_file({k: v.contiguous().float().cpu() for k, v in tensors.items()}, str(tmp), metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> ImportanceScores:
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"importance scores {path} not found (pass scores_path= of an earlier prune)")
        with safe_open(str(path), "pt") as f:
            meta = f.metadata()
        scores = cls(arch=HybridArch(**json.loads(meta["arch"])), meta=json.loads(meta["meta"]))
        for key, tensor in load_file(str(path)).items():
            kind, *rest = key.split(".")
            if kind == "hidden":
                scores.hidden = tensor
            elif kind == "mamba":
                scores.mamba.setdefault(rest[0], {})[int(rest[1])] = tensor
            elif kind == "layers":
                scores.layers[rest[0]] = tensor
            else:
                getattr(scores, kind)[int(rest[0])] = tensor
        return scores


_MOE_TABLES = ("moe_experts", "moe_expert_tokens", "moe_ffn", "moe_shared")


class _L2OfSequenceMeans:
    """sqrt(sum over samples of (mean over sequence of |a|)^2), per channel."""

    def __init__(self) -> None:
        self.sq: torch.Tensor | None = None

    def add(self, act: torch.Tensor) -> None:  # act: [batch, seq, channels]
        per_sample = act.detach().float().abs().mean(dim=1)
        contrib = per_sample.pow(2).sum(dim=0)
        self.sq = contrib if self.sq is None else self.sq + contrib

    def result(self) -> torch.Tensor:
        assert self.sq is not None, "no activations were recorded"
        return self.sq.sqrt().cpu()


class _Moments:
    """Running per-channel mean/variance over all calibration tokens (for FLAP)."""

    def __init__(self) -> None:
        self.n = 0
        self.s: torch.Tensor | None = None
        self.s2: torch.Tensor | None = None

    def add(self, act: torch.Tensor) -> None:
        flat = act.detach().double().reshape(-1, act.shape[-1])
        self.n += flat.shape[0]
        s, s2 = flat.sum(0), flat.pow(2).sum(0)
        self.s = s if self.s is None else self.s + s
        self.s2 = s2 if self.s2 is None else self.s2 + s2

    def variance(self) -> torch.Tensor:
        assert self.s is not None and self.s2 is not None and self.n > 1
        mean = self.s / self.n
        return ((self.s2 - self.n * mean.pow(2)) / (self.n - 1)).clamp_min(0).float().cpu()


class _RoutedExpertScores:
    """Scores of one MoE block's routed experts, accumulated over calibration batches (see the module docstring).

    Each call recomputes every routed expert on the tokens sent to it (whatever experts implementation the model
    runs), so the scores need no access to the fused kernels' internals; it costs one more pass of the experts.
    """

    def __init__(self, num_experts: int, neurons: int) -> None:
        self.shape = (num_experts, neurons)
        self.output_norm = self.tokens = self.neuron_sq = torch.empty(0)

    def add(self, call: RoutedCall, weights: RoutedExperts, samples: int) -> None:
        x = call.hidden.detach()
        if self.output_norm.numel() == 0:  # accumulate on the model's device: no host sync per expert
            self.output_norm, self.tokens = (torch.zeros(self.shape[0], dtype=torch.float64, device=x.device)
                                             for _ in range(2))
            self.neuron_sq = torch.zeros(self.shape, dtype=torch.float64, device=x.device)
        seq = x.shape[0] // samples
        for e in torch.unique(call.experts).tolist():
            token, slot = torch.where(call.experts == e)
            a = F.linear(x[token], weights.up[e])  # [routed tokens, neurons]: the paper's X W1^T
            y = F.linear(weights.act(a), weights.down[e]) * call.weights[token, slot, None]
            self.output_norm[e] += y.float().norm(dim=-1).double().sum()
            self.tokens[e] += token.numel()
            # |a| averaged over each sample's routed tokens, squared, summed over the samples that reached e.
            sample = token // seq
            sums = torch.zeros(samples, a.shape[-1], dtype=torch.float64, device=a.device)
            sums.index_add_(0, sample, a.double().abs())
            counts = torch.bincount(sample, minlength=samples).double().clamp_min(1)
            self.neuron_sq[e] += (sums / counts[:, None]).pow(2).sum(dim=0)

    def experts(self) -> torch.Tensor:
        return torch.where(self.tokens > 0, self.output_norm / self.tokens.clamp_min(1), 0.0).float().cpu()

    def token_counts(self) -> torch.Tensor:
        return self.tokens.float().cpu()

    def neurons(self) -> torch.Tensor:
        return self.neuron_sq.sqrt().float().cpu()


def _block_input(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


def _output_tensor(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def iter_batches(data: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    for start in range(0, data.shape[0], batch_size):
        yield data[start:start + batch_size]


@torch.no_grad()
def estimate_importance(model: nn.Module, calibration: torch.Tensor, batch_size: int = 4,
                        layer_metrics: Sequence[str] = ("kl", "cosine"), kl_max_samples: int | None = 256,
                        progress: bool = True) -> ImportanceScores:
    """Score every prunable axis of ``model`` on ``calibration`` token ids ([samples, seq_len]).

    ``kl`` costs one extra forward pass per layer per batch, on at most ``kl_max_samples`` samples
    (the paper averages over 256). The model is put in eval mode for the sweep and restored after.
    """
    if calibration.ndim != 2 or calibration.shape[0] == 0:
        raise ValueError(f"calibration must be a non-empty [samples, seq_len] tensor, got {tuple(calibration.shape)}")
    adapter = adapter_for(model)
    arch = adapter.arch
    shape = adapter.mamba_shape
    device = next(model.parameters()).device
    layers = adapter.layers()
    depth_units = adapter.layer_modules()
    act: dict[str, _L2OfSequenceMeans] = defaultdict(_L2OfSequenceMeans)
    flap: dict[int, _Moments] = defaultdict(_Moments)
    routed: dict[int, _RoutedExpertScores] = {}
    batch_samples = {"n": 0}  # samples in the batch being run: routed experts see it flattened
    cosine_sum = torch.zeros(len(depth_units), dtype=torch.float64)
    handles: list[torch.utils.hooks.RemovableHandle] = []
    recording = {"on": True}  # off during the layer-skipping KL passes: they are not calibration

    def hook(module: nn.Module, fn: Any, pre: bool = False, with_kwargs: bool = False) -> None:
        def guarded(*args: Any, **kwargs: Any) -> None:
            if recording["on"]:
                fn(*args, **kwargs)

        register = module.register_forward_pre_hook if pre else module.register_forward_hook
        handles.append(register(guarded, with_kwargs=with_kwargs) if with_kwargs else register(guarded))

    for layer in layers:
        i = layer.index
        hook(layer.norm, lambda m, a, out, i=i: act[f"hidden.{i}"].add(out))
        if layer.kind == MAMBA:
            def on_in_proj(m: nn.Module, a: tuple, out: torch.Tensor, i: int = i) -> None:
                parts = split_in_proj(out.movedim(-1, 0), shape)
                act[f"mamba.x.{i}"].add(parts["x"].movedim(0, -1))
                act[f"mamba.z.{i}"].add(parts["z"].movedim(0, -1))

            def on_out_proj(m: nn.Module, a: tuple, i: int = i) -> None:
                act[f"mamba.out_proj.{i}"].add(a[0])
                flap[i].add(a[0])

            hook(adapter.probe(layer, IN_PROJ), on_in_proj)
            hook(adapter.probe(layer, OUT_PROJ), on_out_proj, pre=True)
        elif layer.kind == MLP and adapter.has_probe(layer, FFN_ACT):
            hook(adapter.probe(layer, FFN_ACT), lambda m, a, i=i: act[f"ffn.{i}"].add(a[0]), pre=True)
        elif layer.kind == MLP:
            hook(adapter.probe(layer, FFN_IN), lambda m, a, out, i=i: act[f"ffn.{i}"].add(out))
        elif layer.kind == ATTENTION:
            hook(adapter.probe(layer, HEADS_OUT), lambda m, a, i=i: act[f"attention.{i}"].add(a[0]), pre=True)
        elif layer.kind == MOE:
            routed[i] = _RoutedExpertScores(arch.num_moe_experts, arch.moe_ffn_hidden_size)

            def on_experts(m: nn.Module, args: tuple, kwargs: dict, i: int = i) -> None:
                routed[i].add(adapter.family.routed_call(args, kwargs), adapter.family.routed_experts(m),
                              batch_samples["n"])

            hook(adapter.probe(layer, ROUTED_EXPERTS), on_experts, pre=True, with_kwargs=True)
            hook(adapter.probe(layer, SHARED_FFN_IN), lambda m, a, out, i=i: act[f"moe_shared.{i}"].add(out))
    if "cosine" in layer_metrics:
        for u, module in enumerate(depth_units):
            def on_block(m: nn.Module, args: tuple, kwargs: dict, out: Any, u: int = u) -> None:
                x, y = _block_input(args, kwargs).float(), _output_tensor(out).float()
                cosine_sum[u] += (1 - F.cosine_similarity(x, y, dim=-1)).mean(dim=-1).sum().item()
            hook(module, on_block, with_kwargs=True)
    hook(adapter.final_norm, lambda m, a, out: act["hidden.final"].add(out))

    was_training = model.training
    model.eval()
    kl_sum = torch.zeros(len(depth_units), dtype=torch.float64)
    kl_samples = 0
    want_kl = "kl" in layer_metrics
    batches = list(iter_batches(calibration, batch_size))
    try:
        for batch in tqdm(batches, desc="importance (calibration)", disable=not progress, unit="batch"):
            batch = batch.to(device)
            batch_samples["n"] = batch.shape[0]
            logits = model(input_ids=batch, use_cache=False).logits
            if want_kl and (kl_max_samples is None or kl_samples < kl_max_samples):
                take = batch.shape[0] if kl_max_samples is None else min(batch.shape[0], kl_max_samples - kl_samples)
                recording["on"] = False
                kl_sum += _skip_layer_kl(model, depth_units, batch[:take], logits[:take])
                recording["on"] = True
                kl_samples += take
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    n_samples = calibration.shape[0]
    scores = ImportanceScores(arch=arch, meta={
        "num_samples": n_samples, "seq_len": int(calibration.shape[1]), "aggregation": "seq=mean|abs|, batch=L2",
        "kl_samples": kl_samples,
    })
    scores.hidden = sum(act[k].result() for k in list(act) if k.startswith("hidden."))
    for layer in layers:
        i = layer.index
        if layer.kind == MAMBA:
            for metric in ("x", "z", "out_proj"):
                scores.mamba.setdefault(metric, {})[i] = act[f"mamba.{metric}.{i}"].result().view(
                    shape.num_heads, shape.head_dim)
            w2 = adapter.probe(layer, OUT_PROJ).weight.detach().float().pow(2).sum(dim=0).cpu()
            scores.mamba.setdefault("flap", {})[i] = (w2 * flap[i].variance()).view(shape.num_heads, shape.head_dim)
        elif layer.kind == MLP:
            scores.ffn[i] = act[f"ffn.{i}"].result()
        elif layer.kind == ATTENTION:
            scores.attention[i] = act[f"attention.{i}"].result().view(arch.num_attention_heads, -1).norm(dim=1)
        elif layer.kind == MOE:
            scores.moe_experts[i], scores.moe_ffn[i] = routed[i].experts(), routed[i].neurons()
            scores.moe_expert_tokens[i] = routed[i].token_counts()
            scores.moe_shared[i] = act[f"moe_shared.{i}"].result()
    if "cosine" in layer_metrics:
        scores.layers["cosine"] = (cosine_sum / n_samples).float()
    if want_kl:
        scores.layers["kl"] = (kl_sum / max(kl_samples, 1)).float()
    return scores


def _skip_layer_kl(model: nn.Module, modules: list[nn.Module], batch: torch.Tensor,
                   full_logits: torch.Tensor) -> torch.Tensor:
    """Per layer: sum over samples of the token-mean KL(full || model without that layer)."""
    log_p = F.log_softmax(full_logits.float(), dim=-1)
    p = log_p.exp()  # once, not per layer
    out = torch.zeros(len(modules), dtype=torch.float64)
    for u, module in enumerate(modules):
        handle = module.register_forward_hook(
            lambda m, args, kwargs, o: _skip_output(args, kwargs, o), with_kwargs=True)
        try:
            log_q = F.log_softmax(model(input_ids=batch, use_cache=False).logits.float(), dim=-1)
        finally:
            handle.remove()
        kl = log_q.neg_().add_(log_p).mul_(p).sum(-1)  # KL(p || q) per token, in place on log_q
        out[u] = kl.mean(dim=-1).sum().item()
    return out


def _skip_output(args: tuple, kwargs: dict, output: Any) -> Any:
    """Replace a residual block's output by its input: the layer is removed."""
    x = _block_input(args, kwargs)
    return (x, *output[1:]) if isinstance(output, tuple) else x
