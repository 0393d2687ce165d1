"""NeMo-Run recipe factories for nemo-minitron.

A recipe is a function that returns a ``run.Partial`` of a stage's library function with every
setting of one named configuration filled in. It is registered with
``@nemo_minitron.nemorun.recipe(<stage function>, name)``, so on the command line
``nemo-minitron <stage> --factory <name> key=value ...`` starts from it, and in Python
``run.run(recipe())`` runs it, here or on any NeMo-Run executor.

Modules:
    tiny   the built-in tiny default (CPU, minutes): ``nemo-minitron pretrain --factory tiny``
    scale  the paper's Nemotron-H 8B -> 4B and Mamba2 1.3B -> 780M, per stage (GPU):
           ``nemo-minitron distill --factory nemotron_h_8b_to_4b model_path=... data_path=...``

Recipe modules import their stage's library code (torch, Lightning), so this package imports
none of them itself; ``nemo_minitron.cli`` imports the ones a stage lists when the stage runs.
``configs/`` holds the YAML form of the same recipes, to copy and edit.
"""
