"""Architecture search under a parameter budget (paper section 3.5).

1. Enumerate shapes over depth, hidden size, FFN size, Mamba heads and Mamba head dim, MoE experts,
   expert width and shared-expert width (and attention heads, when asked) whose exact parameter count
   (HybridArch) lies in [budget*(1-tolerance), budget]. The budget is a total parameter count, or for MoE
   models an active one (parameters one token uses, as Model Optimizer's ``active_params``); with both, the
   active budget is the target and the total budget only an upper bound.
2. Prune each from the same saved importance scores (no new forward passes) and measure its
   zero-shot validation loss.
3. Distill the top K for a short budget of steps, measure throughput, and pick the lowest
   loss; losses within ``tie_tolerance`` of the best are broken by throughput.

Every candidate's results are cached as JSON under ``output_dir/candidates/``, so an
interrupted search resumes where it stopped. The result is a CSV and Markdown table and a plot
of loss against throughput.
"""

from __future__ import annotations

import csv
import itertools
import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn
from tqdm.auto import tqdm

from ..atomic import write_text_atomic
from ..arch import ATTENTION, MAMBA, MLP, MOE, HybridArch
from ..models import load_config, load_model, load_tokenizer, save_checkpoint
from .config import PruningConfig
from .importance import SCORES_FILE, ImportanceScores, estimate_importance
from .rank import make_plan
from .trim import apply_plan

DEFAULT_FRACTIONS = (1.0, 0.875, 0.75, 0.625, 0.5)

#: The short distillation of one candidate: ``(teacher_path, student_path, save_path, max_steps)``.
CandidateDistiller = Callable[[str, str, str, int], Any]
#: Mean next-token loss (nats) of a model on packed token rows: how candidates are compared.
LossFn = Callable[[nn.Module, torch.Tensor], float]


@dataclass(frozen=True)
class Candidate:
    """One shape of the search space; 0 for an axis the source lacks (or, for heads, does not search)."""

    num_layers: int
    hidden_size: int
    ffn_hidden_size: int
    mamba_num_heads: int
    mamba_head_dim: int
    num_attention_heads: int = 0  #: 0: keep the source's attention heads
    num_moe_experts: int = 0
    moe_ffn_hidden_size: int = 0
    moe_shared_expert_intermediate_size: int = 0

    @property
    def name(self) -> str:
        name = f"L{self.num_layers}-h{self.hidden_size}-f{self.ffn_hidden_size}"
        if self.mamba_num_heads or self.mamba_head_dim:
            name += f"-mh{self.mamba_num_heads}-md{self.mamba_head_dim}"
        if self.num_moe_experts:
            name += f"-e{self.num_moe_experts}-ef{self.moe_ffn_hidden_size}-sf{self.moe_shared_expert_intermediate_size}"
        return name + (f"-ah{self.num_attention_heads}" if self.num_attention_heads else "")

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Candidate:
        return cls(**{f.name: record[f.name] for f in fields(cls) if f.name in record})

    def pruning_config(self, source: HybridArch, mamba_metric: str = "x", layer_metric: str = "kl") -> PruningConfig:
        def target(value: int, current: int) -> Optional[int]:
            return None if value == current else value

        moe = MOE in source.pattern
        return PruningConfig(
            target_hidden_size=target(self.hidden_size, source.hidden_size),
            target_ffn_hidden_size=target(self.ffn_hidden_size, source.ffn_hidden_size) if MLP in source.pattern else None,
            target_mamba_num_heads=target(self.mamba_num_heads, source.mamba_num_heads) if MAMBA in source.pattern else None,
            target_mamba_head_dim=target(self.mamba_head_dim, source.mamba_head_dim) if MAMBA in source.pattern else None,
            target_num_layers=target(self.num_layers, source.num_layers),
            target_num_attention_heads=target(self.num_attention_heads, source.num_attention_heads)
            if ATTENTION in source.pattern and self.num_attention_heads else None,
            target_num_moe_experts=target(self.num_moe_experts, source.num_moe_experts) if moe else None,
            target_moe_ffn_hidden_size=target(self.moe_ffn_hidden_size, source.moe_ffn_hidden_size) if moe else None,
            target_moe_shared_expert_intermediate_size=target(
                self.moe_shared_expert_intermediate_size, source.moe_shared_expert_intermediate_size) if moe else None,
            mamba_metric=mamba_metric, layer_metric=layer_metric,
        )


