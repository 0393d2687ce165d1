"""``nemo-minitron rpo``: one round of RPO / DPO preference alignment against a frozen reference.

Wiring only: preference pairs (a file, or sampled from the model and scored by the task checker,
:mod:`nemo_minitron.posttrain.pairs`) -> :class:`~nemo_minitron.train.RPOModule` ->
:func:`~nemo_minitron.train.fit` -> the policy (with the chat template, ``rpo_summary.json`` and,
for sampled pairs, ``rpo_pairs.jsonl``) in ``save_path``.
"""

import json
from functools import partial
from typing import Any, Optional

from nemo_minitron.data.chat import load_preference_jsonl, pad_id_of, write_jsonl
from nemo_minitron.data.instruct_tasks import TASKS, generate_tasks
from nemo_minitron.losses.preference import PREFERENCE_LOSSES
from nemo_minitron.models import load_tokenizer
from nemo_minitron.models.io import dtype_name, output_dtype
from nemo_minitron.posttrain.pairs import PairDataset, preference_collate, sample_preference_pairs
from nemo_minitron.posttrain.topk_cache import checkpoint_fingerprint
from nemo_minitron.train import RPOModule, StepData, fit, work_dir_of

from ._posttraining import finish_chat_model, load_for_training
from ._training import check_training_paths, config_record, moved_to_configs
from .renames import renamed
from .settings import RPOTrain, RPOOptim

SUMMARY_FILE = "rpo_summary.json"
PAIRS_FILE = "rpo_pairs.jsonl"



@renamed(**moved_to_configs())
def rpo(model_path: str, save_path: str, data_path: Optional[str] = None, round: int = 1,
        loss_type: str = "rpo_bwd_kl", beta: float = 0.1, eta: float = 1.0, sft_weight: float = 0.0,
        num_prompts: int = 256, num_samples: int = 4, temperature: float = 1.0, max_new_tokens: int = 16,
        tasks: Optional[str] = None, gold_chosen: bool = False, train: RPOTrain = RPOTrain(),
        optim: RPOOptim = RPOOptim(), dtype: Optional[str] = None, overwrite: bool = False) -> dict[str, Any]:
    """One round of preference alignment (RPO or DPO) against a frozen copy of ``model_path``.

    Pairs: ``data_path`` (preference JSONL: prompt, chosen, rejected, optional rewards) or, by
    default, sampled from the model itself: ``num_samples`` answers at ``temperature`` for each
    of ``num_prompts`` built-in task prompts (``tasks``: comma-separated, default all five),
    rewarded 1/0 by the task checker; chosen = a correct sample, rejected = an incorrect one
    (with ``gold_chosen`` the checker's reference answer is chosen where every sample is wrong).
    Loss: ``loss_type`` in rpo_bwd_kl | rpo_fwd_kl | rpo_sq | dpo with a = beta x (policy-vs-
    reference log-ratio gap) and b = eta x (reward gap), + ``sft_weight`` x NLL of chosen.
    Sampled pairs are kept in the work folder (reused when the stage resumes) and saved with the
    finished model as ``rpo_pairs.jsonl``. The policy is saved in ``dtype`` (default: its
    checkpoint's); ``overwrite`` as for every stage (docs/cli.md).
    """
    import lightning as L

    check_training_paths("rpo", save_path, SUMMARY_FILE, overwrite, train, checkpoints={"model_path": model_path},
                         data={"data_path": data_path}, chat_data=True)
    if loss_type not in PREFERENCE_LOSSES:
        raise ValueError(f"loss_type={loss_type!r} must be one of {PREFERENCE_LOSSES}")
    optim.check(train)
    save_dtype = output_dtype(dtype, model_path)
    L.seed_everything(train.seed, workers=True, verbose=False)
    tokenizer = load_tokenizer(model_path)
    given = ([p for path in str(data_path).split(",") if path.strip() for p in load_preference_jsonl(path.strip())]
             if data_path else None)  # read (and check) the pairs before the weights load
    policy = load_for_training(model_path, train)
    work = work_dir_of(train, save_path)
    pairs_file, meta_file = work / "pairs.jsonl", work / "pairs_meta.json"
    task_list = tuple(t.strip() for t in tasks.split(",")) if tasks else TASKS
    meta = {"model": checkpoint_fingerprint(model_path), "data_path": data_path, "round": round,
            "num_prompts": num_prompts, "num_samples": num_samples, "temperature": temperature,
            "max_new_tokens": max_new_tokens, "tasks": list(task_list), "seed": train.seed, "gold_chosen": gold_chosen}
    stats: dict[str, Any]
    if given is not None:
        pairs = given
        stats = {"pairs": len(pairs), "source": data_path}
    elif pairs_file.is_file() and meta_file.is_file() and json.loads(meta_file.read_text()).get("meta") == meta:
        pairs = load_preference_jsonl(pairs_file)
        stats = {**json.loads(meta_file.read_text())["stats"], "reused": str(pairs_file)}
    else:
        unknown = [t for t in task_list if t not in TASKS]
        if unknown:
            raise ValueError(f"tasks={tasks!r}: unknown {unknown}; choose from {TASKS}")
        records = generate_tasks(task_list, num_prompts, seed=train.seed + 104723 * round, split="train")
        pairs, stats = sample_preference_pairs(policy, tokenizer, records, num_samples, temperature, max_new_tokens,
                                               seed=train.seed + round, progress=train.progress,
                                               gold_chosen=gold_chosen)
        if pairs:
            write_jsonl((p.to_record() for p in pairs), pairs_file)
            meta_file.write_text(json.dumps({"meta": meta, "stats": stats}, indent=1))
    if loss_type != "dpo" and any(p.reward_chosen is None for p in pairs):
        raise ValueError(f"loss_type={loss_type!r} needs reward_chosen/reward_rejected in every pair; "
                         "add them to the data or use loss_type='dpo'")
    dataset = PairDataset(pairs, tokenizer, train.seq_length)
    if len(dataset) < train.micro_batch_size:
        raise ValueError(f"only {len(dataset)} preference pairs ({stats}); need at least train.micro_batch_size="
                         f"{train.micro_batch_size}. With sampled pairs: more num_prompts/num_samples, or a "
                         "temperature that gives both correct and wrong answers")
    pad = pad_id_of(tokenizer)
    module = RPOModule(policy, load_for_training(model_path, train), optim=optim, total_steps=train.max_steps,
                       loss_type=loss_type, beta=beta, eta=eta, sft_weight=sft_weight, pad_id=pad)
    data = StepData(dataset, train.micro_batch_size, train.max_steps, seed=train.seed,
                    collate=partial(preference_collate, pad_id=pad))
    result = fit(module, data, train, optim, save_path, tokens_key="chosen_ids")
    sampled = not data_path
    summary = {"stage": f"rpo_round{round}", "model_path": str(model_path), **result.summary,
               "dtype": dtype_name(save_dtype), "pairs": stats,
               "pairs_file": f"{save_path}/{PAIRS_FILE}" if sampled else data_path,
               "config": config_record(train, optim, loss_type=loss_type, beta=beta, eta=eta, sft_weight=sft_weight,
                                       num_prompts=num_prompts, num_samples=num_samples, temperature=temperature,
                                       gold_chosen=gold_chosen)}
    files = {PAIRS_FILE: pairs_file.read_text()} if sampled and pairs_file.is_file() else None
    finish_chat_model(result, module.policy, tokenizer, save_path, SUMMARY_FILE, summary, files, source=model_path,
                      dtype=save_dtype)
    return summary
