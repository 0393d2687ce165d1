#!/usr/bin/env python
"""Compress SmolLM2-135M (real weights, imported offline) and test the paper's claims on it.

    python scripts/compress_smollm2.py                         # the default (docs/smollm2_compression.md: 3.85 h with one worker beside other work)
    python scripts/compress_smollm2.py --quick --out /tmp/s    # the test suite's run (numbers meaningless)

Width (hidden + FFN + heads) vs depth (KL, cosine) vs each width axis alone, all at half the
non-embedding parameters; each distilled from the full model for the same tokens; the width shape
from random init for 1x and more; decode speed side by side; held-out loss and lm-eval benchmarks.
Writes docs/smollm2_compression.{md,png,json} (unless --quick). It is ``scripts/ablations.py
--model smollm2-135m``; every option of that script works here.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ablations import main as ablations_main  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    return ablations_main(args if "--model" in args else ["--model", "smollm2-135m", *args])


if __name__ == "__main__":
    raise SystemExit(main())
