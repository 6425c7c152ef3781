"""The dataclasses that cross a Temporal boundary keep their field types as types, not strings.

Temporal's payload converter calls typing.get_type_hints on a dataclass each time it decodes
one; string annotations (`from __future__ import annotations`) are compiled and evaluated again
on every call. Decoding a TouchRequest took 520 us with them and 221 us without, on every
activity and workflow task that carries one (docs/benchmarks.md, eighth pass)."""

import dataclasses
import importlib
import pkgutil

import shared.contracts


def contract_dataclasses() -> list[type]:
    found = []
    for module_info in pkgutil.iter_modules(shared.contracts.__path__):
        module = importlib.import_module(f"shared.contracts.{module_info.name}")
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and dataclasses.is_dataclass(value)
                and value.__module__ == module.__name__
            ):
                found.append(value)
    return found


def test_every_contract_field_is_annotated_with_a_type_not_a_string() -> None:
    classes = contract_dataclasses()
    assert len(classes) > 40  # the walk found the contracts
    as_strings = {
        f"{cls.__name__}.{name}": hint
        for cls in classes
        for name, hint in cls.__annotations__.items()
        if isinstance(hint, str)
    }
    assert as_strings == {}
