"""The codec server: Temporal's UI and CLI show encrypted payloads to those allowed (issue 11).

`POST /codec/decode` and `/codec/encode` take and answer Temporal's codec protocol (JSON of
`{"payloads": [{"metadata": {name: base64}, "data": base64}]}`), with the same codec every
closeflow process uses (shared/codec.py): ops and admin keys only, in `X-API-Key` or
`Authorization: Bearer <key>` (the Temporal CLI's `--codec-auth`). Browsers may call it from the
origins in CLOSEFLOW_CODEC_CORS_ORIGINS (the Temporal UI's). A payload of an erased prospect is
answered as it came (still encrypted): its key is gone for everyone, the UI shows the cipher. So
is one this codec cannot read (cut short, not ours): the rest of the batch still decodes.
Encoding without a workflow uses the system key (the UI's signal and start inputs).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from pydantic import BaseModel, ConfigDict, Field
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send
from temporalio.api.common.v1 import Payload, Payloads

from shared.auth import API_KEY_HEADER, CODEC_PREFIX
from shared.codec import EncryptionCodec, PayloadKeyErased, PayloadKeyUnavailable
from shared.errors import AppError
from shared.temporal import client_keyring

router = APIRouter(tags=["codec"])
MAX_PAYLOADS = 1000


class CodecPayloads(BaseModel):
    model_config = ConfigDict(extra="forbid")
    payloads: list[dict[str, Any]] = Field(max_length=MAX_PAYLOADS)


def _codec(request: Request) -> EncryptionCodec:
    ring = client_keyring(request.app.state.temporal)
    if ring is None:
        raise AppError(
            409, "payload_encryption_off", "CLOSEFLOW_PAYLOAD_MASTER_KEYS is not set here"
        )
    return EncryptionCodec(ring)


def _parse(body: CodecPayloads) -> list[Payload]:
    try:
        return list(ParseDict({"payloads": body.payloads}, Payloads()).payloads)
    except ParseError as err:
        raise AppError(422, "invalid_payloads", f"not Temporal payloads: {err}") from err


def _answer(payloads: list[Payload]) -> CodecPayloads:
    return CodecPayloads.model_validate(
        MessageToDict(Payloads(payloads=payloads)) or {"payloads": []}
    )


@router.post("/codec/decode")
async def decode(body: CodecPayloads, request: Request) -> CodecPayloads:
    codec = _codec(request)
    out = []
    for payload in _parse(body):
        try:
            out.extend(await codec.decode([payload]))
        except (PayloadKeyErased, PayloadKeyUnavailable):
            out.append(payload)
    return _answer(out)


@router.post("/codec/encode")
async def encode(body: CodecPayloads, request: Request) -> CodecPayloads:
    return _answer(await _codec(request).encode(_parse(body)))


class CodecCors:
    """CORS for the codec routes alone: the other routes stay same-origin."""

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=["POST"],
            allow_headers=["content-type", "authorization", "x-namespace", API_KEY_HEADER],
            allow_credentials=True,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(CODEC_PREFIX):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def install(app: FastAPI, origins: list[str]) -> None:
    app.include_router(router)
    if origins:
        app.add_middleware(CodecCors, origins=origins)