@dataclass
class SearchSpace:
    """Values to try per axis; None = derive from the source with ``DEFAULT_FRACTIONS``.

    ``num_layers`` counts layers (decoder layers of a plain transformer). Attention heads are searched only
    when ``num_attention_heads`` lists values (multiples of the KV groups): the published Minitron models
    (Llama-3.1-Minitron-4B, MN-Minitron-8B) kept every head, and on SmolLM2 activation-ranked heads did no
    better than random ones (docs/pruning.md).
    """

    num_layers: Optional[list[int]] = None
    hidden_size: Optional[list[int]] = None
    ffn_hidden_size: Optional[list[int]] = None
    mamba_num_heads: Optional[list[int]] = None
    mamba_head_dim: Optional[list[int]] = None
    num_attention_heads: Optional[list[int]] = None
    num_moe_experts: Optional[list[int]] = None
    moe_ffn_hidden_size: Optional[list[int]] = None
    moe_shared_expert_intermediate_size: Optional[list[int]] = None
    fractions: list[float] = field(default_factory=lambda: list(DEFAULT_FRACTIONS))

    def axis_values(self, source: HybridArch) -> dict[str, list[int]]:
        def derive(current: int, multiple: int) -> list[int]:
            values = {max(multiple, int(round(current * f / multiple)) * multiple) for f in self.fractions}
            return sorted((v for v in values if v <= current), reverse=True)

        has = {kind: kind in source.pattern for kind in (MAMBA, MLP, MOE)}
        shared_multiple = 8 * source.moe_shared_experts
        return {
            "num_layers": self.num_layers or sorted({max(1, round(source.num_layers * f))
                                                     for f in self.fractions if f >= 0.5}, reverse=True),
            "hidden_size": self.hidden_size or derive(source.hidden_size, 8),
            "ffn_hidden_size": (self.ffn_hidden_size or derive(source.ffn_hidden_size, 8)) if has[MLP] else [0],
            "mamba_num_heads": (self.mamba_num_heads or derive(source.mamba_num_heads, source.mamba_num_groups))
            if has[MAMBA] else [0],
            "mamba_head_dim": (self.mamba_head_dim or derive(source.mamba_head_dim, 8)) if has[MAMBA] else [0],
            "num_attention_heads": (self.num_attention_heads or [0]) if ATTENTION in source.pattern else [0],
            # the top-k experts of every token stay: smaller expert counts are refused by the candidate's check
            "num_moe_experts": (self.num_moe_experts or derive(source.num_moe_experts, source.moe_router_num_groups))
            if has[MOE] else [0],
            "moe_ffn_hidden_size": (self.moe_ffn_hidden_size or derive(source.moe_ffn_hidden_size, 8))
            if has[MOE] else [0],
            "moe_shared_expert_intermediate_size": (self.moe_shared_expert_intermediate_size or derive(
                source.moe_shared_expert_intermediate_size, shared_multiple)) if has[MOE] else [0],
        }


def candidate_arch(source: HybridArch, scores: ImportanceScores, cand: Candidate) -> HybridArch:
    """The exact shape a candidate prunes to (depth chosen by layer importance, as in make_plan)."""
    from .rank import target_arch

    return target_arch(scores, source, cand.pruning_config(source))


def within_budget(arch: HybridArch, target_params: Optional[int], tolerance: float,
                  target_active_params: Optional[int] = None) -> bool:
    """Whether ``arch`` fits the budget: at most each given budget, and at least ``1 - tolerance`` of the target
    one (the active budget when given, else the total)."""
    total, active = arch.num_params(), arch.num_active_params()
    if target_active_params is not None:
        fits = target_active_params * (1 - tolerance) <= active <= target_active_params
        return fits and (target_params is None or total <= target_params)
    assert target_params is not None, "give target_params or target_active_params"
    return target_params * (1 - tolerance) <= total <= target_params


def enumerate_candidates(source: HybridArch, scores: ImportanceScores, target_params: Optional[int], tolerance: float,
                         space: SearchSpace, target_active_params: Optional[int] = None,
                         ) -> list[tuple[Candidate, HybridArch]]:
    """Every valid candidate within the budget (:func:`within_budget`)."""
    axes = space.axis_values(source)
    out: list[tuple[Candidate, HybridArch]] = []
    seen: set[HybridArch] = set()  # e.g. FFN widths are moot once depth pruning removed every MLP layer
    for values in itertools.product(*axes.values()):
        cand = Candidate(**dict(zip(axes, values)))
        try:
            cand.pruning_config(source).check(source)
            arch = candidate_arch(source, scores, cand)
        except ValueError:
            continue  # e.g. a Mamba2 hidden/heads pair that breaks the integer expand ratio
        if within_budget(arch, target_params, tolerance, target_active_params) and arch not in seen:
            seen.add(arch)
            out.append((cand, arch))
    return out


@torch.no_grad()
def forward_throughput(model: nn.Module, tokens: torch.Tensor, repeats: int = 3) -> float:
    """Tokens per second of full-sequence forward passes (median of ``repeats`` after a warm-up)."""
    model.eval()
    model(input_ids=tokens, use_cache=False)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(input_ids=tokens, use_cache=False)
        times.append(time.perf_counter() - start)
    return tokens.numel() / sorted(times)[len(times) // 2]


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=1))


def check_budget(source: HybridArch, target_params: Optional[int], target_active_params: Optional[int]) -> None:
    """Refuse budgets no pruned shape of ``source`` can meet (before any weight is read)."""
    if target_params is None and target_active_params is None:
        raise ValueError("give target_params (total parameters) or target_active_params (parameters one token "
                         "uses, for MoE models)")
    if target_params is not None and not 0 < target_params < source.num_params():
        raise ValueError(f"target_params={target_params} must be between 0 and the model's {source.num_params()}")
    if target_active_params is not None:
        if MOE not in source.pattern:
            raise ValueError("target_active_params needs a model with MoE layers (every parameter of this model is "
                             "active); use target_params")
        if not 0 < target_active_params < source.num_active_params():
            raise ValueError(f"target_active_params={target_active_params} must be between 0 and the model's "
                             f"{source.num_active_params()} active parameters")


def search_architecture(model_path: str, output_dir: str, target_params: Optional[int],
                        distill_candidate: CandidateDistiller, validation_loss: LossFn, tolerance: float = 0.05,
                        top_k: int = 3, distill_steps: int = 20, space: Optional[SearchSpace] = None,
                        num_samples: int = 32, seq_length: int = 256, val_samples: int = 16,
                        scores_path: Optional[str] = None, tie_tolerance: float = 0.005, max_candidates: int = 200,
                        seed: int = 0, target_active_params: Optional[int] = None) -> dict[str, Any]:
    """Run the search; returns the summary (best candidate, table rows) also written to output_dir.

    ``distill_candidate(teacher_path, student_path, save_path, max_steps)`` is the short
    distillation of each of the top ``top_k`` candidates (``distill_steps`` steps) and
    ``validation_loss(model, tokens)`` the loss candidates are ranked by: both come from the
    caller (the ``search`` stage), so this library needs no training code.
    """
    from ..data.tokens import calibration_tokens, corpus_tokens, sample_rows

    source = HybridArch.from_hf_config(load_config(model_path))
    check_budget(source, target_params, target_active_params)
    out = Path(output_dir)
    cand_dir = out / "candidates"
    cand_dir.mkdir(parents=True, exist_ok=True)
    space = space or SearchSpace()
    model, tokenizer = load_model(model_path), load_tokenizer(model_path)

    scores_file = Path(scores_path) if scores_path else out / SCORES_FILE
    if scores_file.is_file():
        scores = ImportanceScores.load(scores_file)
    else:
        scores = estimate_importance(model, calibration_tokens(tokenizer, num_samples, seq_length, seed=seed))
        scores.save(scores_file)
    val = sample_rows(corpus_tokens(tokenizer, seq_length, split="validation"), val_samples, seed, "validation")

    candidates = enumerate_candidates(source, scores, target_params, tolerance, space, target_active_params)
    if not candidates:
        budget, kind = ((target_active_params, "active parameters") if target_active_params is not None
                        else (target_params, "parameters"))
        raise ValueError(f"no candidate of the search space has between {int(budget * (1 - tolerance))} and "
                         f"{budget} {kind}" + (f" and at most {target_params} parameters"
                                               if target_active_params is not None and target_params else "")
                         + "; widen tolerance or the search space")
    if len(candidates) > max_candidates:
        raise ValueError(f"{len(candidates)} candidates exceed max_candidates={max_candidates}; narrow the space")

    rows: list[dict[str, Any]] = []
    for cand, arch in tqdm(candidates, desc="search: zero-shot loss", unit="cand"):
        record_path = cand_dir / f"{cand.name}.json"
        record = json.loads(record_path.read_text()) if record_path.is_file() else {}
        if "zero_shot_loss" not in record:
            pruned = apply_plan(model, make_plan(scores, cand.pruning_config(source)))
            record = {"name": cand.name, **asdict(cand), "params": arch.num_params(),
                      "active_params": arch.num_active_params(), "arch": arch.describe(),
                      "zero_shot_loss": validation_loss(pruned, val),
                      "throughput_tok_s": forward_throughput(pruned, val[:2])}
            _write_json(record_path, record)
        rows.append(record)

    rows.sort(key=lambda r: r["zero_shot_loss"])
    for record in tqdm(rows[:top_k], desc="search: short distillation", unit="cand"):
        if "distilled_loss" in record:
            continue
        cand = Candidate.from_record(record)
        pruned_dir, distilled_dir = cand_dir / cand.name / "pruned", cand_dir / cand.name / "distilled"
        pruned = apply_plan(model, make_plan(scores, cand.pruning_config(source)))
        save_checkpoint(pruned, pruned_dir, tokenizer=tokenizer)
        distill_candidate(str(model_path), str(pruned_dir), str(distilled_dir), distill_steps)
        record["distilled_loss"] = validation_loss(load_model(distilled_dir), val)
        _write_json(cand_dir / f"{cand.name}.json", record)

    best = pick_best(rows[:top_k], tie_tolerance)
    selected = out / "selected"  # stable path to the winner's distilled checkpoint, for later stages
    if selected.is_symlink() or selected.exists():
        selected.unlink()
    selected.symlink_to(Path("candidates") / best["name"] / "distilled", target_is_directory=True)
    summary = {"source": source.describe(), "source_params": source.num_params(), "target_params": target_params,
               "source_active_params": source.num_active_params(), "target_active_params": target_active_params,
               "tolerance": tolerance, "num_candidates": len(rows), "top_k": top_k, "distill_steps": distill_steps,
               "teacher_loss": validation_loss(model, val), "best": best["name"], "best_record": best}
    write_tables(rows, out, best["name"])
    plot_search(rows, out / "search.png", best["name"], summary["teacher_loss"])
    _write_json(out / "search_summary.json", {**summary, "candidates": rows})
    return summary


