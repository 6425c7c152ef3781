"""The codec server: Temporal's UI and CLI show encrypted payloads to those allowed (issue 11).

`POST /codec/decode` and `/codec/encode` take and answer Temporal's codec protocol (JSON of
`{"payloads": [{"metadata": {name: base64}, "data": base64}]}`), with the same codec every
closeflow process uses (shared/codec.py): ops and admin keys only, in `X-API-Key` or
`Authorization: Bearer <key>` (the Temporal CLI's `--codec-auth`). Browsers may call it from the
origins in CLOSEFLOW_CODEC_CORS_ORIGINS (the Temporal UI's). A payload of an erased prospect is
answered as it came (still encrypted): its key is gone for everyone, the UI shows the cipher. So
is one this codec cannot read (cut short, not ours): the rest of the batch still decodes.

Encoding (the inputs of a start, signal, update or query typed in the UI or CLI) needs the
workflow: every closeflow workflow is about a person (journey, referral intake, meeting
invitation) and its payloads are encrypted with that person's key, shredded at their erasure.
The codec protocol does not say which workflow an input is for, so `/codec/encode` refuses
(400 codec_workflow_required): an input encrypted with the system key, which is never
shredded, would outlive the person's erasure in the history, its archives and backups. The
endpoint `/codec/workflows/<workflow id>` (`/encode`, and `/decode` like `/codec/decode`)
encodes with that workflow's person's key; 409 once they are erased, 404 for nobody's.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Path, Request
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from pydantic import BaseModel, ConfigDict, Field
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send
from temporalio.api.common.v1 import Payload, Payloads

from shared.auth import API_KEY_HEADER, CODEC_PREFIX
from shared.codec import (
    SYSTEM_SCOPE,
    EncryptionCodec,
    PayloadKeyErased,
    PayloadKeyMissing,
    PayloadKeyUnavailable,
    scope_of,
)
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


@router.post("/codec/workflows/{workflow_id}/decode")
async def decode_for(body: CodecPayloads, request: Request) -> CodecPayloads:
    """As /codec/decode (a payload names its own key): so that one endpoint per workflow serves
    the UI and the CLI for both."""
    return await decode(body, request)


@router.post("/codec/encode")
async def encode(_: CodecPayloads) -> CodecPayloads:
    raise AppError(
        400,
        "codec_workflow_required",
        "payloads are encrypted with the key of the person their workflow is about (shredded "
        "at erasure), and this request does not say which workflow: use the codec endpoint "
        "/codec/workflows/<workflow id> (e.g. /codec/workflows/journey-<prospect id>)",
    )


@router.post("/codec/workflows/{workflow_id}/encode")
async def encode_for(
    workflow_id: Annotated[str, Path(max_length=200)], body: CodecPayloads, request: Request
) -> CodecPayloads:
    scope = scope_of(workflow_id)
    if scope == SYSTEM_SCOPE:
        raise AppError(
            422,
            "unknown_workflow_id",
            f"{workflow_id} is not a closeflow workflow id (journey-<prospect id>, "
            "referral-intake-<referral id>, meeting-invite-<prospect id>:...)",
        )
    codec = _codec(request)
    payloads = _parse(body)
    try:
        # the person's key exists since they do: none is made here for an id nobody has
        await codec.keyring.data_key(scope, create=False)
        return _answer(await EncryptionCodec(codec.keyring, scope).encode(payloads))
    except PayloadKeyErased as err:
        raise AppError(409, "prospect_erased", str(err)) from err
    except PayloadKeyMissing as err:
        raise AppError(404, "workflow_key_not_found", f"{workflow_id}: nobody it is about") from err
    except PayloadKeyUnavailable as err:  # wrapped by a master key this process lacks
        raise AppError(409, "payload_key_unavailable", str(err)) from err


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
