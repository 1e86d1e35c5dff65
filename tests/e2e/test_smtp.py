"""SmtpTransport against a real aiosmtpd server on 127.0.0.1: pool, replies, drops, auth, rate."""

from __future__ import annotations

import asyncio
import email
import email.policy
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dkim
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography.hazmat.primitives.asymmetric import ed25519
from loopback import free_port, smtp_server

from syndicate.config import Secret, Settings
from syndicate.errors import TransportError
from syndicate.mailer import DkimSigner, Mail, SmtpTransport, list_headers, render_mail, verp_address


@dataclass
class Handler:
    """Records envelopes; ``script`` holds replies to give to the next DATA/RCPT commands."""

    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    data_replies: list[str] = field(default_factory=list)
    rcpt_replies: list[str] = field(default_factory=list)
    drop_next_data: int = 0
    sessions: set[int] = field(default_factory=set)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if self.rcpt_replies:
            return self.rcpt_replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.sessions.add(id(session))
        if self.drop_next_data:
            self.drop_next_data -= 1
            server.transport.abort()
            return "250 never seen"
        if self.data_replies:
            return self.data_replies.pop(0)
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 Message accepted"


@pytest.fixture
def server() -> Iterator[tuple[Handler, int]]:
    handler = Handler()
    with smtp_server(handler) as port:
        yield handler, port


def smtp_settings(port: int, **changes: Any) -> Settings:
    base = Settings(
        secret_key=Secret("test-secret-key-0123456789-abcdefghij"),
        mail_sender_address="tin@news.example.org",
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_pool_size=3,
        smtp_timeout=5.0,
        source="tests",
    )
    return base.with_(**changes)


def mail(i: int, settings: Settings) -> Mail:
    return Mail(
        from_name="Bản tin Sài Gòn",
        from_addr="tin@news.example.org",
        to_name=f"Người đọc {i}",
        to_addr=f"reader{i}@example.org",
        subject=f"Tin sáng số {i}: khởi nghiệp và công nghệ",
        text=f"Xin chào người đọc {i}\n" * 200,
        html=f"<p>Xin chào người đọc {i}</p>\n" * 300,
        message_id=f"digest.1.{i}.2026-11-24@news.example.org",
        date=datetime(2026, 11, 24, 0, 0, tzinfo=UTC),
        headers=list_headers("Tin sáng", "sang.news.example.org", f"https://news.example.org/unsubscribe/t{i}"),
        return_path=verp_address(settings, 1000 + i),
    )


async def send_once(t: SmtpTransport, m: Mail) -> None:
    try:
        await t.send(m.envelope_from, m.recipients, render_mail(m))
    finally:
        await t.close()


def test_pool_delivers_intact_and_reuses_connections(server: tuple[Handler, int]) -> None:
    handler, port = server
    settings = smtp_settings(port)
    key = ed25519.Ed25519PrivateKey.generate()
    signer = DkimSigner("news.example.org", "s1", key)
    mails = [mail(i, settings) for i in range(30)]
    raws = {m.recipients[0]: render_mail(m, signer) for m in mails}

    async def go() -> SmtpTransport:
        t = SmtpTransport(settings)
        await asyncio.gather(*(t.send(m.envelope_from, m.recipients, raws[m.recipients[0]]) for m in mails))
        await t.close()
        return t

    t = asyncio.run(go())
    assert t.opened <= 3
    assert len(handler.sessions) <= 3
    assert len(handler.received) == 30
    record = signer.dns_record().encode()
    for mail_from, rcpts, content in handler.received:
        assert len(rcpts) == 1
        assert content.replace(b"\r\n", b"\n") == raws[rcpts[0]].replace(b"\r\n", b"\n")
        assert mail_from.startswith("bounce+10")
        assert dkim.verify(content, dnsfunc=lambda name, timeout=5: record)
        msg = email.message_from_bytes(content, policy=email.policy.default)
        i = int(rcpts[0].removeprefix("reader").split("@")[0])
        assert msg["Subject"] == f"Tin sáng số {i}: khởi nghiệp và công nghệ"
        assert msg["To"].addresses[0].display_name == f"Người đọc {i}"


def test_4xx_is_temporary_then_succeeds(server: tuple[Handler, int]) -> None:
    handler, port = server
    handler.data_replies.append("451 4.3.0 Try again later")
    settings = smtp_settings(port, smtp_pool_size=1)
    m = mail(1, settings)
    raw = render_mail(m)

    async def go() -> tuple[TransportError, SmtpTransport]:
        t = SmtpTransport(settings)
        with pytest.raises(TransportError) as info:
            await t.send(m.envelope_from, m.recipients, raw)
        await t.send(m.envelope_from, m.recipients, raw)
        await t.close()
        return info.value, t

    error, t = asyncio.run(go())
    assert error.temporary is True and error.code == 451
    assert "451" in str(error)
    assert len(handler.received) == 1
    assert t.opened == 1  # the connection survived the 451 (RSET) and was reused


