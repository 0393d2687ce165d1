"""The ``nemo-minitron`` command line: every compression stage as a NeMo-Run entrypoint.

Two ways in, one machinery::

    nemo-minitron <stage> key=value a.b=c ... [--yaml F] [--factory NAME] [--dryrun] [--yes]
    nemo minitron <stage> ...           # NeMo-Run's own ``nemo`` command

How it works
------------
:data:`STAGES` maps a stage name to the library function that implements it, as a
``"module:function"`` string plus a one-line summary. Nothing is imported to list the stages,
so ``nemo-minitron --help`` is instant. For ``nemo-minitron <stage> ...``, :func:`main` imports
only that stage's function and hands the rest of the command line to NeMo-Run: the function
is registered with ``nemo_run.cli.entrypoint(fn, name=stage, namespace="minitron")`` and run
through NeMo-Run's own Typer command, so argument parsing (typed ``key=value``, dotted
overrides such as ``pruning_config.target_hidden_size=N``, ``--yaml``, ``--factory``,
``--dryrun``, ``--to-yaml``, ``--yes``, ``--help``, ``executor=...``) is NeMo-Run's, not ours.
The library function's signature *is* the CLI: its type hints, defaults and docstring are what
``--help`` shows, and nothing is duplicated here.

Without ``executor=...`` NeMo-Run runs the configured function directly in this process. The
"Continue?" confirmation NeMo-Run asks before running is skipped with ``--yes`` and, since
nobody could answer it, whenever standard input is not a terminal (CI, pipes, ``make``).
Errors raised by a stage are reported by NeMo-Run as one line; add ``-v`` for the traceback.

``nemo minitron <stage>`` works through the ``nemo_run.cli`` entry-point group: NeMo-Run's
``nemo`` command loads every entry point of that group, and the entry point
``minitron = "nemo_minitron.cli:ENTRYPOINTS"`` resolves the module attribute ``ENTRYPOINTS``
(computed on first access, see :func:`__getattr__`), which registers every stage under the
NeMo-Run namespace ``minitron``. The entry point's name must equal :data:`NAMESPACE`.

Recipes
-------
A stage may list recipe modules (``recipes/`` at the repository top level), imported when the
stage is loaded. A recipe is a NeMo-Run factory returning a ``run.Partial`` of the stage's
function, registered with :func:`recipe` (``@recipe(fn, "tiny")``), selectable with
``--factory tiny``. Use :func:`recipe` rather than ``@run.cli.factory(target=fn, name=...)``:
NeMo-Run tries every *argument value* as a factory name of the entrypoint's function first, so
a factory registered that way under the name ``tiny`` would turn ``arch_name=tiny`` into a
copy of the whole recipe. :func:`recipe` registers it where only ``--factory`` looks.

Adding a stage
--------------
1. Write the library function with type-annotated arguments, defaults, no argument named
   ``executor`` (NeMo-Run reserves it), and a docstring whose first paragraph says what the
   stage does (``--help`` shows it). Config objects are dataclasses, as an argument
   ``pruning_config: Optional[PruningConfig] = None`` or with a dataclass default; dotted
   overrides then set their fields. ``from __future__ import annotations`` and ``int | None``
   are fine: :func:`load_stage` hands NeMo-Run evaluated ``typing`` types (its parser rejects
   strings and ``X | Y``). Prefer ``Optional[...]`` anyway for code that NeMo-Run sees
   directly.
2. Add one line to :data:`STAGES`, e.g.::

       "prune": Stage("nemo_minitron.prune.run:prune_checkpoint", "prune a checkpoint"),

   (plus ``recipes=("recipes.tiny",)`` once ``recipes/tiny.py`` has a ``@recipe`` for it).
3. Add its ``--help`` / ``--dryrun`` checks to ``tests/test_cli.py``.

Known NeMo-Run limits: an explicit ``cfg=None`` for an ``Optional[<dataclass>]`` argument is
rejected (leave it out: None is the default); unknown ``--flags`` are ignored silently.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import importlib
import importlib.util
import inspect
import sys
import types
import typing
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

PROG = "nemo-minitron"
#: NeMo-Run namespace of our entrypoints; equals the ``nemo_run.cli`` entry point's name,
#: so that ``nemo minitron <stage>`` finds them.
NAMESPACE = "minitron"


@dataclass(frozen=True)
class Stage:
    """One CLI stage: where its function lives, and how to describe it without importing it."""

    target: str  #: ``"package.module:function"``, imported only when the stage runs
    summary: str  #: one line for ``nemo-minitron --help``
    recipes: Tuple[str, ...] = ()  #: modules whose :func:`recipe` factories apply


#: The stages, in pipeline order. Add a stage with one line (see the module docstring).
STAGES: Dict[str, Stage] = {
    "pretrain": Stage(
        "nemo_minitron.stages.pretrain:pretrain",
        "train the built-in tiny NemotronH teacher on the offline corpus (cached)",
        recipes=("recipes.tiny",),
    ),
    "prune": Stage(
        "nemo_minitron.prune.run:prune_checkpoint",
        "group-aware Minitron-SSM pruning of a checkpoint (Mamba heads/channels, FFN, embedding, attention, depth)",
        recipes=("recipes.scale",),
    ),
    "search": Stage(
        "nemo_minitron.prune.search:search_architecture",
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
        "nemo_minitron.evaluate:evaluate_checkpoint",
        "evaluate a checkpoint against a baseline: lm-eval tasks, RULER, speed; JSON/Markdown/PNG report",
        recipes=("recipes.scale",),
    ),
    "ablations": Stage(
        "nemo_minitron.ablations:run_ablations",
        "reproduce the paper's pruning ablations on the tiny teacher (width vs depth, heads vs channels, metrics, ...)",
    ),
    "pipeline": Stage(
        "nemo_minitron.pipeline:pipeline",
        "base to instruct in one NeMo-Run experiment: teacher, prune, distill, SFT-KD x2, RPO x2, long context, eval",
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


@lru_cache(maxsize=None)
def _run_context_cls() -> type:
    """NeMo-Run's RunContext, but never prompting when standard input is not a terminal."""
    from nemo_run.cli.api import RunContext

    class MinitronRunContext(RunContext):
        def _should_continue(self, skip_confirmation: bool) -> bool:
            if not skip_confirmation and not _stdin_is_tty():
                skip_confirmation = True
            return super()._should_continue(skip_confirmation)

        def parse_fn(self, fn: Any, args: List[str], **default_kwargs: Any) -> Any:
            with _uncached_parse_value():
                return super().parse_fn(fn, args, **default_kwargs)

    MinitronRunContext.__qualname__ = MinitronRunContext.__name__
    return MinitronRunContext


