"""``nemo-minitron long_context``: long-context SFT on long conversations with far-apart evidence.

Wiring only: long conversations (:mod:`nemo_minitron.data.long_context` or the user's chat
JSONL) -> plain SFT (:class:`~nemo_minitron.train.SFTKDModule` without KD) ->
:func:`~nemo_minitron.train.fit` -> the model (with ``long_context_summary.json``) in ``save_path``.
"""

from typing import Any, Optional

from nemo_minitron.data.chat import ChatDataset
from nemo_minitron.models import load_tokenizer
from nemo_minitron.models.io import dtype_name, output_dtype
from nemo_minitron.posttrain.conversations import load_conversations

from ._posttraining import finish_chat_model, plain_sft
from ._training import check_training_paths, config_record, moved_to_configs
from .renames import renamed
from .settings import LongContextTrain, LongContextOptim

SUMMARY_FILE = "long_context_summary.json"



@renamed(**moved_to_configs())
def long_context(model_path: str, save_path: str, min_len: int, max_len: int, data_path: Optional[str] = None,
                 num_train: int = 64, num_pairs: int = 3, train: LongContextTrain = LongContextTrain(),
                 optim: LongContextOptim = LongContextOptim(), dtype: Optional[str] = None,
                 overwrite: bool = False) -> dict[str, Any]:
    """Long-context SFT (cross-entropy on assistant tokens) on sequences of ``min_len``..``max_len`` tokens.

    Built-in data (:mod:`nemo_minitron.data.long_context`): ``num_train`` conversations made of
    round-2 chat turns, with key-value facts stated in the first turn and asked about in the
    last, the total length drawn uniformly in [min_len, max_len]. ``data_path``: chat JSONL of
    ready long conversations instead (truncated at ``max_len``). The model is saved in ``dtype``
    (default: its checkpoint's); ``overwrite`` as for every stage (docs/cli.md).
    """
    import lightning as L

    from nemo_minitron.data.long_context import build_long_dataset

    check_training_paths("long_context", save_path, SUMMARY_FILE, overwrite, train,
                         checkpoints={"model_path": model_path}, data={"data_path": data_path}, chat_data=True)
    optim.check(train)
    save_dtype = output_dtype(dtype, model_path)
    L.seed_everything(train.seed, workers=True, verbose=False)
    tokenizer = load_tokenizer(model_path)
    if data_path:
        dataset = ChatDataset(load_conversations(data_path, list), tokenizer, max_len)
        lengths = [len(it["input_ids"]) for it in dataset.items]
        distances: list[int] = []
    else:
        samples = build_long_dataset(tokenizer, num_train, min_len, max_len, seed=train.seed, num_pairs=num_pairs)
        dataset = ChatDataset([s.messages for s in samples], tokenizer, max_len)
        lengths = [len(s.input_ids) for s in samples]
        distances = [s.distance for s in samples]
    module, result = plain_sft(model_path, dataset, tokenizer, save_path, train, optim)
    summary = {"stage": "long_context", "model_path": str(model_path), **result.summary, "dtype": dtype_name(save_dtype),
               "data": data_path or "built-in long kv-recall conversations (round-2 chat filler)",
               "sequences": len(dataset), "min_len": min_len, "max_len": max_len,
               "length_range": [min(lengths), max(lengths)] if lengths else None,
               "mean_evidence_distance": sum(distances) / len(distances) if distances else None,
               "config": config_record(train, optim, num_train=num_train, num_pairs=num_pairs)}
    finish_chat_model(result, module.student, tokenizer, save_path, SUMMARY_FILE, summary, source=model_path,
                      dtype=save_dtype)
    return summary
