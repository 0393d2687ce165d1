"""Every setting of nemo-minitron's named configurations, in one home.

Modules:
    tiny       the built-in default (CPU, minutes): the pipeline's steps on the shipped teacher
               (``nemo-minitron pipeline recipe=tiny``, ``--factory tiny``) and the small
               "tiny" teacher's pretraining (``nemo-minitron pretrain --factory tiny``)
    teacher    the shipped teacher's pretraining (``nemo-minitron pretrain --factory teacher``)
    smollm2    SmolLM2-135M-Instruct (real weights, CPU): import, prune every axis, distill,
               post-train, evaluate (``nemo-minitron pipeline recipe=smollm2``)
    scale      the paper's Nemotron-H 8B -> 4B and Mamba2 1.3B -> 780M (GPU): the pipelines'
               steps, one factory per stage (``nemo-minitron distill --factory nemotron_h_8b_to_4b
               model_path=... data_path=...``) and the Slurm pipelines
    posttrain  ``scripts/posttrain_report.py``'s stages: the pruned student, the ``full`` and
               ``quick`` post-training settings and their evaluation
    ablations  the paper's ablations (``nemo-minitron ablations``, ``scripts/ablations.py``):
               ``DEFAULT`` and ``QUICK`` budgets

A factory is a function that returns a ``run.Partial`` of a stage's function with every setting
of one named configuration filled in, registered with ``@nemo_minitron.nemorun.recipe(<stage
function>, name)``, so on the command line ``nemo-minitron <stage> --factory <name> key=value
...`` starts from it, and in Python ``run.run(recipe())`` runs it, here or on any NeMo-Run
executor. A step builder returns the list of :class:`nemo_minitron.experiment.Step` that the
``pipeline`` stage runs; :data:`PIPELINES` names them.

Recipe modules import their stage's library code (torch, Lightning), so this package imports
none of them itself; ``nemo_minitron.cli`` imports the ones a stage lists when the stage runs.
``configs/`` holds the YAML form of the factories, to copy and edit; ``tests/test_cli.py``
checks that every YAML file there equals the factory it names.
"""

#: ``nemo-minitron pipeline recipe=<name>``: the step builder of each pipeline, ``module:attribute``
#: (imported only when that pipeline runs). A builder is called as
#: ``builder(output_dir, teacher_dir=, scale=, use_search=, model_path=, data_path=, val_data_path=)``
#: and ignores the options it has no use for.
PIPELINES = {
    "tiny": "recipes.tiny:tiny_steps",
    "smollm2": "recipes.smollm2:smollm2_steps",
    "nemotron_h_8b_to_4b": "recipes.scale:NEMOTRON_H_8B_TO_4B.steps",
    "mamba2_1.3b_to_780m": "recipes.scale:MAMBA2_1P3B_TO_780M.steps",
}
