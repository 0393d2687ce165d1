"""The NeMo-Run compatibility shim: what our stages need from NeMo-Run 0.11 beyond what it does.

:mod:`nemo_minitron.cli` says *which* stages exist; this module makes a stage function a
NeMo-Run entrypoint and runs it:

* :func:`register_entrypoint` registers a function under our namespace with a
  :class:`RunContext <nemo_run.cli.api.RunContext>` subclass that never prompts when standard
  input is not a terminal, parses without NeMo-Run's shared ``parse_value`` cache, and (inside
  :func:`run_entrypoint`) reports errors as one plain line naming the stage and the field.
* :func:`resolve_annotations` gives NeMo-Run real ``typing`` types where a module uses
  ``from __future__ import annotations`` or ``X | Y`` (its parser rejects both).
* :func:`recipe` registers a recipe factory where only ``--factory`` looks.
* :func:`import_recipes` imports a recipe module, from the source checkout if need be.

NeMo-Run is imported only inside these functions, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import difflib
import importlib
import importlib.util
import inspect
import logging
import sys
import types
import typing
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Tuple

#: Exceptions a stage raises to refuse its arguments or inputs: shown as "<stage>: <message>".
STAGE_REFUSALS: Tuple[type, ...] = (ValueError, TypeError, OSError, NotImplementedError)

#: Set by :func:`run_entrypoint`: report errors plainly (False under ``-v``/``--verbose``).
_plain_errors: contextvars.ContextVar[bool] = contextvars.ContextVar("plain_errors", default=False)


class CommandLineError(SystemExit):
    """An error already phrased for the user: printed as one line, exit status ``code``.

    A :class:`SystemExit` so that it passes NeMo-Run's catch-all ``except Exception`` (which
    would print it as "Unexpected error: ...") up to :func:`run_entrypoint`.
    """

    def __init__(self, message: str, code: int = 2):
        super().__init__(code)
        self.message = message


# --------------------------------------------------------------------------------------------
# The RunContext


@lru_cache(maxsize=None)
def run_context_cls() -> type:
    """NeMo-Run's RunContext: no prompt off a terminal, uncached parsing, plain error messages."""
    from nemo_run.cli.api import RunContext

    class MinitronRunContext(RunContext):
        def _should_continue(self, skip_confirmation: bool) -> bool:
            if not skip_confirmation and not _stdin_is_tty():
                skip_confirmation = True
            return super()._should_continue(skip_confirmation)

        def parse_fn(self, fn: Any, args: List[str], **default_kwargs: Any) -> Any:
            with _uncached_parse_value(), _quiet_parser_log():
                return super().parse_fn(fn, args, **default_kwargs)

        def cli_execute(self, fn: Callable[..., Any], args: List[str], entrypoint_type: str = "task") -> None:
            if not _plain_errors.get():
                return super().cli_execute(fn, args, entrypoint_type)
            try:
                return super().cli_execute(fn, args, entrypoint_type)
            except Exception as exc:  # noqa: BLE001 - every error becomes one plain line
                message, code = describe_error(stage_name(fn), fn, exc)
                raise CommandLineError(message, code) from exc

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


@contextlib.contextmanager
def _quiet_parser_log() -> Iterator[None]:
    """When errors are reported plainly, NeMo-Run's own log line of the same error is noise."""
    if not _plain_errors.get():
        yield
        return
    parser_log = logging.getLogger("nemo_run.cli.cli_parser")
    level = parser_log.level
    parser_log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        parser_log.setLevel(level)


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):  # closed or replaced stdin
        return False


# --------------------------------------------------------------------------------------------
# Plain error messages


def stage_name(fn: Callable[..., Any]) -> str:
    """The name ``fn`` is registered under (else its own name)."""
    entry = getattr(fn, "cli_entrypoint", None)
    return getattr(entry, "name", None) or getattr(fn, "__name__", "stage")


def describe_error(stage: str, fn: Callable[..., Any], exc: BaseException) -> Tuple[str, int]:
    """One line for the user and an exit status: 2 for a bad command line, 1 for a failed stage."""
    from nemo_run.cli.cli_parser import ArgumentValueError, CLIException, ParseError

    if isinstance(exc, CLIException):
        key = _error_key(exc)
        if isinstance(exc, ArgumentValueError) and "No parameter named" in str(exc) and key:
            return f"{stage}: unknown argument '{key}'{_did_you_mean(fn, key)}", 2
        if isinstance(exc, ParseError) and key:
            cause = exc.__cause__ if isinstance(exc.__cause__, ParseError) else exc
            reason = str(cause.reason).split(" (Argument: ")[0]
            why = "" if "Union" in reason else f" ({reason})"  # a Union's reason repeats every member's
            return f"{stage}: bad value for '{key}': {cause.value!r} is not a valid {_type_name(cause.expected_type)}{why}", 2
        if isinstance(exc.__cause__, STAGE_REFUSALS):  # e.g. a factory that refused its arguments
            return f"{stage}: {exc.__cause__}", 2
        return f"{stage}: {str(exc).split(' (Argument: ')[0]}" + (f" ('{key}')" if key else ""), 2
    if isinstance(exc, STAGE_REFUSALS):
        return f"{stage}: {exc}", 1
    return f"{stage}: {type(exc).__name__}: {exc} (add -v for the traceback)", 1


