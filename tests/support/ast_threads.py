"""One thread at a time through CPython's AST converter, in the test process.

CPython 3.11 keeps the converter's recursion counter in interpreter-wide state (gh-106905): when
a garbage-collection finalizer lets another thread run in the middle of one conversion and that
thread converts too, the first ends with `SystemError: AST constructor recursion depth
mismatch`. The suite does that all the time: Hypothesis parses sources (its digests, lambda
descriptions, local constants) in the threads that generate the fuzz tests' cases, while the
event loop's thread formats logged tracebacks (3.11's traceback module parses each line) and
pytest rewrites lazily imported plugin modules. CI lost whole runs to it, so conversions here
take a lock; `compile` of plain source (Jinja's templates, imports) is untouched."""

import __future__

import ast
import builtins
import sys
import threading
from typing import Any

_FUTURE_FLAGS = 0
for _name in __future__.all_feature_names:
    _FUTURE_FLAGS |= getattr(__future__, _name).compiler_flag

_CONVERTING = threading.RLock()
_compile = builtins.compile


def _serialised_compile(
    source: Any,
    filename: Any,
    mode: str,
    flags: int = 0,
    dont_inherit: bool = False,
    optimize: int = -1,
    **kwargs: Any,
) -> Any:
    if not dont_inherit:
        # compile() inherits the caller's __future__ flags; the caller is one frame further out now
        flags |= sys._getframe(1).f_code.co_flags & _FUTURE_FLAGS
    if not (isinstance(source, ast.AST) or flags & ast.PyCF_ONLY_AST):
        return _compile(source, filename, mode, flags, True, optimize, **kwargs)
    with _CONVERTING:
        return _compile(source, filename, mode, flags, True, optimize, **kwargs)


def install() -> None:
    builtins.compile = _serialised_compile