@pytest.mark.parametrize("where", ["data", "rcpt"])
def test_5xx_is_permanent(server: tuple[Handler, int], where: str) -> None:
    handler, port = server
    reply = "550 5.1.1 User unknown"
    (handler.data_replies if where == "data" else handler.rcpt_replies).append(reply)
    settings = smtp_settings(port, smtp_pool_size=1)
    m = mail(2, settings)

    async def go() -> TransportError:
        t = SmtpTransport(settings)
        with pytest.raises(TransportError) as info:
            await t.send(m.envelope_from, m.recipients, render_mail(m))
        await t.send(m.envelope_from, m.recipients, render_mail(m))
        await t.close()
        return info.value

    error = asyncio.run(go())
    assert error.temporary is False and error.code == 550
    assert len(handler.received) == 1


def test_dropped_connection_is_temporary_and_pool_recovers(server: tuple[Handler, int]) -> None:
    handler, port = server
    handler.drop_next_data = 1
    settings = smtp_settings(port, smtp_pool_size=1)
    m = mail(3, settings)

    async def go() -> tuple[TransportError, SmtpTransport]:
        t = SmtpTransport(settings)
        with pytest.raises(TransportError) as info:
            await t.send(m.envelope_from, m.recipients, render_mail(m))
        for _ in range(3):
            await t.send(m.envelope_from, m.recipients, render_mail(m))
        await t.close()
        return info.value, t

    error, t = asyncio.run(go())
    assert error.temporary is True and error.code is None
    assert len(handler.received) == 3
    assert t.opened == 2


def test_idle_connection_probed_with_noop(server: tuple[Handler, int]) -> None:
    handler, port = server
    settings = smtp_settings(port, smtp_pool_size=1)
    m = mail(4, settings)

    async def go() -> SmtpTransport:
        t = SmtpTransport(settings)
        t.idle_check = 0.0
        for _ in range(3):
            await t.send(m.envelope_from, m.recipients, render_mail(m))
        await t.close()
        return t

    t = asyncio.run(go())
    assert t.opened == 1 and len(handler.received) == 3


def test_connection_refused_is_temporary() -> None:
    settings = smtp_settings(free_port())
    m = mail(5, settings)
    with pytest.raises(TransportError) as info:
        asyncio.run(send_once(SmtpTransport(settings), m))
    assert info.value.temporary is True
    assert "cannot connect to SMTP 127.0.0.1" in str(info.value)


def test_rate_limit(server: tuple[Handler, int]) -> None:
    handler, port = server
    settings = smtp_settings(port, smtp_rate=20.0, smtp_pool_size=2)
    m = mail(6, settings)
    raw = render_mail(m)

    async def go() -> float:
        t = SmtpTransport(settings)
        start = time.monotonic()
        await asyncio.gather(*(t.send(m.envelope_from, m.recipients, raw) for _ in range(10)))
        elapsed = time.monotonic() - start
        await t.close()
        return elapsed

    elapsed = asyncio.run(go())
    assert len(handler.received) == 10
    assert elapsed >= (10 - 2) / 20 * 0.9  # burst of pool_size, then 20/s


@pytest.mark.filterwarnings("ignore")
def test_auth_login() -> None:
    handler = Handler()
    port = free_port()

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"tin", b"mat-khau")
        return AuthResult(success=ok)

    controller = Controller(handler, hostname="127.0.0.1", port=port, authenticator=authenticator,
                            auth_required=True, auth_require_tls=False)
    controller.start()
    try:
        good = smtp_settings(port, smtp_username="tin", smtp_password=Secret("mat-khau"))
        m = mail(7, good)
        asyncio.run(send_once(SmtpTransport(good), m))
        assert len(handler.received) == 1
    finally:
        controller.stop()


def _self_signed(tmp_path: Any) -> tuple[Any, str]:
    """A certificate for 127.0.0.1 made here, and the PEM file a client trusts it with."""
    import ipaddress
    import ssl
    from datetime import timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "relay.pem", tmp_path / "relay.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context, str(cert_file)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_tls_with_auth_to_a_relay_with_a_private_certificate(security: str, tmp_path: Any) -> None:
    """STARTTLS (required by the server before AUTH) and implicit TLS, trusting the relay's own CA file."""
    handler = Handler()
    port = free_port()
    context, ca_file = _self_signed(tmp_path)
    seen_tls: list[bool] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        seen_tls.append(session.ssl is not None)
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"tin", b"mat-khau")
        return AuthResult(success=ok)

    # aiosmtpd's auth_require_tls only knows STARTTLS; on an implicit-TLS port every session is TLS anyway
    tls: dict[str, Any] = ({"tls_context": context, "require_starttls": True, "auth_require_tls": True}
                           if security == "starttls" else {"ssl_context": context, "auth_require_tls": False})
    controller = Controller(handler, hostname="127.0.0.1", port=port, authenticator=authenticator,
                            auth_required=True, **tls)
    controller.start()
    try:
        good = smtp_settings(port, smtp_security=security, smtp_ca_file=ca_file, smtp_username="tin",
                             smtp_password=Secret("mat-khau"))
        asyncio.run(send_once(SmtpTransport(good), mail(8, good)))
        assert len(handler.received) == 1 and len(seen_tls) == 1
        if security == "starttls":  # aiosmtpd marks STARTTLS sessions; implicit TLS shows in the refusal below
            assert seen_tls == [True]
        untrusted = good.with_(smtp_ca_file="")  # the system's CAs do not know this relay
        with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            asyncio.run(send_once(SmtpTransport(untrusted), mail(9, untrusted)))
        assert len(handler.received) == 1
    finally:
        controller.stop()
