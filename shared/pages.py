"""The template setup of the services' server-rendered pages (the ops dashboard, the rep inbox,
the public referral page): autoescaped, and strict, so a value missing from a render fails
instead of printing nothing. Every page extends `page.html` here (the HTML head they share)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
from fastapi.responses import HTMLResponse

SHARED_TEMPLATES = Path(__file__).parent / "templates"

# No scripts, no third parties, forms post only to this service, the URL (which may carry a
# token) never leaks through a Referer header, and nothing is cached.
FORM_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def templates_beside(module_file: str) -> jinja2.Environment:
    """The templates/ folder next to the module (pass its __file__), then shared/templates."""
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(
            [
                jinja2.FileSystemLoader(Path(module_file).parent / "templates"),
                jinja2.FileSystemLoader(SHARED_TEMPLATES),
            ]
        ),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


class Pages:
    """A module's pages: its templates, rendered with the values every one of them takes and
    answered with the page headers."""

    def __init__(
        self,
        module_file: str,
        headers: Mapping[str, str] = FORM_PAGE_HEADERS,
        **always: Any,
    ) -> None:
        self.templates = templates_beside(module_file)
        self.headers = dict(headers)
        self.always = always

    def render(self, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        html = self.templates.get_template(template).render(**self.always, **values)
        return HTMLResponse(html, status_code=status, headers=self.headers)
