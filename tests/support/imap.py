"""A real IMAP server for the mailbox tests: Debian's dovecot (package dovecot-imapd; make test
and .ci/run install it), started with a throwaway configuration in a temporary directory on a
free port: a passwd-file of users, a maildir each, plaintext login on 127.0.0.1. Messages reach
it the way a mail server delivers them to a folder: APPEND."""

from __future__ import annotations

import asyncio
import contextlib
import grp
import imaplib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate
from ipaddress import ip_address
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.ports import free_port

PASSWORD = "imap-test-password"
USERS = 20  # mailboxes a server has for the tests that share it


def dovecot_binary() -> str:
    found = shutil.which("dovecot") or (
        "/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None
    )
    if found is None:
        message = "dovecot is missing: apt-get install dovecot-imapd (make test and .ci/run do)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def _accounts() -> tuple[str, str, str]:
    """Who runs what: as root, dovecot's own users (its login processes refuse root); else
    this user for everything."""
    if os.getuid() == 0:
        return "dovecot", "dovecot", "dovenull"
    me = pwd.getpwuid(os.getuid()).pw_name
    return me, grp.getgrgid(os.getgid()).gr_name, me


CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
instance_name = closeflow-test-{port}
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{root}/server.crt
ssl_key = <{root}/server.key
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal}
default_internal_group = {group}
default_login_user = {login}
first_valid_uid = 0
log_path = {root}/dovecot.log
mail_location = maildir:{root}/mail/%u
{capability}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/users
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
  }}
}}
service anvil {{
  chroot =
}}
"""


@dataclass
class Dovecot:
    """The server: IMAP on `port` (plain, or STARTTLS), implicit TLS on `tls_port`, its
    certificate (for 127.0.0.1, self-signed) in `ca`."""

    root: Path
    port: int
    tls_port: int
    process: subprocess.Popen[bytes]
    users: list[str] = field(default_factory=list)

    def add_user(self) -> str:
        """A mailbox user of its own (made before the start: dovecot may not read a passwd-file
        changed twice within a second again)."""
        return self.users.pop()

    def _client(self, user: str) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        client.login(user, PASSWORD)
        return client

    def _append(self, user: str, messages: Sequence[bytes], folder: str) -> None:
        client = self._client(user)
        try:
            for raw in messages:
                typ, data = client.append(folder, None, None, raw)
                assert typ == "OK", data
        finally:
            client.logout()

    async def append(self, user: str, *messages: bytes, folder: str = "INBOX") -> None:
        """Deliver messages to the user's folder, in this order (UIDs ascending)."""
        await asyncio.to_thread(self._append, user, messages, folder)

    def _recreate(self, user: str, folder: str) -> None:
        client = self._client(user)
        try:
            client.delete(folder)
            client.create(folder)
        finally:
            client.logout()

    async def recreate(self, user: str, folder: str) -> None:
        """Delete the folder and create it again: a new UIDVALIDITY, its UIDs start over."""
        await asyncio.to_thread(self._recreate, user, folder)

    async def create(self, user: str, folder: str) -> None:
        def create() -> None:
            client = self._client(user)
            try:
                client.create(folder)
            finally:
                client.logout()

        await asyncio.to_thread(create)

    async def kick(self, user: str) -> None:
        """Drop the user's connections, as a server restarting does (BYE, then closed)."""
        doveadm = shutil.which("doveadm") or "/usr/bin/doveadm"
        command = [doveadm, "-c", str(self.root / "dovecot.conf"), "kick", user]
        done = await asyncio.to_thread(subprocess.run, command, capture_output=True, check=False)
        assert done.returncode == 0, done.stderr

    @property
    def ca(self) -> Path:
        return self.root / "server.crt"

    def logins(self, user: str) -> list[str]:
        """The server's log lines of the user's logins (", TLS," when it was encrypted)."""
        return [line for line in self.log().splitlines() if f"Login: user=<{user}>" in line]

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text() if path.exists() else ""


