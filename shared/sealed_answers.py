"""Answers kept for an `Idempotency-Key` retry that hold a secret shown once (a new API key, a
subscription's signing secret), stored sealed so that only that retry can read them again.

A retried `POST /api-keys` whose first answer was lost would otherwise mint a second live key
and leave the first one working, unknown to anyone. The kept answer is encrypted (AES-256-GCM)
with a key derived (HKDF-SHA256) from the first payload master key (CLOSEFLOW_PAYLOAD_MASTER_KEYS,
kept outside the database) and the client's `Idempotency-Key` itself, which the service never
stores (the record holds a digest of it): reading the answer back takes both, so neither a copy
of the database nor the master key alone gives the secret out. The ciphertext is bound to its
record's scope (the caller, method, path and key): moved to another record it does not open.

Without master keys (outside production, where payloads are in clear text as well) the key
comes from the `Idempotency-Key` alone. A master key rotated out of the list leaves the answers
it sealed unreadable: the retry is told its change was made and to look it up (`open_answer`
gives None), as when an answer was lost.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shared.codec import MasterKey

PREFIX = "sealed.v1"
NO_MASTER_KEY = "-"  # names the key of an answer sealed without master keys
_NONCE_BYTES = 12
_INFO = b"closeflow idempotent answer v1"


def _key(idempotency_key: str, scope: str, master: MasterKey | None) -> bytes:
    secret = (master.key if master is not None else b"") + b"\0" + idempotency_key.encode()
    return HKDF(algorithm=SHA256(), length=32, salt=scope.encode(), info=_INFO).derive(secret)


def seal_answer(
    body: bytes, idempotency_key: str, scope: str, master_keys: Sequence[MasterKey]
) -> str:
    """`body` sealed for the retry that presents `idempotency_key` within `scope`: text that
    names the master key used (the first), never the key itself."""
    master = master_keys[0] if master_keys else None
    nonce = os.urandom(_NONCE_BYTES)
    sealed = nonce + AESGCM(_key(idempotency_key, scope, master)).encrypt(
        nonce, body, scope.encode()
    )
    key_id = master.key_id if master is not None else NO_MASTER_KEY
    return f"{PREFIX}.{key_id}.{base64.urlsafe_b64encode(sealed).decode()}"


def open_answer(
    text: str, idempotency_key: str, scope: str, master_keys: Sequence[MasterKey]
) -> bytes | None:
    """The body `seal_answer` sealed; None when it cannot be opened (its master key is no
    longer listed, or the text is not such an answer for this key and scope)."""
    prefix, _, rest = text.partition(".v1.")
    key_id, _, encoded = rest.partition(".")
    if f"{prefix}.v1" != PREFIX or not encoded:
        return None
    if key_id == NO_MASTER_KEY:
        master = None
    else:
        found = [k for k in master_keys if k.key_id == key_id]
        if not found:
            return None
        master = found[0]
    try:
        sealed = base64.urlsafe_b64decode(encoded)
        return AESGCM(_key(idempotency_key, scope, master)).decrypt(
            sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], scope.encode()
        )
    except (binascii.Error, ValueError, InvalidTag):
        return None
