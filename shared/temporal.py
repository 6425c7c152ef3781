"""The Temporal client, connected once per process from settings."""

from __future__ import annotations

from pathlib import Path

from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig

from shared.codec import EncryptionCodec, KeyRing, encrypting_converter
from shared.contracts.queues import TaskQueues
from shared.settings import Settings


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


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    """runtime: the workers' (it exports the SDK's metrics); None: the default one."""
    api_key = settings.temporal_api_key.get_secret_value() or None
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        api_key=api_key,
        tls=tls_config(settings),
        runtime=runtime,
        data_converter=data_converter(settings),
    )


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
