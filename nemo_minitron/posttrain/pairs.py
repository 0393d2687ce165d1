"""Preference pairs for RPO/DPO: sampled answers scored by the task checker, tokenized pairs, and
their batches."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Optional

import torch
from torch.utils.data import Dataset

from nemo_minitron.data.chat import PreferencePair, pad_right, tokenize_prompt_response
from nemo_minitron.data.instruct_tasks import is_correct


def make_preference_pairs(records: Sequence[dict[str, Any]], samples: Sequence[Sequence[str]], seed: int = 0,
                          gold_chosen: bool = False) -> tuple[list[PreferencePair], dict[str, Any]]:
    """One pair per prompt from sampled answers scored by ``is_correct`` (reward 1 / 0):
    chosen = a correct sample, rejected = an incorrect one; prompts where all samples are
    correct give no contrast and are skipped. Prompts where all samples are wrong are skipped
    too, unless ``gold_chosen``: then the checker's reference answer is the chosen one, so a
    model that is still weak (early in a run, or a test-sized run) gets a contrast as well."""
    rng = random.Random(seed)
    pairs, n_correct, n_total, all_right, all_wrong = [], 0, 0, 0, 0
    for record, answers in zip(records, samples):
        flags = [is_correct(record["task"], a, record["answer"]) for a in answers]
        n_correct += sum(flags)
        n_total += len(flags)
        good = sorted({a for a, ok in zip(answers, flags) if ok})
        bad = sorted({a for a, ok in zip(answers, flags) if not ok})
        if not good:
            all_wrong += 1
            if not gold_chosen:
                continue
            good = [record["answer"]]
        if not bad:
            all_right += 1
            continue
        msgs = record["messages"]
        prompt = msgs[:-1] if msgs[-1]["role"] == "assistant" else msgs
        pairs.append(PreferencePair([dict(m) for m in prompt], rng.choice(good), rng.choice(bad), 1.0, 0.0))
    stats = {"prompts": len(records), "samples": n_total, "sample_accuracy": n_correct / max(1, n_total),
             "pairs": len(pairs), "prompts_all_correct": all_right, "prompts_all_wrong": all_wrong}
    return pairs, stats


def sample_preference_pairs(model: torch.nn.Module, tokenizer: Any, records: Sequence[dict[str, Any]],
                            num_samples: int = 4, temperature: float = 1.0, max_new_tokens: int = 16,
                            batch_size: int = 32, seed: int = 0, progress: bool = True,
                            gold_chosen: bool = False) -> tuple[list[PreferencePair], dict[str, Any]]:
    """Sample ``num_samples`` answers per prompt from ``model`` and pair them by correctness."""
    from .generate import generate_answers

    samples = generate_answers(model, tokenizer, [r["messages"] for r in records], max_new_tokens=max_new_tokens,
                               temperature=temperature, batch_size=batch_size, seed=seed, num_samples=num_samples,
                               progress=progress)
    return make_preference_pairs(records, samples, seed=seed, gold_chosen=gold_chosen)


class PairDataset(Dataset):
    """Tokenized preference pairs; pairs whose response ``max_len`` cuts off are dropped."""

    def __init__(self, pairs: Sequence[PreferencePair], tokenizer: Any, max_len: int):
        self.items = []
        for p in pairs:
            cid, cmask = tokenize_prompt_response(tokenizer, p.prompt, p.chosen, max_len)
            rid, rmask = tokenize_prompt_response(tokenizer, p.prompt, p.rejected, max_len)
            if sum(cmask) == 0 or sum(rmask) == 0:
                continue  # response cut off by max_len
            self.items.append({"chosen_ids": cid, "chosen_mask": cmask, "rejected_ids": rid, "rejected_mask": rmask,
                               "reward_chosen": p.reward_chosen, "reward_rejected": p.reward_rejected})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.items[i]


def preference_collate(items: list[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """Batch of tokenized pairs (``chosen_ids``/``chosen_mask``/``rejected_ids``/``rejected_mask``
    lists, optional ``reward_chosen``/``reward_rejected`` floats), right padded."""
    batch = {
        "chosen_ids": pad_right([it["chosen_ids"] for it in items], pad_id),
        "chosen_mask": pad_right([it["chosen_mask"] for it in items], 0),
        "rejected_ids": pad_right([it["rejected_ids"] for it in items], pad_id),
        "rejected_mask": pad_right([it["rejected_mask"] for it in items], 0),
    }
    rewards: Optional[list[float]] = [it.get("reward_chosen") for it in items]
    if rewards is not None and all(r is not None for r in rewards):
        batch["reward_chosen"] = torch.tensor([it["reward_chosen"] for it in items], dtype=torch.float32)
        batch["reward_rejected"] = torch.tensor([it["reward_rejected"] for it in items], dtype=torch.float32)
    return batch

