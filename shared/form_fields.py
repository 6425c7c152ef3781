"""A form's text fields, its files dropped unread as they stream in.

Mailgun's inbound route posts a reply's attachments as file parts of its form, and its signature
(an HMAC of a timestamp and a token, both fields) covers none of them: nothing reads them.
Starlette's parser spools every file part over 1 MiB to a temporary file, so a stranger's
unsigned post, up to the route's body limit (40 MiB), wrote to the pod's /tmp (an emptyDir of
64 MiB) before its signature could be checked: two at once filled it. Here a file part keeps
its name, with nothing in it.
"""

from __future__ import annotations

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request


class _FieldsOnly(MultiPartParser):
    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current_part.file is None:  # a field: kept, within max_part_size
            super().on_part_data(data, start, end)


async def form_fields(request: Request, max_part_size: int) -> dict[str, str]:
    """The text fields of the request's form (urlencoded or multipart), each up to
    `max_part_size` bytes; the last value of a repeated name."""
    content_type = request.headers.get("content-type", "")
    if content_type.lower().startswith("multipart/form-data"):
        parser = _FieldsOnly(request.headers, request.stream(), max_part_size=max_part_size)
        try:
            form: FormData = await parser.parse()
        except MultiPartException as err:  # as Starlette's own request.form() answers it
            raise HTTPException(status_code=400, detail=err.message) from err
        await form.close()
    else:
        form = await request.form(max_part_size=max_part_size)
    return {k: v for k, v in form.items() if isinstance(v, str)}
