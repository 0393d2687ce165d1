"""``nemo-minitron distill``: distill a student checkpoint from a teacher checkpoint, resumably.

Wiring only: load both checkpoints and the corpus -> :class:`~nemo_minitron.train.DistillationModule`
-> :func:`~nemo_minitron.train.fit` -> save the student (with the tokenizer and
``distill_summary.json``) to ``save_path``, atomically.
"""

from typing import Any, Optional

from nemo_minitron.data.tokens import corpus_tokens
from nemo_minitron.models import load_model, load_tokenizer
from nemo_minitron.models.io import dtype_name, output_dtype
from nemo_minitron.models.runtime import resolve_chunk_size, set_ssm_chunk_size
from nemo_minitron.train import (DistillationModule, PackedRows, StepData, check_same_tokenizer, fit)

from ._training import check_training_paths, config_record, moved_to_configs, save_model
from .renames import renamed
from .settings import DistillTrain, DistillOptim

SUMMARY_FILE = "distill_summary.json"



@renamed(**moved_to_configs())
def distill(teacher_path: str, student_path: str, save_path: str, data_path: Optional[str] = None,
            val_data_path: Optional[str] = None, temperature: float = 1.0, direction: str = "forward",
            ce_weight: float = 0.0, train: DistillTrain = DistillTrain(),
            optim: DistillOptim = DistillOptim(), dtype: Optional[str] = None,
            overwrite: bool = False) -> dict[str, Any]:
    """Train ``student_path`` to match ``teacher_path``'s logits (forward KL); save it to ``save_path``.

    Data: packed rows of ``data_path`` (text/jsonl/parquet files) or the built-in corpus;
    validation on ``val_data_path``, else the built-in corpus's held-out split when training on it.
    ``train.stop_after_steps`` ends this call early with a resumable checkpoint in the work folder
    (the LR schedule still spans ``train.max_steps``); the student is written only by the call
    that reaches ``train.max_steps``, which then removes the work folder unless ``train.keep_work``.
    Training runs in float32; the student is saved in ``dtype`` (default: the student checkpoint's).
    ``save_path`` may replace an earlier distill output; any other non-empty folder needs
    ``overwrite=True``, and an input never.
    """
    import lightning as L

    check_training_paths("distill", save_path, SUMMARY_FILE, overwrite, train,
                         checkpoints={"teacher_path": teacher_path, "student_path": student_path},
                         data={"data_path": data_path, "val_data_path": val_data_path})
    optim.check(train)
    save_dtype = output_dtype(dtype, student_path)
    teacher_tok, student_tok = load_tokenizer(teacher_path), load_tokenizer(student_path)
    check_same_tokenizer(teacher_tok, student_tok, teacher_path, student_path)
    L.seed_everything(train.seed, workers=True, verbose=False)
    rows = corpus_tokens(teacher_tok, train.seq_length, data_path, "train")  # the data before the weights
    has_val = bool(val_data_path) or not data_path
    val = PackedRows(corpus_tokens(teacher_tok, train.seq_length, val_data_path, "validation")) if has_val else None
    teacher, student = load_model(teacher_path), load_model(student_path)
    for model in (teacher, student):
        set_ssm_chunk_size(model, resolve_chunk_size(train.ssm_chunk_size, train.accelerator))
    module = DistillationModule(student, teacher, optim=optim, total_steps=train.max_steps, temperature=temperature,
                                direction=direction, ce_weight=ce_weight)  # type: ignore[arg-type]
    data = StepData(PackedRows(rows), train.micro_batch_size, train.max_steps, seed=train.seed, val=val)
    result = fit(module, data, train, optim, save_path, tokens_per_row=train.seq_length)
    summary = {"teacher_path": str(teacher_path), "student_path": str(student_path), **result.summary,
               "dtype": dtype_name(save_dtype),
               "config": config_record(train, optim, temperature=temperature, direction=direction,
                                       ce_weight=ce_weight)}
    result.finish(lambda: save_model(module.student, student_tok, save_path, SUMMARY_FILE, summary,
                                     source=student_path, dtype=save_dtype))
    return summary
