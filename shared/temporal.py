"""The Temporal client, connected once per process from settings."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from shared.codec import EncryptionCodec, KeyRing, encrypting_converter
from shared.contracts.queues import TaskQueues
from shared.health import temporal_up
from shared.settings import Settings

log = logging.getLogger(__name__)


def keyring(settings: Settings) -> KeyRing | None:
    """The payload keyring (in prospecting's database), or None when no master key is set
    (development and tests without one: payloads in clear text; production refuses that)."""
    if not settings.master_keys:
        return None
    return KeyRing(settings.master_keys, settings.database_url("prospecting"))


def data_converter(settings: Settings) -> DataConverter:
    """What every client and worker of closeflow converts payloads with."""
    ring = keyring(settings)
    return DataConverter.default if ring is None else encrypting_converter(ring)


def client_keyring(client: Client) -> KeyRing | None:
    codec = client.data_converter.payload_codec
    return codec.keyring if isinstance(codec, EncryptionCodec) else None


def with_codec(client: Client, settings: Settings) -> Client:
    """`client`'s connection with closeflow's data converter (tests hand their servers' clients
    to the stack; its processes use `connect`)."""
    config = client.config()
    config["data_converter"] = data_converter(settings)
    return Client(**config)


async def connect(
    settings: Settings, runtime: Runtime | None = None, *, lazy: bool = False
) -> Client:
    """runtime: the workers' (it exports the SDK's metrics); None: the default one.
    lazy: the APIs' client, returned at once whether or not Temporal answers; each call connects
    until one succeeds (a worker needs a connected client: lazy=False)."""
    api_key = settings.temporal_api_key.get_secret_value() or None
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        api_key=api_key,
        tls=tls_config(settings),
        runtime=runtime,
        data_converter=data_converter(settings),
        lazy=lazy,
    )


# --- Temporal away (issue 12) ---------------------------------------------------------------------
# An API starts without Temporal: its client is lazy, /readyz says Temporal is down, the routes
# that need it answer 503 with Retry-After, and `keep_connecting` connects in the background.

FIRST_RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 10.0


def unreachable(exc: BaseException) -> bool:
    """Temporal could not be reached: a lazy client that has not connected yet (the SDK raises
    RuntimeError "Failed client connect: ...") or a frontend answering UNAVAILABLE."""
    if isinstance(exc, RPCError):
        return exc.status == RPCStatusCode.UNAVAILABLE
    return isinstance(exc, RuntimeError) and str(exc).startswith("Failed client connect")


async def keep_connecting(
    client: Client,
    address: str,
    *,
    first: float = FIRST_RETRY_SECONDS,
    most: float = MAX_RETRY_SECONDS,
) -> None:
    """Connect `client` (lazy) in the background, retrying with backoff until Temporal answers:
    the first request after Temporal comes up does not pay for the connection."""
    delay, attempts = first, 0
    while True:
        try:
            await temporal_up(client)
        except Exception as exc:
            attempts += 1
            if attempts == 1 or attempts % 10 == 0:  # a long outage logs now and then, not always
                log.warning(
                    "Temporal at %s is not reachable yet (%s); retrying",
                    address,
                    type(exc).__name__,
                )
        else:
            if attempts:
                log.info("connected to Temporal at %s after %d failed attempts", address, attempts)
            return
        await asyncio.sleep(delay)
        delay = min(delay * 2, most)


def task_queues(settings: Settings) -> TaskQueues:
    return TaskQueues.with_prefix(settings.task_queue_prefix)


# --- TLS and mTLS (issue 12) ----------------------------------------------------------------------


def tls_config(settings: Settings) -> TLSConfig | bool:
    """What `Client.connect(tls=...)` gets: a TLSConfig when any certificate setting is made (a
    self-hosted frontend with its own CA or requiring client certificates), else a plain on/off
    (Temporal Cloud's API key implies TLS with the system's trust store)."""
    files = {
        "ca": settings.temporal_tls_ca.strip(),
        "cert": settings.temporal_tls_cert.strip(),
        "key": settings.temporal_tls_key.strip(),
    }
    server_name = settings.temporal_tls_server_name.strip()
    if not any(files.values()) and not server_name:
        return settings.temporal_tls or bool(settings.temporal_api_key.get_secret_value())
    pem = {name: _read_pem(name, path) if path else None for name, path in files.items()}
    return TLSConfig(
        server_root_ca_cert=pem["ca"],
        domain=server_name or None,
        client_cert=pem["cert"],
        client_private_key=pem["key"],
    )


def _read_pem(name: str, path: str) -> bytes:
    # Read at connect time, not at settings time: a mounted Secret is rotated in place, and a
    # restarted process picks up the new files. The error names the setting and the path, never
    # the file's content.
    setting = f"CLOSEFLOW_TEMPORAL_TLS_{name.upper()}"
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise RuntimeError(f"{setting}: cannot read {path} ({exc.strerror})") from None
    if b"-----BEGIN " not in data:
        raise RuntimeError(f"{setting}: {path} is not a PEM file")
    return data