def _type_name(tp: Any) -> str:
    """``int``, ``int or None``, ``List[int]``: a type as the user would write it."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) is typing.Union:
        return " or ".join("None" if a is type(None) else _type_name(a) for a in args)
    if inspect.isclass(tp) and not args:
        return tp.__name__
    return str(tp).replace("typing.", "")


def _error_key(exc: BaseException) -> Optional[str]:
    """The ``key`` of ``key=value`` that NeMo-Run failed on, from wherever its exception keeps it."""
    for context in (getattr(exc, "context", None), getattr(exc, "reason", None)):
        if isinstance(context, dict) and isinstance(context.get("key"), str):
            return context["key"]
    return None


def _did_you_mean(fn: Callable[..., Any], key: str) -> str:
    """`` (did you mean 'a.b'?)`` for the closest argument or field name, else ``""``."""
    *path, last = key.split(".")
    owner: Any = fn
    for part in path:
        param = _parameters(owner).get(part)
        owner = _config_class(param.annotation) if param is not None else None
        if owner is None:
            return ""
    close = difflib.get_close_matches(last, list(_parameters(owner)), n=1)
    return f" (did you mean '{'.'.join([*path, close[0]])}'?)" if close else ""


def _parameters(obj: Any) -> typing.Mapping[str, inspect.Parameter]:
    try:
        return inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return {}


def _config_class(annotation: Any) -> Optional[type]:
    """The dataclass behind ``D`` or ``Optional[D]``, whose fields a dotted key sets."""
    annotation = _unwrap_optional_dataclass(annotation)
    return annotation if inspect.isclass(annotation) and dataclasses.is_dataclass(annotation) else None


# --------------------------------------------------------------------------------------------
# Annotations NeMo-Run can parse


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


def resolve_annotations(obj: Any, _seen: Optional[set] = None) -> None:
    """Give NeMo-Run real types where a module uses ``from __future__ import annotations``.

    NeMo-Run reads annotations with ``inspect.signature`` and cannot parse strings such as
    ``'int'`` or ``'Optional[int]'``, nor ``int | None``. This evaluates them (as
    ``typing.get_type_hints`` does) on the stage function and, recursively, on the dataclasses
    its arguments use (``pruning_config: PruningConfig``), so dotted overrides work too.
    The result is written back to the function's (and dataclass ``__init__``'s)
    ``__annotations__``, which is where NeMo-Run looks; a decorated function (``@renamed``)
    gets it on the wrapper and on the function it wraps, which ``inspect.signature`` reads.
    Objects whose annotations need no change are left untouched. Behaviour is unchanged: only
    annotations are rewritten.
    """
    seen = set() if _seen is None else _seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    targets = [obj.__init__] if inspect.isclass(obj) else list(dict.fromkeys([obj, inspect.unwrap(obj)]))
    raw = getattr(targets[-1], "__annotations__", None)
    if not isinstance(raw, dict) or not raw:
        return
    try:
        hints = typing.get_type_hints(obj if inspect.isclass(obj) else targets[-1])
    except Exception:  # noqa: BLE001 - unresolvable names: leave them to NeMo-Run's error
        return
    hints = {k: _normalize_type(v) for k, v in hints.items() if k in raw}
    if not inspect.isclass(obj):
        hints = {k: _unwrap_optional_dataclass(v) for k, v in hints.items()}
    if any(hints.get(k, v) is not v for k, v in raw.items()):
        for target in targets:
            try:
                target.__annotations__ = {**raw, **hints}
            except (AttributeError, TypeError):  # a builtin or slotted callable
                return
    for tp in hints.values():
        for cls in _classes_in(tp):
            if dataclasses.is_dataclass(cls):
                resolve_annotations(cls, seen)


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


# --------------------------------------------------------------------------------------------
# Entrypoints and recipes


def register_entrypoint(fn: Callable[..., Any], name: str, namespace: str, summary: str) -> Callable[..., Any]:
    """Make ``fn`` the NeMo-Run entrypoint ``namespace/name`` (idempotent); return ``fn``.

    The function itself is the entrypoint: its signature, type hints, defaults and docstring are
    the command line and its ``--help`` (``summary`` only when it has no docstring).
    """
    import nemo_run as run

    resolve_annotations(fn)
    entry = getattr(fn, "cli_entrypoint", None)
    if not (
        entry is not None
        and entry.name == name
        and entry.namespace == namespace
        and entry.run_ctx_cls is run_context_cls()
    ):
        run.cli.entrypoint(
            fn,
            name=name,
            namespace=namespace,
            help=None if fn.__doc__ else summary,
            run_ctx_cls=run_context_cls(),
        )
    return fn


def run_entrypoint(fn: Callable[..., Any], args: List[str], prog_name: str, verbose: bool = False) -> int:
    """Run the registered entrypoint ``fn`` on ``args`` with NeMo-Run's CLI; return the exit status.

    Errors are printed as one plain line (:func:`describe_error`), unless ``verbose``, where
    NeMo-Run re-raises them with their traceback.
    """
    import typer

    app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)
    # What nemo_run's Entrypoint.main() does, but with our argv and program name, and
    # returning the command's exit status (Entrypoint.main discards it).
    fn.cli_entrypoint._add_command(app, is_main=True)
    token = _plain_errors.set(not verbose)
    try:
        app(args=args, prog_name=prog_name, standalone_mode=True)
    except CommandLineError as error:
        print(error.message, file=sys.stderr)
        return int(error.code)  # type: ignore[arg-type]
    except SystemExit as exit_:
        code = exit_.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    finally:
        _plain_errors.reset(token)
    return 0


def import_recipes(module_name: str) -> None:
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
        resolve_annotations(factory_fn)  # "tiny(output_dir=...)" parses the factory's own args
        return register(factory_fn)

    return decorator
