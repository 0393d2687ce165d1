"""The built-in tiny default: every stage on the tiny NemotronH teacher, on a CPU, in minutes.

Recipes here are NeMo-Run factories (``run.Partial`` of a stage's function):

    nemo-minitron pretrain --factory tiny save_path=outputs/demo/teacher
    nemo-minitron pretrain --factory "tiny(save_path=outputs/t)" train.max_steps=100 --dryrun

or in Python::

    import nemo_run as run
    from recipes.tiny import tiny_pretrain
    run.run(tiny_pretrain(save_path="outputs/t"))           # here, in this process
    run.run(tiny_pretrain(), executor=run.LocalExecutor())   # or on any NeMo-Run executor

``configs/tiny.yaml`` is the same configuration as YAML (``--yaml configs/tiny.yaml``);
``tests/test_cli.py`` checks that the two resolve to the same thing.
"""

import dataclasses
import inspect
from typing import Any, Dict

import nemo_run as run

from nemo_minitron.nemorun import recipe
from nemo_minitron.stages.pretrain import pretrain

#: Where the demo keeps its teacher (``make demo``); a finished checkpoint there is reused.
DEMO_TEACHER_DIR = "outputs/demo/teacher"

#: Arguments that are per-run switches or Python-only, never part of the recipe.
_NOT_RECIPE = ("save_path", "force", "arch", "overwrite")
#: Config fields that are per-run switches (where to work, what to keep, when to stop, bars).
_NOT_RECIPE_FIELDS = ("work_dir", "keep_work", "stop_after_steps", "progress", "ssm_chunk_size")


def _spelled_out(value: Any) -> Any:
    """A config object as a ``run.Config`` of all its (recipe) fields, so YAML shows every number."""
    if not dataclasses.is_dataclass(value):
        return value
    fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.name not in _NOT_RECIPE_FIELDS}
    return run.Config(type(value), **fields)


def tiny_pretrain_settings() -> Dict[str, Any]:
    """The tiny teacher's training settings, spelled out.

    ``pretrain``'s defaults *are* the tiny configuration (its ``arch_name="tiny"`` preset and its
    ``PretrainTrain`` / ``PretrainOptim`` defaults, sized to train in about ten minutes on 2 CPU
    cores), so the recipe takes them from its signature rather than copying numbers that could
    drift from the library.
    """
    return {
        name: _spelled_out(param.default)
        for name, param in inspect.signature(pretrain).parameters.items()
        if name not in _NOT_RECIPE and param.default is not inspect.Parameter.empty
    }


@recipe(pretrain, "tiny")
def tiny_pretrain(save_path: str = DEMO_TEACHER_DIR) -> run.Partial:
    """Pretrain the built-in tiny NemotronH teacher on CPU (cached in ``save_path``)."""
    return run.Partial(pretrain, save_path=save_path, **tiny_pretrain_settings())
