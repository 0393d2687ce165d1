"""The ``nemo-minitron`` command line: the :data:`STAGES` table, usage, and dispatch.

Two ways in, one machinery::

    nemo-minitron <stage> key=value a.b=c ... [--yaml F] [--factory NAME] [--dryrun] [--yes]
    nemo minitron <stage> ...           # NeMo-Run's own ``nemo`` command

How it works
------------
:data:`STAGES` maps a stage name to the function that implements it, always
``nemo_minitron.stages.<name>:<function>`` (one module per stage, named as the stage), plus a
one-line summary. Nothing is imported to list the stages, so ``nemo-minitron --help`` is
instant. For ``nemo-minitron <stage> ...``, :func:`main` imports only that stage's function,
checks the command line for renamed arguments (:mod:`nemo_minitron.stages.renames`), and hands
the rest to NeMo-Run through :mod:`nemo_minitron.nemorun` (the compatibility shim): argument
parsing (typed ``key=value``, dotted overrides such as ``pruning_config.target_hidden_size=N``,
``--yaml``, ``--factory``, ``--dryrun``, ``--to-yaml``, ``--yes``, ``--help``,
``executor=...``) is NeMo-Run's, not ours. The stage function's signature *is* the CLI: its
type hints, defaults and docstring are what ``--help`` shows, and nothing is duplicated here.

Without ``executor=...`` NeMo-Run runs the configured function directly in this process. The
"Continue?" confirmation NeMo-Run asks before running is skipped with ``--yes`` and, since
nobody could answer it, whenever standard input is not a terminal (CI, pipes, ``make``).
Errors are one plain line naming the stage and the field (``prune: unknown argument 'foo'
(did you mean 'bar'?)``, exit status 2; a stage's own refusal, ``prune: <message>``, exit
status 1); add ``-v`` for the traceback.

``nemo minitron <stage>`` works through the ``nemo_run.cli`` entry-point group: NeMo-Run's
``nemo`` command loads every entry point of that group, and the entry point
``minitron = "nemo_minitron.cli:ENTRYPOINTS"`` resolves the module attribute ``ENTRYPOINTS``
(computed on first access, see :func:`__getattr__`), which registers every stage under the
NeMo-Run namespace ``minitron``. The entry point's name must equal :data:`NAMESPACE`.

Recipes
-------
A stage may list recipe modules (``recipes/`` at the repository top level), imported when the
stage is loaded. A recipe is a NeMo-Run factory returning a ``run.Partial`` of the stage's
function, registered with :func:`nemo_minitron.nemorun.recipe` (``@recipe(fn, "tiny")``),
selectable with ``--factory tiny``.

Adding a stage
--------------
1. Write ``nemo_minitron/stages/<name>.py`` with the stage function: type-annotated arguments,
   defaults, no argument named ``executor`` (NeMo-Run reserves it), and a docstring whose first
   paragraph says what the stage does (``--help`` shows it). It only wires load -> library ->
   save. Config objects are dataclasses, as an argument ``pruning_config:
   Optional[PruningConfig] = None`` or with a dataclass default; dotted overrides then set
   their fields. ``from __future__ import annotations`` and ``int | None`` are fine (see
   :func:`nemo_minitron.nemorun.resolve_annotations`).
2. Add one line to :data:`STAGES`, e.g.::

       "prune": Stage("nemo_minitron.stages.prune:prune", "prune a checkpoint"),

   (plus ``recipes=("recipes.tiny",)`` once ``recipes/tiny.py`` has a ``@recipe`` for it).
   ``tests/test_cli.py`` checks its ``--help`` and that the target lies in ``stages/``.

Known NeMo-Run limits: an explicit ``cfg=None`` for an ``Optional[<dataclass>]`` argument is
rejected (leave it out: None is the default); unknown ``--flags`` are ignored silently.
"""

from __future__ import annotations

import difflib
import importlib
import re
import sys
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from nemo_minitron import nemorun

PROG = "nemo-minitron"
#: NeMo-Run namespace of our entrypoints; equals the ``nemo_run.cli`` entry point's name,
#: so that ``nemo minitron <stage>`` finds them.
NAMESPACE = "minitron"


@dataclass(frozen=True)
class Stage:
    """One CLI stage: where its function lives, and how to describe it without importing it."""

    target: str  #: ``"nemo_minitron.stages.<name>:function"``, imported only when the stage runs
    summary: str  #: one line for ``nemo-minitron --help``
    recipes: Tuple[str, ...] = ()  #: modules whose :func:`nemo_minitron.nemorun.recipe` factories apply


