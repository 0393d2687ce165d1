"""``nemo-minitron pipeline``: the stages of the paper as one NeMo-Run experiment.

The tiny recipe, from the shipped teacher (or ``teacher_dir``): prune -> distill -> eval (teacher vs
pruned vs distilled) -> instruct teacher -> SFT-KD x2 -> RPO x2 -> long-context SFT -> eval (final
model vs instruct teacher). The real-scale recipes: prune -> distill -> eval on the user's
checkpoint and data.

Wiring only: ``recipe=`` names a step builder in ``recipes/`` (:data:`recipes.PIPELINES`),
which holds every setting; :func:`nemo_minitron.experiment.run_steps` runs the unfinished steps
(finished ones are skipped, so a rerun continues where the last one stopped); this stage prints
the evaluation reports and writes ``pipeline_summary.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from nemo_minitron.atomic import write_json_atomic
from nemo_minitron.executors import SlurmOptions
from nemo_minitron.experiment import Step, run_steps
from nemo_minitron.outputs import check_output_path

from ._recipes import recipe_module

SUMMARY_FILE = "pipeline_summary.json"


def step_builder(recipe: str) -> Callable[..., list[Step]]:
    """The step builder that ``recipe=`` names (:data:`recipes.PIPELINES`)."""
    pipelines: dict[str, str] = recipe_module().PIPELINES
    if recipe not in pipelines:
        raise ValueError(f"recipe={recipe!r} is unknown; available: {sorted(pipelines)}")
    module, _, attr = pipelines[recipe].partition(":")
    obj: Any = recipe_module(module.removeprefix("recipes."))
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def pipeline(recipe: str = "tiny", output_dir: str = "outputs/pipeline", teacher_dir: Optional[str] = None,
             model_path: Optional[str] = None, data_path: Optional[str] = None,
             val_data_path: Optional[str] = None, scale: float = 1.0, use_search: bool = False,
             launcher: str = "direct",
             slurm: Optional[SlurmOptions] = None, dryrun: bool = False, only: Optional[list[str]] = None,
             overwrite: bool = False) -> dict[str, Any]:
    """Run every unfinished stage of ``recipe`` into ``output_dir`` and print the final report.

    Recipes: ``tiny`` (built-in default, CPU), ``nemotron_h_8b_to_4b`` and ``mamba2_1.3b_to_780m``
    (GPU; need ``model_path`` and ``data_path``). ``scale`` multiplies every stage's step count
    (tests use a small value); ``only`` restricts the run to the named stages; finished stages are
    skipped. ``launcher``: ``direct`` (this process), ``local`` (local processes, torchrun for
    several GPUs) or ``slurm`` (dependent jobs, ``slurm`` says where); ``dryrun`` prints what
    would be submitted and runs nothing. ``output_dir`` may be an earlier run of this pipeline
    (it continues); any other non-empty folder needs ``overwrite=True``, and an input never.
    """
    build = step_builder(recipe)
    out = Path(output_dir)
    steps = build(out, teacher_dir=teacher_dir, scale=scale, use_search=use_search,
                  model_path=model_path, data_path=data_path, val_data_path=val_data_path)
    # An earlier run of this pipeline holds its summary or any of its stage folders.
    markers = {SUMMARY_FILE} | {s.output.relative_to(out).parts[0] for s in steps if out in s.output.parents}
    check_output_path(out, "pipeline", sorted(markers), overwrite=overwrite, argument="output_dir",
                      inputs={"model_path": model_path, "data_path": data_path, "val_data_path": val_data_path,
                              "teacher_dir": teacher_dir})
    out.mkdir(parents=True, exist_ok=True)
    result = run_steps(recipe, steps, launcher=launcher, slurm=slurm, dryrun=dryrun, only=only)
    if result.get("dryrun"):
        return result
    summary = {"recipe": recipe, "output_dir": str(out), **result}
    for report in sorted(out.glob("*_eval/eval_report.md")):
        print(report.read_text())
    write_json_atomic(out / SUMMARY_FILE, summary)
    return summary
