"""mTLS to a self-hosted Temporal (issue 12): CLOSEFLOW_TEMPORAL_TLS_CERT, _KEY, _CA and
_SERVER_NAME reach `Client.connect` as a TLSConfig, and the client really presents its certificate
and checks the server's against the CA and the name: a TLS server on loopback that requires a
client certificate (as Temporal's frontend with requireClientAuth) sees closeflow's."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import re
import shutil
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import ValidationError
from temporalio.service import TLSConfig

from devstack.temporal import temporal_binary
from shared.settings import Settings
from shared.temporal import connect, tls_config
from tests.deploy.files import helm_values

SERVER_NAME = "temporal-frontend"
CLIENT_NAME = "closeflow"


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(
    path: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate
) -> tuple[Path, Path]:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path.with_suffix(".crt"), path.with_suffix(".key")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA, the frontend's certificate (SAN temporal-frontend) and closeflow's client one."""
    directory = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("closeflow test CA"))
        .issuer_name(_name("closeflow test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, _ = _write(directory / "ca", ca_key, ca)

    def leaf(name: str, usage: x509.ObjectIdentifier) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        return _write(directory / name, key, cert)

    server_cert, server_key = leaf(SERVER_NAME, ExtendedKeyUsageOID.SERVER_AUTH)
    client_cert, client_key = leaf(CLIENT_NAME, ExtendedKeyUsageOID.CLIENT_AUTH)
    return Pki(ca_path, server_cert, server_key, client_cert, client_key)


def mtls_settings(pki: Pki, address: str = "127.0.0.1:7233") -> Settings:
    return Settings(
        environment="test",
        temporal_address=address,
        temporal_tls_cert=str(pki.client_cert),
        temporal_tls_key=str(pki.client_key),
        temporal_tls_ca=str(pki.ca),
        temporal_tls_server_name=SERVER_NAME,
    )


# --- the settings ---------------------------------------------------------------------------------


def test_without_certificate_settings_tls_stays_a_switch() -> None:
    assert tls_config(Settings(environment="test")) is False
    assert tls_config(Settings(environment="test", temporal_tls=True)) is True
    assert tls_config(Settings(environment="test", temporal_api_key="k" * 40)) is True


def test_certificate_settings_become_a_tls_config(pki: Pki) -> None:
    config = tls_config(mtls_settings(pki))
    assert isinstance(config, TLSConfig)
    assert config.server_root_ca_cert == pki.ca.read_bytes()
    assert config.client_cert == pki.client_cert.read_bytes()
    assert config.client_private_key == pki.client_key.read_bytes()
    assert config.domain == SERVER_NAME


def test_a_ca_alone_verifies_the_server_without_a_client_certificate(pki: Pki) -> None:
    config = tls_config(Settings(environment="test", temporal_tls_ca=str(pki.ca)))
    assert isinstance(config, TLSConfig)
    assert config.client_cert is None and config.domain is None


@pytest.mark.parametrize("given", ["temporal_tls_cert", "temporal_tls_key"])
def test_a_certificate_and_its_key_go_together(pki: Pki, given: str) -> None:
    with pytest.raises(ValidationError, match="CLOSEFLOW_TEMPORAL_TLS_CERT and"):
        Settings(environment="test", **{given: str(pki.client_cert)})


def test_an_unreadable_or_non_pem_file_is_named(pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "missing.crt"
    with pytest.raises(
        RuntimeError, match=re.escape(f"CLOSEFLOW_TEMPORAL_TLS_CA: cannot read {missing}")
    ):
        tls_config(Settings(environment="test", temporal_tls_ca=str(missing)))
    not_pem = tmp_path / "ca.der"
    not_pem.write_bytes(b"\x30\x82")
    with pytest.raises(RuntimeError, match=r"CLOSEFLOW_TEMPORAL_TLS_CA: .* is not a PEM file"):
        tls_config(Settings(environment="test", temporal_tls_ca=str(not_pem)))


# --- the handshake ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def frontend_requiring_client_certificates(
    pki: Pki, seen: asyncio.Queue[str]
) -> AsyncIterator[int]:
    """A TLS listener that, like Temporal's frontend with requireClientAuth, completes a handshake
    only with a client certificate signed by the CA. Each connection reports the client's name,
    or `refused: <why>` when the handshake failed on either side."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.set_alpn_protocols(["h2"])  # what a gRPC client asks for

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await writer.start_tls(context)
        except (ssl.SSLError, ConnectionError) as exc:
            await seen.put(f"refused: {exc}")
        else:
            subject = dict(item[0] for item in writer.get_extra_info("peercert")["subject"])
            await seen.put(subject["commonName"])
        writer.close()  # not a Temporal server: the client's call fails after the handshake

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def first_handshake(pki: Pki, **settings: str) -> str:
    """What the frontend saw of closeflow's first connection with these settings."""
    seen: asyncio.Queue[str] = asyncio.Queue()
    async with frontend_requiring_client_certificates(pki, seen) as port:
        values = {
            "temporal_tls_cert": str(pki.client_cert),
            "temporal_tls_key": str(pki.client_key),
            "temporal_tls_ca": str(pki.ca),
            "temporal_tls_server_name": SERVER_NAME,
            **settings,
        }
        given = Settings(environment="test", temporal_address=f"127.0.0.1:{port}", **values)
        attempt = asyncio.create_task(connect(given))
        try:
            # a guard against a hang, not a timing assertion: a handshake takes milliseconds
            return await asyncio.wait_for(seen.get(), timeout=60)
        finally:
            attempt.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await attempt


async def test_the_client_presents_its_certificate_to_the_frontend(pki: Pki) -> None:
    # the server verified closeflow's certificate against its CA, and closeflow the server's
    # against CLOSEFLOW_TEMPORAL_TLS_CA and CLOSEFLOW_TEMPORAL_TLS_SERVER_NAME
    assert await first_handshake(pki) == CLIENT_NAME


async def test_without_a_client_certificate_the_frontend_refuses(pki: Pki) -> None:
    seen = await first_handshake(pki, temporal_tls_cert="", temporal_tls_key="")
    assert seen.startswith("refused:") and "CERTIFICATE" in seen.upper(), seen


async def test_the_client_refuses_a_frontend_with_another_name(pki: Pki) -> None:
    seen = await first_handshake(pki, temporal_tls_server_name="temporal-elsewhere")
    assert seen.startswith("refused:") and "BAD_CERTIFICATE" in seen, seen


async def test_the_client_refuses_a_frontend_signed_by_an_unknown_ca(pki: Pki) -> None:
    # without CLOSEFLOW_TEMPORAL_TLS_CA the system's trust store knows nothing of a private CA
    seen = await first_handshake(pki, temporal_tls_ca="")
    assert seen.startswith("refused:") and "UNKNOWN_CA" in seen, seen


async def test_the_charts_namespace_job_presents_a_client_certificate(
    pki: Pki, tmp_path: Path
) -> None:
    """Chart 1.6.0 creates the namespace closeflow in a job of the admin-tools image: `temporal
    operator namespace describe || create`, given TEMPORAL_ADDRESS and admintools' additionalEnv,
    -Volumes and -VolumeMounts only. The values had the frontend require client certificates
    but gave the job none: it could never connect, the post-install hook failed and no
    namespace existed for closeflow. The job runs here as the chart runs it, each Secret it
    mounts holding a client certificate (tls.crt, tls.key, ca.crt)."""
    admintools = helm_values()["admintools"]
    secrets = {v["name"] for v in admintools.get("additionalVolumes", []) if "secret" in v}
    mounts = {}
    for mount in admintools.get("additionalVolumeMounts", []):
        assert mount["name"] in secrets, mount
        mounts[mount["mountPath"].rstrip("/")] = directory = tmp_path / mount["name"]
        directory.mkdir()
        for source, name in ((pki.client_cert, "tls.crt"), (pki.client_key, "tls.key")):
            shutil.copy(source, directory / name)
        shutil.copy(pki.ca, directory / "ca.crt")
    env = {}
    for variable in admintools.get("additionalEnv", []):
        value = str(variable["value"])
        for path, directory in mounts.items():
            value = value.replace(f"{path}/", f"{directory}/")
        env[variable["name"]] = value
    seen: asyncio.Queue[str] = asyncio.Queue()
    async with frontend_requiring_client_certificates(pki, seen) as port:
        job = await asyncio.create_subprocess_exec(
            temporal_binary(),
            *("operator", "namespace", "describe", "-n", "closeflow"),
            env={
                "PATH": os.environ.get("PATH", ""),
                "HOME": str(tmp_path),  # no temporal.toml of the developer's
                **env,
                # the chart's: its frontend Service, here the listener's port
                "TEMPORAL_ADDRESS": f"127.0.0.1:{port}",
            },
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            # a guard against a hang, not a timing assertion
            first = await asyncio.wait_for(seen.get(), timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                job.kill()
            await job.wait()
    assert first == CLIENT_NAME