def _self_signed(root: Path) -> None:
    """server.crt / server.key: a certificate for 127.0.0.1 that is its own CA (the client
    trusts it through CLOSEFLOW_IMAP_TLS_CA)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "closeflow test imap")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    (root / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (root / "server.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _wait_listening(server: Dovecot) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"dovecot exited: {server.log()}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", server.port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"dovecot did not listen on {server.port}: {server.log()}")


@contextlib.contextmanager
def dovecot(*, idle: bool = True) -> Iterator[Dovecot]:
    """A dovecot on a free port for the duration; `idle=False`: a server that does not offer
    IDLE (its capability list without it)."""
    binary = dovecot_binary()
    # not the test's tmp_path: dovecot's own users must reach it, and pytest's is private
    root = Path(tempfile.mkdtemp(prefix="closeflow-dovecot-"))
    root.chmod(0o755)
    internal, group, login = _accounts()
    (root / "mail").mkdir()
    if os.getuid() == 0:
        shutil.chown(root / "mail", internal, group)
    uid, gid = pwd.getpwnam(internal).pw_uid, grp.getgrnam(group).gr_gid
    users = [f"u{uuid.uuid4().hex[:10]}" for _ in range(USERS)]
    (root / "users").write_text(
        "".join(f"{name}:{{PLAIN}}{PASSWORD}:{uid}:{gid}::{root}/mail/{name}\n" for name in users)
    )
    port, tls_port = free_port(), free_port()
    _self_signed(root)
    capability = "" if idle else "imap_capability = IMAP4rev1 SASL-IR LITERAL+ ENABLE UIDPLUS"
    conf = root / "dovecot.conf"
    conf.write_text(
        CONFIG.format(
            root=root,
            port=port,
            tls_port=tls_port,
            internal=internal,
            group=group,
            login=login,
            capability=capability,
        )
    )
    process = subprocess.Popen(
        [binary, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    server = Dovecot(root, port, tls_port, process, users)
    try:
        _wait_listening(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)


def reply(
    *,
    sender: str,
    to: str = "sales@closeflow.localhost",
    subject: str = "Re: Quick question",
    text: str = "Yes, let's talk on Tuesday.",
    in_reply_to: str | None = None,
    message_id: str | None = "",
    headers: dict[str, str] | None = None,
    attachment: bytes = b"",
) -> bytes:
    """An email as a mail client sends it (message_id None: without a Message-ID header;
    `attachment`: a file after the text, as mail clients put it)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    if message_id is not None:
        message["Message-ID"] = message_id or f"<{uuid.uuid4().hex}@mail.example>"
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = in_reply_to
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(f"{text}\n\nOn Mon, Rita Rep wrote:\n> Hi, a quick question\n")
    if attachment:
        message.add_attachment(
            attachment, maintype="application", subtype="pdf", filename="deck.pdf"
        )
    return bytes(message)


def bounce(
    *,
    recipient: str,
    original_id: str,
    action: str = "failed",
    status: str = "5.1.1",
    threaded: bool = True,
) -> bytes:
    """A delivery status notification (RFC 3464) about the email `original_id` to `recipient`,
    as the sending server mails it back to the sender: Auto-Submitted like every DSN, threaded
    on the original by In-Reply-To as Gmail and Exchange do (`threaded`; Postfix does not), the
    original's headers returned in a text/rfc822-headers part."""
    thread = f"In-Reply-To: {original_id}\nReferences: {original_id}\n" if threaded else ""
    text = f"""From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: sales@closeflow.localhost
Subject: Delivery Status Notification ({"Failure" if action == "failed" else "Delay"})
Date: {formatdate(localtime=False)}
Message-ID: <{uuid.uuid4().hex}@mx.example>
{thread}Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="dsn"

--dsn
Content-Type: text/plain; charset="UTF-8"

Your message to {recipient} could not be delivered. The original said: to stop these emails,
unsubscribe here.

--dsn
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example

Final-Recipient: rfc822; {recipient}
Action: {action}
Status: {status}
Diagnostic-Code: smtp; 550 {status} The email account that you tried to reach does not exist.

--dsn
Content-Type: text/rfc822-headers

Message-ID: {original_id}
To: {recipient}
Subject: Quick question

--dsn--
"""
    return text.replace("\n", "\r\n").encode()


@dataclass
class Relayed:
    """A local port in front of the server, and how many bytes the server sent through it."""

    port: int
    from_server: int = 0


@contextlib.asynccontextmanager
async def counting(port: int) -> AsyncIterator[Relayed]:
    """A local port in front of the server's `port` that counts what the server sends: how
    much a client read of the mailbox."""
    relayed = Relayed(0)
    tasks: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: bool) -> None:
        try:
            while data := await reader.read(64 * 1024):
                relayed.from_server += len(data) if count else 0
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def connect(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", port)
        for task in (
            asyncio.create_task(pipe(client_r, server_w, count=False)),
            asyncio.create_task(pipe(server_r, client_w, count=True)),
        ):
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    proxy = await asyncio.start_server(connect, "127.0.0.1", 0)
    relayed.port = proxy.sockets[0].getsockname()[1]
    try:
        yield relayed
    finally:
        proxy.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