def pick_best(distilled: list[dict[str, Any]], tie_tolerance: float) -> dict[str, Any]:
    """Lowest distilled loss; among those within ``tie_tolerance`` (relative) of it, the fastest."""
    best_loss = min(r["distilled_loss"] for r in distilled)
    tied = [r for r in distilled if r["distilled_loss"] <= best_loss * (1 + tie_tolerance)]
    return max(tied, key=lambda r: r["throughput_tok_s"])


_COLUMNS = ("name", "params", "active_params", "num_layers", "hidden_size", "ffn_hidden_size", "mamba_num_heads",
            "mamba_head_dim", "num_attention_heads", "num_moe_experts", "moe_ffn_hidden_size",
            "moe_shared_expert_intermediate_size", "zero_shot_loss", "distilled_loss", "throughput_tok_s")


def write_tables(rows: list[dict[str, Any]], out: Path, best: str) -> None:
    with open(out / "search_results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

    def fmt(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else ("" if v is None else str(v))

    lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    for r in rows:
        mark = " **(best)**" if r["name"] == best else ""
        lines.append("| " + " | ".join(fmt(r.get(c)) for c in _COLUMNS) + mark + " |")
    (out / "search_results.md").write_text("\n".join(lines) + "\n")


def plot_search(rows: list[dict[str, Any]], path: Path, best: str, teacher_loss: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter([r["throughput_tok_s"] for r in rows], [r["zero_shot_loss"] for r in rows], color="0.6",
               label="zero-shot (pruned)")
    distilled = [r for r in rows if "distilled_loss" in r]
    ax.scatter([r["throughput_tok_s"] for r in distilled], [r["distilled_loss"] for r in distilled],
               color="tab:blue", label="after short distillation")
    for r in distilled:
        ax.annotate(r["name"], (r["throughput_tok_s"], r["distilled_loss"]), fontsize=6)
        if r["name"] == best:
            ax.scatter([r["throughput_tok_s"]], [r["distilled_loss"]], s=160, facecolors="none",
                       edgecolors="tab:red", label="selected")
    ax.axhline(teacher_loss, color="tab:green", linestyle="--", label="teacher")
    ax.set_xlabel("forward throughput (tokens/s)")
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title("Architecture search: loss vs throughput")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