#: The stages, in pipeline order. Add a stage with one module and one line (see the module docstring).
STAGES: Dict[str, Stage] = {
    "import": Stage(
        "nemo_minitron.stages.import_:import_checkpoint",
        "a built-in pretrained model (smollm2-135m, gemma3-270m), a GGUF file or an HF folder -> an HF checkpoint",
    ),
    "pretrain": Stage(
        "nemo_minitron.stages.pretrain:pretrain",
        "train a NemotronH teacher on an offline corpus (the tiny one, or the shipped teacher: --factory teacher)",
        recipes=("recipes.tiny", "recipes.teacher"),
    ),
    "prune": Stage(
        "nemo_minitron.stages.prune:prune",
        "group-aware Minitron-SSM pruning of a checkpoint (Mamba heads/channels, FFN, embedding, attention, depth)",
        recipes=("recipes.scale",),
    ),
    "search": Stage(
        "nemo_minitron.stages.search:search",
        "architecture search under a parameter budget: zero-shot loss, short distillation of the top K",
    ),
    "distill": Stage(
        "nemo_minitron.stages.distill:distill",
        "distill a (pruned) student from its teacher with a forward-KL logits loss (resumable)",
        recipes=("recipes.scale",),
    ),
    "sft_kd": Stage(
        "nemo_minitron.stages.sft_kd:sft_kd",
        "SFT with knowledge distillation from the teacher's cached top-k logits (assistant tokens only)",
    ),
    "rpo": Stage(
        "nemo_minitron.stages.rpo:rpo",
        "RPO / DPO preference alignment against a frozen reference copy",
    ),
    "long_context": Stage(
        "nemo_minitron.stages.long_context:long_context",
        "long-context SFT on concatenated conversations with far-apart evidence",
    ),
    "eval": Stage(
        "nemo_minitron.stages.eval:evaluate",
        "evaluate a checkpoint against a baseline: lm-eval tasks, RULER, speed; JSON/Markdown/PNG report",
        recipes=("recipes.scale",),
    ),
    "ablations": Stage(
        "nemo_minitron.stages.ablations:ablations",
        "the paper's pruning ablations: tiny hybrid teacher (Mamba findings) or a real decoder (model=smollm2-135m)",
    ),
    "pipeline": Stage(
        "nemo_minitron.stages.pipeline:pipeline",
        "base to instruct in one NeMo-Run experiment: teacher, prune, distill, SFT-KD x2, RPO x2, long context, eval",
        recipes=("recipes.tiny", "recipes.scale"),
    ),
}