@contextlib.contextmanager
def _uncached_parse_value() -> Iterator[None]:
    """Work around a NeMo-Run 0.11 bug while a command line is parsed.

    ``nemo_run.cli.cli_parser.parse_value`` is ``lru_cache``d, and for a dotted override it
    parses the string ``"Config"`` into a new, mutable ``Config(<type>)``: every argument of
    the same config type (and every later parse in the same process) gets the *same* object,
    so ``a.x=1 b.y=2`` sets both fields on both arguments. Parsing without the cache fixes it.
    """
    from nemo_run.cli import cli_parser

    cached = cli_parser.parse_value
    plain = getattr(cached, "__wrapped__", None)
    if plain is None:  # a NeMo-Run without the cache
        yield
        return
    cli_parser.parse_value = plain
    try:
        yield
    finally:
        cli_parser.parse_value = cached


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):  # closed or replaced stdin
        return False


def _import_target(target: str) -> Callable[..., Any]:
    module_name, sep, attr = target.partition(":")
    if not sep or not attr:
        raise ValueError(f"stage target must be 'module:function', got {target!r}")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _normalize_type(tp: Any) -> Any:
    """``X | Y`` (types.UnionType, which NeMo-Run's parser rejects) -> ``typing.Union[X, Y]``."""
    if isinstance(tp, types.UnionType):
        return typing.Union[tuple(_normalize_type(a) for a in typing.get_args(tp))]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is None or not args:
        return tp
    new_args = tuple(_normalize_type(a) for a in args)
    if new_args == args:
        return tp
    try:
        return tp.copy_with(new_args) if hasattr(tp, "copy_with") else origin[new_args]
    except Exception:  # noqa: BLE001 - an exotic generic: leave it to NeMo-Run
        return tp


def _resolve_annotations(obj: Any, _seen: Optional[set] = None) -> None:
    """Give NeMo-Run real types where a module uses ``from __future__ import annotations``.

    NeMo-Run reads annotations with ``inspect.signature`` and cannot parse strings such as
    ``'int'`` or ``'Optional[int]'``, nor ``int | None``. This evaluates them (as
    ``typing.get_type_hints`` does) on the stage function and, recursively, on the dataclasses
    its arguments use (``pruning_config: PruningConfig``), so dotted overrides work too.
    The result is written back to the function's (and dataclass ``__init__``'s)
    ``__annotations__``, which is where NeMo-Run looks; objects whose annotations need no
    change are left untouched. Behaviour is unchanged: only annotations are rewritten.
    """
    seen = set() if _seen is None else _seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    target = obj.__init__ if inspect.isclass(obj) else obj
    raw = getattr(target, "__annotations__", None)
    if not isinstance(raw, dict) or not raw:
        return
    try:
        hints = typing.get_type_hints(obj if inspect.isclass(obj) else target)
    except Exception:  # noqa: BLE001 - unresolvable names: leave them to NeMo-Run's error
        return
    hints = {k: _normalize_type(v) for k, v in hints.items() if k in raw}
    if not inspect.isclass(obj):
        hints = {k: _unwrap_optional_dataclass(v) for k, v in hints.items()}
    if any(hints.get(k, v) is not v for k, v in raw.items()):
        try:
            target.__annotations__ = {**raw, **hints}
        except (AttributeError, TypeError):  # a builtin or slotted callable
            return
    for tp in hints.values():
        for cls in _classes_in(tp):
            if dataclasses.is_dataclass(cls):
                _resolve_annotations(cls, seen)


