"""The Temporal client, connected once per process from settings."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.converter import DataConverter

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


async def connect(settings: Settings) -> Client:
    api_key = settings.temporal_api_key.get_secret_value() or None
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        api_key=api_key,
        tls=settings.temporal_tls or bool(api_key),
        data_converter=data_converter(settings),
    )


def task_queues(settings: Settings) -> TaskQueues:
    return TaskQueues.with_prefix(settings.task_queue_prefix)
