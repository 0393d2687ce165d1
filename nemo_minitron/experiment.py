"""Steps as one NeMo-Run experiment: skip the finished ones, run the rest in order.

A :class:`Step` is a stage call (function + arguments) and the output it produces; the output's
presence (a complete checkpoint folder, or a file) marks it finished, so a rerun continues where
the last one stopped. :func:`run_steps` runs the unfinished steps as tasks of one
``nemo_run.Experiment``: in this process (``launcher="direct"``), as local subprocesses
(``"local"``), or as dependent Slurm jobs (``"slurm"``; ``dryrun=True`` prints the sbatch
scripts and submits nothing). The pipeline stage and ``scripts/posttrain_report.py`` both run
their stages through it; recipes (``recipes/``) build the step lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from .executors import SlurmOptions, launcher_executor
from .models import is_complete_checkpoint


@dataclass
class Step:
    """One stage call: ``fn(**kwargs)`` writes ``output``."""

    name: str
    fn: Callable[..., Any]
    kwargs: dict[str, Any]
    output: Path  #: what the stage produces; its presence marks the stage finished

    def done(self) -> bool:
        return is_complete_checkpoint(self.output) if self.output.is_dir() else self.output.is_file()


def run_steps(title: str, steps: list[Step], launcher: str = "direct", slurm: Optional[SlurmOptions] = None,
              dryrun: bool = False, only: Optional[list[str]] = None) -> dict[str, Any]:
    """Run every unfinished step of ``steps`` (only those named in ``only``, if given) in order.

    Returns ``{"skipped", "ran", "finished"}`` (``finished``: each step's state afterwards), or
    ``{"dryrun": True, "to_run"}`` when ``dryrun`` (nothing runs).
    """
    import nemo_run as run

    executor = launcher_executor(launcher, slurm)  # refuses an unknown launcher
    if only:
        unknown = set(only) - {s.name for s in steps}
        if unknown:
            raise ValueError(f"only={sorted(unknown)} are not stages of {title!r}: {[s.name for s in steps]}")
    todo = [s for s in steps if not s.done() and (not only or s.name in only)]
    skipped = [s.name for s in steps if s.done()]
    print(f"[{title}] {len(steps)} stages, finished: {skipped or 'none'}, to run: {[s.name for s in todo] or 'none'}")
    if todo:
        with run.Experiment(f"minitron-{title}", executor=executor, log_level="WARN") as exp:
            for step in todo:
                exp.add(run.Partial(step.fn, **step.kwargs), executor=executor, name=step.name)
            if dryrun:
                exp.dryrun()
                return {"dryrun": True, "to_run": [s.name for s in todo]}
            exp.run(sequential=True, direct=launcher == "direct")
    return {"skipped": skipped, "ran": [s.name for s in todo], "finished": {s.name: s.done() for s in steps}}
