"""Batched generation from chat prompts, and checkable-task accuracy.

Prompts are left-padded with an attention mask and decoded with the model's KV/SSM cache
(``model.generate``). Left padding is exact for the hybrid models here: the Mamba mixers zero
padded positions before their convolution and scan (so the state entering the first real token
is the zero state, as without padding), attention masks the pads, and NemotronH attention has
no position embedding. ``tests/test_posttrain.py`` checks batched == one-by-one greedy output.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import torch
from torch import nn

from nemo_minitron.data.chat import pad_id_of, prompt_messages, tokenize_prompt
from nemo_minitron.data.instruct_tasks import is_correct
from nemo_minitron.models.generation import generation_kwargs


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return contextlib.nullcontext(None)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="prompt", leave=False)


@torch.no_grad()
def generate_ids(model: nn.Module, prompts: Sequence[Sequence[int]], eos_id: int, pad_id: int,
                 max_new_tokens: int = 16, temperature: float = 0.0, batch_size: int = 16, seed: int = 0,
                 progress: bool = False) -> list[list[int]]:
    """New tokens for each prompt (up to and excluding EOS). ``temperature=0`` is greedy;
    otherwise plain sampling from softmax(logits / temperature), seeded by ``seed``."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 1")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths share a batch
    out: list[list[int]] = [[] for _ in prompts]
    sampling = temperature > 0
    kwargs: dict[str, Any] = {"do_sample": sampling, "max_new_tokens": max_new_tokens, "eos_token_id": eos_id,
                              "pad_token_id": pad_id, "use_cache": True}
    if sampling:
        kwargs.update(temperature=float(temperature), top_k=0, top_p=1.0)
    rng_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=rng_devices), _progress(len(prompts), "generate", progress) as bar:
        torch.manual_seed(seed)
        for lo in range(0, len(order), batch_size):
            idx = order[lo:lo + batch_size]
            width = max(len(prompts[i]) for i in idx)
            ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
            attn = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                p = list(prompts[i])
                ids[row, width - len(p):] = torch.as_tensor(p)
                attn[row, width - len(p):] = 1
            with generation_kwargs(model) as extra:
                gen = model.generate(input_ids=ids.to(device), attention_mask=attn.to(device), **kwargs, **extra)
            for row, i in enumerate(idx):
                new = gen[row, width:].tolist()
                out[i] = new[:new.index(eos_id)] if eos_id in new else new
            if bar is not None:
                bar.update(len(idx))
    model.train(was_training)
    return out


def generate_answers(model: nn.Module, tokenizer: Any, conversations: Sequence[Sequence[Mapping[str, str]]],
                     max_new_tokens: int = 16, temperature: float = 0.0, batch_size: int = 16, seed: int = 0,
                     num_samples: int = 1, progress: bool = False) -> list[list[str]]:
    """``num_samples`` decoded answers per conversation. Each conversation is either a prompt
    (ending with a user turn) or a full chat whose last assistant turn is dropped."""
    prompts = []
    for conv in conversations:
        msgs = [dict(m) for m in conv]
        if msgs and msgs[-1]["role"] == "assistant":
            msgs = prompt_messages(msgs)
        prompts.append(tokenize_prompt(tokenizer, msgs))
    flat = [p for p in prompts for _ in range(num_samples)]
    ids = generate_ids(model, flat, int(tokenizer.eos_token_id), pad_id_of(tokenizer), max_new_tokens, temperature,
                       batch_size, seed, progress)
    texts = [tokenizer.decode(t, skip_special_tokens=True).strip() for t in ids]
    return [texts[i * num_samples:(i + 1) * num_samples] for i in range(len(prompts))]


@torch.no_grad()
def answer_nll(model: nn.Module, tokenizer: Any, records: Sequence[Mapping[str, Any]], batch_size: int = 16) -> float:
    """Mean per-token negative log-likelihood (nats) of the gold final answer and its EOS, teacher
    forced: a smooth measure of progress even while greedy answers are still wrong."""
    from nemo_minitron.data.chat import chat_collate, tokenize_segments

    from nemo_minitron.losses.logprobs import response_token_logprobs

    was_training = model.training
    model.eval()
    items = []
    for r in records:
        tc = tokenize_segments(tokenizer, [dict(m) for m in r["messages"]])
        lo, hi = tc.content_spans[-1]
        if r["messages"][-1]["role"] != "assistant":
            raise ValueError("answer_nll needs records whose last message is the assistant's answer")
        mask = [0] * len(tc.input_ids)
        mask[lo:hi + 1] = [1] * (hi + 1 - lo)  # the answer and the EOS that ends it
        items.append({"input_ids": tc.input_ids, "loss_mask": mask})
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for i in range(0, len(items), batch_size):
        batch = chat_collate(items[i:i + batch_size], pad_id_of(tokenizer))
        lp, _ = response_token_logprobs(model, batch["input_ids"].to(device), batch["loss_mask"].to(device))
        total -= float(lp.sum())
        count += lp.numel()
    model.train(was_training)
    return total / max(count, 1)


