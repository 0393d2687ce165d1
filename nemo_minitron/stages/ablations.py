"""``nemo-minitron ablations``: reproduce the paper's pruning ablations on a teacher.

Wiring only: the teacher (a built-in pretrained ``model`` imported into ``output_dir/teacher``,
a checkpoint folder, or by default the shipped teacher, docs/teacher.md), the budget for its
kind from ``recipes/ablations.py`` (default or quick, single values overridden) ->
:func:`nemo_minitron.ablations.run_ablations`, which distills every student with the ``distill``
stage -> the report (results.json / results.md / ablations.png for the hybrid teacher,
``<name>_compression.{md,png,json}`` for a plain decoder).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

from nemo_minitron.ablations import run_ablations
from nemo_minitron.ablations.report import ReportFiles
from nemo_minitron.ablations.variants import DECODER, model_kind
from nemo_minitron.arch import HybridArch
from nemo_minitron.models import is_complete_checkpoint, load_config
from nemo_minitron.outputs import check_output_path

from ._recipes import recipe_module


def ablations(output_dir: str = "outputs/ablations", teacher_path: Optional[str] = None, model: Optional[str] = None,
              quick: bool = False, num_seeds: Optional[int] = None, steps: Optional[int] = None,
              match_factor: Optional[int] = None, workers: Optional[int] = None, keep_layers: Optional[int] = None,
              docs_dir: Optional[str] = None, report_name: Optional[str] = None, progress: bool = True,
              overwrite: bool = False) -> dict[str, Any]:
    """Reproduce the paper's pruning ablations on a teacher (default: the shipped teacher, docs/teacher.md).

    ``model``: a built-in pretrained model (``smollm2-135m``) imported into ``output_dir/teacher``;
    ``teacher_path``: a checkpoint folder. A hybrid teacher gets the Mamba findings, a plain decoder
    width vs depth, KL vs cosine, each width axis alone and random init, scored on held-out text and
    lm-eval benchmarks. Writes the report to ``output_dir`` (with ``docs_dir`` also there; a decoder's
    as ``<report_name>.{md,png,json}``, default ``<model>_compression``). ``quick`` is the test suite's
    setting (every code path in minutes; its numbers mean nothing). Rerunning with the same
    ``output_dir`` and settings reuses every finished student and run; any other non-empty folder
    needs ``overwrite=True``, and the teacher's folder never.
    """
    from nemo_minitron.stages.distill import distill

    if model and teacher_path:
        raise ValueError(f"give either model={model!r} (a built-in model to import) or teacher_path={teacher_path!r}, "
                         "not both")
    check_output_path(output_dir, "ablations", ("settings.json", "results.json", "students", "runs"),
                      inputs={"teacher_path": teacher_path}, overwrite=overwrite, argument="output_dir")
    if model:
        teacher_path = import_teacher(model, Path(output_dir) / "teacher")
    elif teacher_path is None:
        from nemo_minitron.data.shipped_teacher import shipped_teacher

        teacher_path = str(shipped_teacher())
    kind = model_kind(HybridArch.from_hf_config(load_config(teacher_path)))
    default, quick_settings = recipe_module("ablations").BUDGETS[kind]
    overrides = {k: v for k, v in dict(num_seeds=num_seeds, steps=steps, match_factor=match_factor,
                                       workers=workers).items() if v is not None}
    settings = replace(quick_settings if quick else default, **overrides)
    files = None
    if kind == DECODER or report_name:
        name = model or Path(teacher_path).name
        files = ReportFiles.named(report_name or f"{name.split('-')[0]}_compression",
                                  title=f"Compressing {name}: the paper's claims on a real model")
    return run_ablations(teacher_path, output_dir, settings, distill, keep_layers=keep_layers, docs_dir=docs_dir,
                         progress=progress, files=files)


def import_teacher(model: str, folder: Path) -> str:
    """The built-in ``model`` as a checkpoint folder, imported once (reused on a rerun of the same model)."""
    import json

    from nemo_minitron.stages.import_ import SUMMARY_FILE, import_checkpoint

    if is_complete_checkpoint(folder):
        summary = folder / SUMMARY_FILE
        source = json.loads(summary.read_text()).get("source") if summary.is_file() else None
        if source != model:
            raise ValueError(f"{folder} holds {source or 'a checkpoint not imported here'}, not model={model!r}; "
                             "use a new output_dir")
        return str(folder)
    import_checkpoint(model, str(folder))
    return str(folder)
