"""``nemo-minitron ablations``: reproduce the paper's pruning ablations on a teacher.

Wiring only: the budget from ``recipes/ablations.py`` (``DEFAULT`` or ``QUICK``, single values
overridden) and the teacher (default: the built-in tiny one, trained if absent) ->
:func:`nemo_minitron.ablations.run_ablations`, which distills every student with the
``distill`` stage -> results.json / results.md / ablations.png.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional

from nemo_minitron.ablations import run_ablations
from nemo_minitron.outputs import check_output_path

from ._recipes import recipe_module


def ablations(output_dir: str = "outputs/ablations", teacher_path: Optional[str] = None, quick: bool = False,
              num_seeds: Optional[int] = None, steps: Optional[int] = None, match_factor: Optional[int] = None,
              workers: Optional[int] = None, keep_layers: Optional[int] = None, docs_dir: Optional[str] = None,
              progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Reproduce the paper's pruning ablations on ``teacher_path`` (default: the built-in tiny teacher).

    Writes ``output_dir/results.{json,md}`` and ``ablations.png``; with ``docs_dir`` also
    ``docs_dir/results.md`` and ``docs_dir/ablations.png``. ``quick`` is the test suite's
    setting (every code path in a couple of minutes; its numbers mean nothing). Rerunning with the
    same ``output_dir`` and settings reuses every finished student and run; any other non-empty
    folder needs ``overwrite=True``, and the teacher's folder never.
    """
    from nemo_minitron.stages.distill import distill

    check_output_path(output_dir, "ablations", ("settings.json", "results.json", "students", "runs"),
                      inputs={"teacher_path": teacher_path}, overwrite=overwrite,
                      argument="output_dir")

    budgets = recipe_module("ablations")
    overrides = {k: v for k, v in dict(num_seeds=num_seeds, steps=steps, match_factor=match_factor,
                                       workers=workers).items() if v is not None}
    settings = replace(budgets.QUICK if quick else budgets.DEFAULT, **overrides)
    if teacher_path is None:
        from nemo_minitron.stages.pretrain import ensure_tiny_teacher

        teacher_path = str(ensure_tiny_teacher())
    return run_ablations(teacher_path, output_dir, settings, distill, keep_layers=keep_layers, docs_dir=docs_dir,
                         progress=progress)
