"""The instruct teacher of the tiny pipeline: plain SFT of a base teacher on the checkable tasks.

The paper's SFT-KD teacher is an aligned model; the built-in teachers are base LMs that do
not know the tasks, so this fine-tunes one (cross-entropy on assistant tokens) before SFT-KD.
"""

from typing import Any, Optional

from nemo_minitron.data.chat import ChatDataset
from nemo_minitron.data.instruct_tasks import round_records
from nemo_minitron.models import load_tokenizer
from nemo_minitron.models.io import dtype_name, output_dtype
from nemo_minitron.posttrain.conversations import load_conversations

from ._posttraining import finish_chat_model, plain_sft
from ._training import check_training_paths, config_record, moved_to_configs
from .renames import renamed
from .settings import InstructSFTTrain, InstructSFTOptim

SUMMARY_FILE = "sft_summary.json"



@renamed(**moved_to_configs())
def instruct_sft(base_teacher_path: str, save_path: str, data_path: Optional[str] = None, num_train: int = 4000,
                 train: InstructSFTTrain = InstructSFTTrain(), optim: InstructSFTOptim = InstructSFTOptim(),
                 dtype: Optional[str] = None, overwrite: bool = False) -> dict[str, Any]:
    """Plain SFT (cross-entropy on assistant tokens) of a base teacher into an instruct teacher.

    Data: the round-1 + round-2 checkable tasks (``num_train`` conversations, half per round) or
    ``data_path`` (chat JSONL, comma-separated files). The model is saved in ``dtype`` (default:
    its checkpoint's); ``overwrite`` as for every stage (docs/cli.md).
    """
    import lightning as L

    check_training_paths("instruct_sft", save_path, SUMMARY_FILE, overwrite, train,
                         checkpoints={"base_teacher_path": base_teacher_path}, data={"data_path": data_path},
                         chat_data=True)
    optim.check(train)
    save_dtype = output_dtype(dtype, base_teacher_path)
    L.seed_everything(train.seed, workers=True, verbose=False)
    tokenizer = load_tokenizer(base_teacher_path)
    convs = load_conversations(data_path, lambda: round_records(1, num_train // 2, train.seed) +
                               round_records(2, num_train - num_train // 2, train.seed))
    dataset = ChatDataset(convs, tokenizer, train.seq_length)
    module, result = plain_sft(base_teacher_path, dataset, tokenizer, save_path, train, optim)
    summary = {"stage": "instruct_sft", "base_teacher_path": str(base_teacher_path), **result.summary,
               "dtype": dtype_name(save_dtype),
               "data": data_path or "built-in tasks, rounds 1+2", "conversations": len(dataset),
               "dropped_too_long": dataset.num_dropped, "config": config_record(train, optim, num_train=num_train)}
    finish_chat_model(result, module.student, tokenizer, save_path, SUMMARY_FILE, summary,
                      source=base_teacher_path, dtype=save_dtype)
    return summary