class UnknownStageError(KeyError):
    """A stage name that is not in :data:`STAGES`."""

    def __init__(self, name: str):
        self.name = name
        close = difflib.get_close_matches(name, list(STAGES), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        msg = f"unknown stage '{name}'.{hint} Stages: {', '.join(STAGES)}."
        super().__init__(msg)
        self.msg = msg

    def __str__(self) -> str:
        return self.msg


# --------------------------------------------------------------------------------------------
# Loading stages into NeMo-Run


def _import_target(target: str) -> Callable[..., Any]:
    module_name, sep, attr = target.partition(":")
    if not sep or not attr:
        raise ValueError(f"stage target must be 'module:function', got {target!r}")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def load_stage(name: str) -> Callable[..., Any]:
    """Import stage ``name``, register it as a NeMo-Run entrypoint and return its function.

    The returned object is the stage function itself; NeMo-Run attaches its
    ``cli_entrypoint`` to it.
    """
    if name not in STAGES:
        raise UnknownStageError(name)
    stage = STAGES[name]
    fn = nemorun.register_entrypoint(_import_target(stage.target), name, NAMESPACE, stage.summary)
    for module_name in stage.recipes:
        nemorun.import_recipes(module_name)
    importlib.import_module("nemo_minitron.executors")  # executor=local / executor=slurm factories
    return fn


def register_all(strict: bool = False) -> Dict[str, Callable[..., Any]]:
    """Register every stage with NeMo-Run (what ``nemo minitron ...`` needs).

    A stage whose module fails to import is reported on stderr and left out, unless
    ``strict``: one broken stage must not hide the others.
    """
    loaded: Dict[str, Callable[..., Any]] = {}
    for name in STAGES:
        try:
            loaded[name] = load_stage(name)
        except Exception as exc:  # noqa: BLE001 - reported, and re-raised when strict
            if strict:
                raise
            print(f"{PROG}: stage '{name}' unavailable: {exc}", file=sys.stderr)
    return loaded


def __getattr__(attr: str) -> Any:
    """``ENTRYPOINTS``: all stages registered with NeMo-Run, computed on first access.

    This is what the ``nemo_run.cli`` entry point names, so NeMo-Run's ``nemo`` command
    registers our stages when it loads its plugins, while ``import nemo_minitron.cli`` alone
    stays cheap.
    """
    if attr == "ENTRYPOINTS":
        value = register_all()
        globals()["ENTRYPOINTS"] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


# --------------------------------------------------------------------------------------------
# The console script


def usage() -> str:
    """The top-level help: the stages and NeMo-Run's syntax, without importing any stage."""
    width = max((len(n) for n in STAGES), default=0)
    examples = [
        ("<stage> --help", "arguments, types and defaults"),
        ("<stage> a=1 b.c=2 --dryrun", "show the resolved configuration, run nothing"),
        ("<stage> --yaml cfg.yaml a=1", "load a YAML config, then override a field"),
        ("<stage> --factory tiny", "start from a registered recipe"),
        ("<stage> ... --yes", "run without the confirmation prompt"),
    ]
    ex_width = max(len(e) for e, _ in examples)
    lines = [
        f"usage: {PROG} <stage> [key=value ...] [--yaml FILE] [--factory NAME] [--dryrun] [--yes]",
        "",
        "Minitron-SSM compression of hybrid Mamba/Transformer models (Hugging Face checkpoints).",
        "",
        "stages:",
        *(f"  {n.ljust(width)}  {s.summary}" for n, s in STAGES.items()),
        "",
        "Each stage is a NeMo-Run entrypoint whose arguments are its stage function's:",
        *(f"  {PROG} {e.ljust(ex_width)}  {d}" for e, d in examples),
        "",
        f"Also reachable as 'nemo {NAMESPACE} <stage> ...' (NeMo-Run's own CLI).",
    ]
    return "\n".join(lines)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("nemo-minitron")
    except Exception:  # noqa: BLE001 - not installed: running from a checkout
        return "unknown"


#: ``key=value``, ``a.b=value`` or ``key+=value`` (NeMo-Run's operators) on the command line.
_ASSIGNMENT = re.compile(r"^([A-Za-z_][\w.]*)\s*[-+*/|&]?=")


def command_line_keys(args: Iterable[str]) -> List[str]:
    """The argument names a command line sets (``a`` of ``a=1``, ``a.b`` of ``a.b=2``)."""
    return [m.group(1) for m in map(_ASSIGNMENT.match, args) if m]


def run_stage(name: str, args: List[str]) -> int:
    """Run stage ``name`` with NeMo-Run's CLI on ``args``; return the exit status."""
    from nemo_minitron.stages.renames import renamed_argument_errors

    fn = load_stage(name)
    errors = renamed_argument_errors(fn, command_line_keys(args))
    if errors:  # before NeMo-Run parses anything: its own message would only say "unknown"
        print("\n".join(errors), file=sys.stderr)
        return 2
    verbose = "-v" in args or "--verbose" in args
    return nemorun.run_entrypoint(fn, args, prog_name=f"{PROG} {name}", verbose=verbose)


def main(argv: Optional[List[str]] = None) -> int:
    """Console script ``nemo-minitron``: dispatch on the first argument (the stage)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(usage(), file=sys.stderr)
        return 2
    head, rest = args[0], args[1:]
    if head in ("-h", "--help", "help"):
        if head == "help" and rest:  # "nemo-minitron help pretrain"
            return main([rest[0], "--help"])
        try:
            print(usage())
        except BrokenPipeError:
            pass
        return 0
    if head in ("-V", "--version"):
        print(f"{PROG} {_version()}")
        return 0
    if head not in STAGES:
        print(f"{PROG}: error: {UnknownStageError(head)}", file=sys.stderr)
        print(f"Run '{PROG} --help' for usage.", file=sys.stderr)
        return 2
    try:
        return run_stage(head, rest)
    except ImportError as exc:  # the stage's module (or a dependency of it) is missing
        if "-v" in rest or "--verbose" in rest:
            raise
        print(
            f"{PROG}: error: stage '{head}' cannot be loaded ({STAGES[head].target}): {exc}\n"
            f"Add -v for the traceback.",
            file=sys.stderr,
        )
        return 1
    except BrokenPipeError:  # output piped into `head` and the like
        return 0


if __name__ == "__main__":
    sys.exit(main())