def _unwrap_optional_dataclass(tp: Any) -> Any:
    """``Optional[D]`` (D a dataclass) -> ``D``, for NeMo-Run's parser only.

    A dotted override (``pruning_config.target_hidden_size=N``) of an argument whose value is
    not set yet makes NeMo-Run build ``Config(<annotation>)``: ``Config(Optional[D])`` fails,
    ``Config(D)`` is right. The default (None) is untouched, so leaving the argument out still
    passes None. (NeMo-Run's own ``Annotated[Optional[D], Config[D]]`` is not used: it means
    "always build a default D" whenever a recipe creates a ``run.Partial``.)
    """
    if typing.get_origin(tp) is not typing.Union:
        return tp
    args = typing.get_args(tp)
    inner = [a for a in args if a is not type(None)]
    if len(args) != 2 or len(inner) != 1:
        return tp
    if not (inspect.isclass(inner[0]) and dataclasses.is_dataclass(inner[0])):
        return tp
    return inner[0]


def _classes_in(tp: Any) -> List[type]:
    if inspect.isclass(tp) and typing.get_origin(tp) is None:
        return [tp]
    out: List[type] = []
    for arg in typing.get_args(tp):
        out.extend(_classes_in(arg))
    return out


def _import_recipes(module_name: str) -> None:
    """Import a recipe module so that its factories are registered with NeMo-Run.

    ``recipes`` is a top-level folder of the repository. When it is not importable (the
    package was installed without it and the current directory is not the checkout), it is
    loaded from the source checkout next to this package if there is one; otherwise the
    stage simply has no recipes (``--factory NAME`` then reports that no factory matched).
    """
    top = module_name.split(".")[0]
    if top not in sys.modules and importlib.util.find_spec(top) is None:
        folder = Path(__file__).resolve().parent.parent / top
        init = folder / "__init__.py"
        if not init.is_file():
            return
        spec = importlib.util.spec_from_file_location(
            top, init, submodule_search_locations=[str(folder)]
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[top] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[top]
            raise
    importlib.import_module(module_name)


def recipe(stage_fn: Callable[..., Any], name: str) -> Callable[[Callable], Callable]:
    """Decorator: register a recipe factory for ``stage_fn``, selectable with ``--factory NAME``.

    It is ``nemo_run.cli.factory`` with the namespace that ``--factory`` (and ``--yaml``'s
    ``_factory_``) searches for the entrypoint itself, ``"<function path>."``. The plain
    ``run.cli.factory(target=stage_fn, name=NAME)`` namespace is also searched for every
    argument value, so any argument spelled like the recipe (``arch_name=tiny``) would be
    replaced by the recipe. Also selectable by import path: ``--factory recipes.tiny.tiny_pretrain``.
    """
    import nemo_run as run
    from nemo_run.config import get_type_namespace

    register = run.cli.factory(target=stage_fn, name=name, namespace=f"{get_type_namespace(stage_fn)}.")

    def decorator(factory_fn: Callable) -> Callable:
        _resolve_annotations(factory_fn)  # "tiny(output_dir=...)" parses the factory's own args
        return register(factory_fn)

    return decorator


def load_stage(name: str) -> Callable[..., Any]:
    """Import stage ``name``, register it as a NeMo-Run entrypoint and return its function.

    The returned object is the library function itself; NeMo-Run attaches its
    ``cli_entrypoint`` to it.
    """
    if name not in STAGES:
        raise UnknownStageError(name)
    stage = STAGES[name]
    fn = _import_target(stage.target)
    _resolve_annotations(fn)

    import nemo_run as run

    entry = getattr(fn, "cli_entrypoint", None)
    if not (
        entry is not None
        and entry.name == name
        and entry.namespace == NAMESPACE
        and entry.run_ctx_cls is _run_context_cls()
    ):
        run.cli.entrypoint(
            fn,
            name=name,
            namespace=NAMESPACE,
            help=None if fn.__doc__ else stage.summary,
            run_ctx_cls=_run_context_cls(),
        )
    for module_name in stage.recipes:
        _import_recipes(module_name)
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
        "Each stage is a NeMo-Run entrypoint whose arguments are its library function's:",
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


def run_stage(name: str, args: List[str]) -> int:
    """Run stage ``name`` with NeMo-Run's CLI on ``args``; return the exit status."""
    import typer

    fn = load_stage(name)
    app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)
    # What nemo_run's Entrypoint.main() does, but with our argv and program name, and
    # returning the command's exit status (Entrypoint.main discards it).
    fn.cli_entrypoint._add_command(app, is_main=True)
    try:
        app(args=args, prog_name=f"{PROG} {name}", standalone_mode=True)
    except SystemExit as exit_:
        code = exit_.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    return 0


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
