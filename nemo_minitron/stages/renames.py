"""Renamed stage arguments: an old name gets an error that says the new one.

Stages share one argument vocabulary (``seq_length``, ``micro_batch_size``, ``save_path``,
``train.max_steps``, ``optim.lr``, ...). When an argument is renamed, the stage function is
decorated with :func:`renamed`, so both the Python API and the CLI (which checks
:func:`renamed_argument_errors` before NeMo-Run parses anything) refuse the old name with a
message naming its replacement, instead of a generic "unexpected keyword argument".
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class RenamedArgumentError(TypeError):
    """A stage was called with an argument name that has been replaced."""


def renamed_argument_errors(fn: Callable[..., Any], keys: Iterable[str]) -> list[str]:
    """One message per key (``a`` or dotted ``a.b``) that ``fn`` knows as renamed."""
    table: dict[str, str] = getattr(fn, "renamed_arguments", {})
    stage = getattr(fn, "__name__", "stage")
    out = []
    for key in keys:
        if key in table:
            out.append(f"{stage}: argument '{key}' was renamed to '{table[key]}'; use {table[key]}=...")
    return out


def renamed(**old_to_new: str) -> Callable[[F], F]:
    """Decorator: calling the stage with an old argument name raises :class:`RenamedArgumentError`.

    ``@renamed(seq_len="train.seq_length", output_dir="save_path")``. The wrapper keeps the
    function's name, signature and docstring (NeMo-Run reads them through ``__wrapped__``).
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            errors = renamed_argument_errors(wrapper, kwargs)
            if errors:
                raise RenamedArgumentError("; ".join(errors))
            return fn(*args, **kwargs)

        wrapper.renamed_arguments = dict(old_to_new)  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate
