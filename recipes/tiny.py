"""The built-in tiny default: every stage on the tiny NemotronH teacher, on a CPU, in minutes.

Recipes here are NeMo-Run factories (``run.Partial`` of a stage's library function):

    nemo-minitron pretrain --factory tiny output_dir=outputs/demo/teacher
    nemo-minitron pretrain --factory "tiny(output_dir=outputs/t)" max_steps=100 --dryrun

or in Python::

    import nemo_run as run
    from recipes.tiny import tiny_pretrain
    run.run(tiny_pretrain(output_dir="outputs/t"))          # here, in this process
    run.run(tiny_pretrain(), executor=run.LocalExecutor())   # or on any NeMo-Run executor

``configs/tiny.yaml`` is the same configuration as YAML (``--yaml configs/tiny.yaml``);
``tests/test_cli.py`` checks that the two resolve to the same thing.
"""

import inspect
from typing import Any, Dict

import nemo_run as run

from nemo_minitron.nemorun import recipe
from nemo_minitron.pretrain import pretrain_teacher

#: Where the demo keeps its teacher (``make demo``); a finished checkpoint there is reused.
DEMO_TEACHER_DIR = "outputs/demo/teacher"

#: Arguments that are per-run switches or Python-only, never part of the recipe.
_NOT_RECIPE = ("output_dir", "force", "arch")


def tiny_pretrain_settings() -> Dict[str, Any]:
    """The tiny teacher's training settings, spelled out.

    ``pretrain_teacher``'s defaults *are* the tiny configuration (its ``arch_name="tiny"`` preset,
    sized to train in about ten minutes on 2 CPU cores), so the recipe takes them from its
    signature rather than copying numbers that could drift from the library.
    """
    return {
        name: param.default
        for name, param in inspect.signature(pretrain_teacher).parameters.items()
        if name not in _NOT_RECIPE and param.default is not inspect.Parameter.empty
    }


@recipe(pretrain_teacher, "tiny")
def tiny_pretrain(output_dir: str = DEMO_TEACHER_DIR) -> run.Partial:
    """Pretrain the built-in tiny NemotronH teacher on CPU (cached in ``output_dir``)."""
    return run.Partial(pretrain_teacher, output_dir=output_dir, **tiny_pretrain_settings())
