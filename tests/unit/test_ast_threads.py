"""The suite's AST lock (tests/support/ast_threads.py): a conversion that lets another thread run
in its middle no longer breaks either of them (CPython 3.11, gh-106905)."""

import ast
import gc
import threading
import time

# Many small functions: a conversion long enough for a collection to run inside it.
SOURCE = "\n".join(
    f"def f{i}(a, b):\n    return [x + {i} for x in range(a) if x > b]" for i in range(3000)
)


def test_a_conversion_interrupted_by_another_threads_parse_completes() -> None:
    converting = threading.Event()
    parser = threading.get_ident()
    outcomes: dict[str, str] = {}

    class Yields:
        """Its finalizer runs in a collection inside the conversion and hands the GIL over."""

        armed = True

        def __del__(self) -> None:
            if Yields.armed and threading.get_ident() == parser:
                Yields.armed = False
                converting.set()
                time.sleep(0.2)

    def other() -> None:
        converting.wait(10)
        try:
            ast.parse("x = (1 + (2 * (3 - 4)))\n" * 50)
            outcomes["other"] = "parsed"
        except SystemError as e:
            outcomes["other"] = repr(e)

    thread = threading.Thread(target=other)
    thread.start()
    cycle = Yields()
    cycle.me = [cycle]  # type: ignore[attr-defined]
    del cycle
    threshold = gc.get_threshold()
    gc.set_threshold(50)
    try:
        ast.parse(SOURCE)
        outcomes["main"] = "parsed"
    except SystemError as e:
        outcomes["main"] = repr(e)
    finally:
        gc.set_threshold(*threshold)
        converting.set()
        thread.join(10)
    assert not Yields.armed, "the finalizer never ran inside the conversion: nothing was tried"
    assert outcomes == {"main": "parsed", "other": "parsed"}
