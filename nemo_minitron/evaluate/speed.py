"""Latency and throughput: time to first token and decode tokens/s, measured side by side.

The paper's speed claim is a *ratio* (student vs teacher throughput at 65536 input / 1024 output
tokens). A ratio is only meaningful if both models run under the same conditions, so
:func:`compare_speed` measures all models in one run with interleaved repetitions (rotating the
order each round): background load, clock boosts and thermal drift hit every model alike.

One ``model.generate`` call per measurement (greedy, ``min_new_tokens = max_new_tokens =
output_len``, so EOS cannot end it early; always with the cache, whatever a saved generation config
says; works with NemotronH's hybrid Mamba/attention cache in transformers 5). A stopping criterion
records the clock when the first token exists:

* ``ttft_s``: prefill of ``input_len`` tokens plus the first generated token;
* ``decode_tokens_per_s``: ``batch_size * (output_len - 1)`` tokens over the time after it;
* ``total_s``/``e2e_tokens_per_s``: the whole call.

Each figure is the median over ``repeats`` after ``warmup`` untimed calls. On a GPU the clock is
read after ``torch.cuda.synchronize()``.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional

import torch
from torch import nn

from ..models.generation import generation_kwargs

log = logging.getLogger(__name__)


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what ``platform`` knows: speed is per machine."""
    import platform
    from pathlib import Path

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _sync_fn(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


class _FirstTokenClock:
    """Stopping criterion that never stops; it records when it is first called, i.e. right
    after the first new token was appended (HF calls stopping criteria after each step)."""

    def __init__(self, sync: Callable[[], None]) -> None:
        self.sync = sync
        self.time: Optional[float] = None

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        if self.time is None:
            self.sync()
            self.time = time.perf_counter()
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


@dataclass
class Timing:
    """One timed ``generate`` call."""

    ttft_s: float
    total_s: float
    peak_memory_gb: Optional[float] = None


@dataclass
class SpeedResult:
    """Medians over repetitions for one model (raw timings kept for inspection)."""

    input_len: int
    output_len: int
    batch_size: int
    ttft_s: float
    decode_tokens_per_s: float
    total_s: float
    e2e_tokens_per_s: float
    peak_memory_gb: Optional[float] = None
    timings: List[Timing] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def make_inputs(model: nn.Module, input_len: int, batch_size: int, seed: int = 0) -> torch.LongTensor:
    """Random (seeded) token ids avoiding the first ids, where special tokens usually live."""
    vocab = int(model.config.vocab_size)
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(min(3, vocab - 1), vocab, (batch_size, input_len), generator=gen)
    return ids.to(_device(model))


@torch.inference_mode()
def time_generate(model: nn.Module, input_ids: torch.LongTensor, output_len: int) -> Timing:
    """Time one greedy ``generate`` of exactly ``output_len`` new tokens."""
    from transformers import StoppingCriteriaList

    device = input_ids.device
    sync = _sync_fn(device)
    clock = _FirstTokenClock(sync)
    pad = getattr(model.config, "pad_token_id", None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync()
    start = time.perf_counter()
    with generation_kwargs(model) as extra:
        out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), do_sample=False,
                             min_new_tokens=output_len, max_new_tokens=output_len,
                             pad_token_id=pad if pad is not None else 0,
                             stopping_criteria=StoppingCriteriaList([clock]), **{"use_cache": True, **extra})
    sync()
    end = time.perf_counter()
    if out.shape[1] - input_ids.shape[1] != output_len:
        raise RuntimeError(f"generate returned {out.shape[1] - input_ids.shape[1]} new tokens, expected {output_len}")
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return Timing(ttft_s=(clock.time or end) - start, total_s=end - start, peak_memory_gb=peak)


def summarize(timings: List[Timing], input_len: int, output_len: int, batch_size: int) -> SpeedResult:
    """Medians of TTFT, decode time and total time over ``timings``."""
    ttft = statistics.median(t.ttft_s for t in timings)
    decode_s = statistics.median(max(t.total_s - t.ttft_s, 1e-9) for t in timings)
    total = statistics.median(t.total_s for t in timings)
    peaks = [t.peak_memory_gb for t in timings if t.peak_memory_gb is not None]
    return SpeedResult(
        input_len=input_len, output_len=output_len, batch_size=batch_size, ttft_s=ttft,
        decode_tokens_per_s=batch_size * (output_len - 1) / decode_s, total_s=total,
        e2e_tokens_per_s=batch_size * output_len / total, peak_memory_gb=max(peaks) if peaks else None,
        timings=list(timings),
    )


def compare_speed(models: Mapping[str, nn.Module], input_len: int = 2048, output_len: int = 128,
                  batch_size: int = 1, repeats: int = 3, warmup: int = 1, baseline: Optional[str] = None,
                  seed: int = 0) -> Dict[str, Any]:
    """Measure every model with the same inputs, interleaving repetitions; compare to ``baseline``.

    Returns ``{"settings": {...}, "baseline": name, "models": {name: SpeedResult dict},
    "ratios": {name: {"throughput_ratio", "ttft_ratio", "ttft_speedup"}}}`` where
    ``throughput_ratio`` = decode tokens/s of the model / of the baseline (> 1: faster) and
    ``ttft_ratio`` = TTFT of the model / of the baseline (< 1: faster). ``baseline`` defaults
    to the first model.
    """
    if not models:
        raise ValueError("compare_speed needs at least one model")
    if output_len < 2:
        raise ValueError(f"output_len={output_len} must be >= 2 (decode throughput needs tokens after the first)")
    if input_len < 1 or batch_size < 1 or repeats < 1 or warmup < 0:
        raise ValueError("input_len, batch_size and repeats must be positive, warmup >= 0")
    names = list(models)
    baseline = baseline or names[0]
    if baseline not in models:
        raise ValueError(f"baseline={baseline!r} is not one of {names}")
    inputs = {name: make_inputs(model, input_len, batch_size, seed) for name, model in models.items()}
    states = {name: model.training for name, model in models.items()}
    timings: Dict[str, List[Timing]] = {name: [] for name in names}
    try:
        for model in models.values():
            model.eval()
        for name in names:
            for _ in range(warmup):
                time_generate(models[name], inputs[name], min(output_len, 8))
        for rep in range(repeats):
            for k in range(len(names)):
                name = names[(rep + k) % len(names)]  # rotate who goes first
                timings[name].append(time_generate(models[name], inputs[name], output_len))
                log.debug("speed %s rep %d: ttft %.4fs total %.4fs", name, rep, timings[name][-1].ttft_s,
                          timings[name][-1].total_s)
    finally:
        for name, model in models.items():
            model.train(states[name])
    results = {name: summarize(timings[name], input_len, output_len, batch_size) for name in names}
    base = results[baseline]
    ratios = {
        name: {
            "throughput_ratio": r.decode_tokens_per_s / base.decode_tokens_per_s,
            "ttft_ratio": r.ttft_s / base.ttft_s,
            "ttft_speedup": base.ttft_s / r.ttft_s,
        }
        for name, r in results.items()
    }
    for name, r in results.items():
        log.info("speed %s: ttft %.4fs, decode %.1f tok/s (x%.2f vs %s)", name, r.ttft_s, r.decode_tokens_per_s,
                 ratios[name]["throughput_ratio"], baseline)
    return {
        "settings": {"input_len": input_len, "output_len": output_len, "batch_size": batch_size,
                     "repeats": repeats, "warmup": warmup, "device": str(_device(next(iter(models.values()))))},
        "baseline": baseline,
        "models": {name: r.to_dict() for name, r in results.items()},
        "ratios": ratios,
    }
