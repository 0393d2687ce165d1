"""Runs the ``distill`` stage from a script file, for the DDP parity test in ``test_distill.py``.

Lightning's DDP launcher on CPU (``_SubprocessScriptLauncher``) starts the other ranks by
re-running ``sys.argv`` with ``LOCAL_RANK`` set, so the job must be a script file: neither
``python -c`` nor a pytest process can be re-run that way. Every rank executes this file;
rank 0 writes the summary.

    python tests/ddp_worker.py '<json kwargs for distill; train and optim as dicts>' RESULT.json
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a plain checkout works too


def main() -> None:
    import torch

    torch.set_num_threads(1)  # two ranks on a 2-core machine: one thread each
    from nemo_minitron.stages.distill import DistillOptim, DistillTrain, distill

    kwargs = json.loads(sys.argv[1])
    kwargs["train"] = DistillTrain(**kwargs.get("train", {}))
    kwargs["optim"] = DistillOptim(**kwargs.get("optim", {}))
    summary = distill(**kwargs)
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        Path(sys.argv[2]).write_text(json.dumps(summary))


if __name__ == "__main__":
    main()
