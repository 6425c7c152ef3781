"""The template setup of the services' server-rendered pages (the ops dashboard, the public
referral page): autoescaped, and strict, so a value missing from a render fails instead of
printing nothing."""

from __future__ import annotations

from pathlib import Path

import jinja2


def templates_beside(module_file: str) -> jinja2.Environment:
    """The templates/ folder next to the module (pass its __file__)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(module_file).parent / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
