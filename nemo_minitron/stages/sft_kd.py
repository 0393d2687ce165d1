"""``nemo-minitron sft_kd``: SFT with knowledge distillation from the teacher's cached top-k logits.

Wiring only: chat data -> the teacher's top-k cache (:mod:`nemo_minitron.posttrain.topk_cache`)
-> :class:`~nemo_minitron.train.SFTKDModule` -> :func:`~nemo_minitron.train.fit` -> the student
(with the chat template and ``sft_kd_summary.json``) in ``save_path``.
"""

from functools import partial
from pathlib import Path
from typing import Any, Optional

from nemo_minitron.data.chat import ChatDataset, pad_id_of
from nemo_minitron.data.instruct_tasks import ROUND_TASKS, round_records
from nemo_minitron.models import load_tokenizer
from nemo_minitron.models.io import dtype_name, output_dtype
from nemo_minitron.posttrain.conversations import load_conversations
from nemo_minitron.posttrain.topk_cache import TopKDataset, build_topk_cache, checkpoint_fingerprint, topk_collate
from nemo_minitron.train import SFTKDModule, StepData, check_same_tokenizer, fit, work_dir_of

from ._posttraining import finish_chat_model, load_for_training
from ._training import check_training_paths, config_record, moved_to_configs
from .renames import renamed
from .settings import SFTKDTrain, SFTKDOptim

SUMMARY_FILE = "sft_kd_summary.json"



@renamed(**moved_to_configs())
def sft_kd(teacher_path: str, student_path: str, save_path: str, data_path: Optional[str] = None, round: int = 1,
           topk: int = 100, renormalize: bool = True, kd_weight: float = 1.0, sft_weight: float = 0.0,
           num_train: int = 2000, logits_dtype: str = "float16", cache_dir: Optional[str] = None,
           teacher_batch_size: int = 8, shard_size: int = 256, train: SFTKDTrain = SFTKDTrain(),
           optim: SFTKDOptim = SFTKDOptim(), dtype: Optional[str] = None, overwrite: bool = False) -> dict[str, Any]:
    """SFT with knowledge distillation from the teacher's cached top-k logits (one round).

    Loss on assistant tokens only: ``kd_weight`` x forward KL(teacher || student) restricted to
    the teacher's ``topk`` ids (renormalised over them unless ``renormalize=False``) +
    ``sft_weight`` x cross-entropy. Data: ``data_path`` (chat JSONL, comma-separated files) or
    ``num_train`` built-in conversations of round ``round`` (1: arithmetic/reverse/copy,
    2: kv_recall/fact/copy). The teacher pass is cached in ``cache_dir`` (default
    ``<work folder>/topk_cache``, removed with the work folder when the stage finishes unless
    ``train.keep_work``; pass a ``cache_dir`` of your own to keep it) and resumable. The student
    is saved in ``dtype`` (default: its checkpoint's); ``overwrite`` as for every stage (docs/cli.md).
    """
    import lightning as L
    import torch

    check_training_paths("sft_kd", save_path, SUMMARY_FILE, overwrite, train,
                         checkpoints={"teacher_path": teacher_path, "student_path": student_path},
                         data={"data_path": data_path}, chat_data=True, other_inputs={"cache_dir": cache_dir})
    optim.check(train)
    save_dtype = output_dtype(dtype, student_path)
    teacher_tok, tokenizer = load_tokenizer(teacher_path), load_tokenizer(student_path)
    check_same_tokenizer(teacher_tok, tokenizer, teacher_path, student_path)
    L.seed_everything(train.seed, workers=True, verbose=False)
    chats = ChatDataset(load_conversations(data_path, lambda: round_records(round, num_train, train.seed)),
                        tokenizer, train.seq_length)
    cache = Path(cache_dir or work_dir_of(train, save_path) / "topk_cache")
    teacher = load_for_training(teacher_path, train)
    device = "cuda" if train.accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available() else "cpu"
    cache_info = build_topk_cache(teacher.to(device), chats.items, cache, k=topk, shard_size=shard_size,
                                  batch_size=teacher_batch_size, logits_dtype=logits_dtype,
                                  teacher_fingerprint=checkpoint_fingerprint(teacher_path),
                                  pad_id=pad_id_of(tokenizer), progress=train.progress)
    del teacher
    module = SFTKDModule(load_for_training(student_path, train), optim=optim, total_steps=train.max_steps,
                         kd_weight=kd_weight, sft_weight=sft_weight, renormalize=renormalize)
    data = StepData(TopKDataset(cache, chats.items), train.micro_batch_size, train.max_steps, seed=train.seed,
                    collate=partial(topk_collate, pad_id=pad_id_of(tokenizer)))
    result = fit(module, data, train, optim, save_path)
    summary = {"stage": f"sft_kd_round{round}", "teacher_path": str(teacher_path), "student_path": str(student_path),
               **result.summary, "dtype": dtype_name(save_dtype), "data": data_path or f"built-in tasks, round {round}: {', '.join(ROUND_TASKS[round])}",
               "conversations": len(chats), "dropped_too_long": chats.num_dropped,
               "topk_cache": {k: cache_info[k] for k in ("k", "logits_dtype", "positions", "bytes", "num_shards",
                                                         "built_shards", "skipped_shards", "seconds")}
               | {"dir": str(cache)},
               "config": config_record(train, optim, topk=topk, renormalize=renormalize, kd_weight=kd_weight,
                                       sft_weight=sft_weight, num_train=num_train)}
    finish_chat_model(result, module.student, tokenizer, save_path, SUMMARY_FILE, summary, source=student_path,
                      dtype=save_dtype)
    return summary