def evaluate_records(model: nn.Module, tokenizer: Any, records: Mapping[str, Sequence[Mapping[str, Any]]],
                     max_new_tokens: int = 16, batch_size: int = 16, examples: int = 3,
                     progress: bool = False) -> dict[str, Any]:
    """Greedy accuracy per task of ``{task: [records with messages/answer/task]}``, their
    unweighted mean, the gold answers' per-token NLL per task (:func:`answer_nll`), and a few
    (prompt tail, prediction, answer) examples per task."""
    start = time.perf_counter()
    accuracy: dict[str, float] = {}
    nll: dict[str, float] = {}
    shown: dict[str, list[dict[str, str]]] = {}
    for task, recs in records.items():
        if not recs:
            continue
        answers = generate_answers(model, tokenizer, [r["messages"] for r in recs], max_new_tokens=max_new_tokens,
                                   batch_size=batch_size, progress=progress)
        ok = [is_correct(r["task"], a[0], r["answer"]) for r, a in zip(recs, answers)]
        accuracy[task] = sum(ok) / len(ok)
        nll[task] = answer_nll(model, tokenizer, recs, batch_size=batch_size)
        shown[task] = [{"prompt_end": r["messages"][-2]["content"][-60:], "prediction": a[0], "answer": r["answer"]}
                       for r, a in list(zip(recs, answers))[:examples]]
    mean = sum(accuracy.values()) / len(accuracy) if accuracy else float("nan")
    return {"accuracy": accuracy, "mean_accuracy": mean, "answer_nll": nll,
            "mean_answer_nll": sum(nll.values()) / len(nll) if nll else float("nan"),
            "n_per_task": {t: len(r) for t, r in records.items()},
            "examples": shown, "seconds": round(time.perf_counter() - start, 1)}


def score_instruct_tasks(model_path: str, n_per_task: int = 40, seed: int = 0, max_new_tokens: int = 16,
                         batch_size: int = 16, long_range: Optional[tuple[int, int, int]] = None,
                         progress: bool = False) -> dict[str, Any]:
    """Held-out checkable-task accuracy of a checkpoint; with ``long_range=(n, min_len, max_len)``
    also long-range recall accuracy (``long_kv_recall``).

    Post-training's own yardstick (greedy exact answers, answer NLL); the full report with
    lm-eval, RULER and speed is the ``eval`` stage."""
    from nemo_minitron.data.instruct_tasks import eval_sets
    from nemo_minitron.models import load_model, load_tokenizer

    from nemo_minitron.models.runtime import CPU_SSM_CHUNK, set_ssm_chunk_size

    model, tokenizer = load_model(model_path), load_tokenizer(model_path)
    set_ssm_chunk_size(model, CPU_SSM_CHUNK)  # same result, faster prefill with the reference kernels
    result = evaluate_records(model, tokenizer, eval_sets(n_per_task, seed), max_new_tokens, batch_size,
                              progress=progress)
    if long_range is not None:
        from nemo_minitron.data.long_context import LONG_TASK, long_range_eval_set

        n, lo, hi = long_range
        recs = long_range_eval_set(tokenizer, n, lo, hi, seed=seed)
        lr = evaluate_records(model, tokenizer, {LONG_TASK: recs}, max_new_tokens, batch_size=max(1, batch_size // 4),
                              progress=progress)
        result["long_range"] = {"accuracy": lr["accuracy"][LONG_TASK], "answer_nll": lr["answer_nll"][LONG_TASK],
                                "n": n, "min_len": lo, "max_len": hi,
                                "mean_distance": sum(r["distance"] for r in recs) / max(1, len(recs)),
                                "examples": lr["examples"][LONG_TASK]}
    return result
