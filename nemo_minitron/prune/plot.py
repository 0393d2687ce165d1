"""Figure 4 of the paper: layer importance by layer, coloured by layer type."""

from __future__ import annotations

import os
from pathlib import Path

from ..arch import ATTENTION, DECODER_LAYER, MAMBA, MLP, MOE
from .importance import ImportanceScores

_STYLE = {MAMBA: ("tab:red", "Mamba2"), MLP: ("tab:blue", "FFN"), ATTENTION: ("tab:green", "self-attention"),
          MOE: ("tab:orange", "MoE"), DECODER_LAYER: ("tab:purple", "decoder layer")}


def plot_layer_importance(scores: ImportanceScores, path: str | os.PathLike) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in ("kl", "cosine") if m in scores.layers]
    if not metrics:
        raise ValueError("scores have no layer importance to plot")
    fig, axes = plt.subplots(len(metrics), 1, figsize=(max(6, scores.arch.num_layers * 0.35), 3.2 * len(metrics)),
                             squeeze=False)
    labels = {"kl": "KL(full || layer removed)", "cosine": "1 - cos(input, output)"}
    for ax, metric in zip(axes[:, 0], metrics):
        values = scores.layers[metric].tolist()
        ax.plot(range(len(values)), values, color="0.3", linewidth=1)
        seen: set[str] = set()
        for i, (unit, v) in enumerate(zip(scores.arch.layers, values)):
            kind = scores.arch.pattern[unit[0]] if len(unit) == 1 else DECODER_LAYER
            color, name = _STYLE[kind]
            ax.axvline(i, color=color, linestyle=":", linewidth=0.8)
            ax.scatter([i], [v], color=color, zorder=3, label=None if kind in seen else name)
            seen.add(kind)
        ax.set_ylabel(labels[metric])
        ax.set_yscale("log" if min(values) > 0 and max(values) / max(min(values), 1e-12) > 100 else "linear")
        ax.legend(loc="best", fontsize=8)
    axes[-1, 0].set_xlabel("layer index")
    fig.suptitle(f"Layer importance ({scores.meta.get('num_samples', '?')} calibration samples)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
