"""The transports that carry rendered bytes (listmonk's messenger).

They share one protocol, :class:`Transport`: ``await send(envelope_from,
recipients, message_bytes, on_data=None)`` raising :class:`~syndicate.errors.TransportError`
(``temporary`` for 4xx replies and dropped connections, permanent for 5xx,
``code`` the SMTP reply code) and ``await close()``. ``on_data()``, when
given, is awaited at the moment the message itself starts on its way (after
the relay's ``354`` to DATA): before it the relay cannot have the message,
after it it may, so a journal written there makes ``unknown`` exact. :class:`MemoryTransport`
keeps what it was given, :class:`MaildirTransport` writes files atomically,
:class:`SmtpTransport` is a pool of reused aiosmtplib connections;
:func:`make_transport` picks one from the settings.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from ..config import Settings
from ..errors import AddressError, ConfigError, TransportError
from .maildir import MaildirTransport
from .message import encode_address
from .wire import WireMessage

__all__ = ["Transport", "MemoryTransport", "MaildirTransport", "SmtpTransport", "make_transport"]


#: Awaited by a transport just before the message itself goes out (see the module docstring).
OnData = Callable[[], Awaitable[None]]


@runtime_checkable
class Transport(Protocol):
    """Carries rendered bytes. ``send`` raises TransportError(temporary=..., code=...)."""

    async def send(self, envelope_from: str, recipients: list[str], message: bytes,
                   on_data: OnData | None = None) -> None: ...

    async def close(self) -> None: ...


class MemoryTransport:
    """Keeps ``(envelope_from, recipients, message)`` in :attr:`sent`, for tests and dry runs.

    ``fail`` may return a TransportError to raise for a given send (or ``None``).
    """

    def __init__(self, fail: Callable[[str, list[str], bytes], TransportError | None] | None = None) -> None:
        self.sent: list[tuple[str, list[str], bytes]] = []
        self.fail = fail
        self.closed = False

    async def send(self, envelope_from: str, recipients: list[str], message: bytes,
                   on_data: OnData | None = None) -> None:
        if on_data is not None:
            await on_data()
        if self.fail is not None:
            error = self.fail(envelope_from, recipients, message)
            if error is not None:
                raise error
        self.sent.append((envelope_from, list(recipients), message))

    async def close(self) -> None:
        self.closed = True


class _Refused(Exception):
    """An SMTP refusal: the message for the TransportError, its code, and whether it is temporary."""

    def __init__(self, message: str, code: int, temporary: bool | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.temporary = code < 500 if temporary is None else temporary


def wire_ready(message: bytes) -> bytes:
    """``message`` as SMTP DATA carries it: CRLF line ends, leading dots doubled, a final CRLF.

    What :func:`~syndicate.mailer.message.render_mail` builds already is (a
    :class:`~syndicate.mailer.wire.WireMessage`) and is returned as it is;
    other bytes in that form are returned after a few scans (no copy);
    anything else is rewritten as aiosmtplib's ``sendmail`` would.

    Example:
        >>> wire_ready(b"a\\r\\nb\\r\\n") == b"a\\r\\nb\\r\\n", wire_ready(b"a\\n.b")
        (True, b'a\\r\\n..b\\r\\n')
    """
    if type(message) is WireMessage:
        return message
    crlf = message.count(b"\r\n")
    if (message.endswith(b"\r\n") and message.count(b"\r") == crlf and message.count(b"\n") == crlf
            and b"\n." not in message and not message.startswith(b".")):
        return message
    from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

    return PERIOD_REGEX.sub(b"..", normalize_message_line_endings(message))


class _Bucket:
    """Token bucket: ``rate`` tokens a second, holding at most ``burst``."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self.tokens = self.burst
        self.stamp = time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self) -> None:
        async with self.lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= 1.0:
                    self.tokens -= 1.0
                    return
                await asyncio.sleep((1.0 - self.tokens) / self.rate)


class SmtpTransport:
    """A pool of reused aiosmtplib connections (``smtp_pool_size``), rate-limited.

    Connections open lazily, stay open between messages, and are dropped and
    replaced after any connection failure. A connection idle for more than
    ``idle_check`` seconds is probed with NOOP before reuse. Replies map to
    TransportError: 4xx and dropped connections are temporary, 5xx permanent.
    One event loop per transport; call :meth:`close` at the end.
    """

    idle_check = 10.0

    def __init__(self, settings: Settings) -> None:
        if not settings.smtp_host:
            raise ConfigError(f"{settings.source}: [smtp] host is not set")
        self.settings = settings
        self.size = max(1, settings.smtp_pool_size)
        self._idle: list[tuple[object, float]] = []
        self._sem: asyncio.Semaphore | None = None
        self._bucket = _Bucket(settings.smtp_rate, self.size) if settings.smtp_rate > 0 else None
        sender_domain = settings.mail_sender_address.rpartition("@")[2] or "localhost"
        try:
            self._local_hostname = encode_address(f"x@{sender_domain}").rpartition("@")[2]
        except AddressError:
            self._local_hostname = "localhost"
        self.opened = 0  # connections opened so far (for tests and benchmarks)
        self._live: dict[object, asyncio.Event] = {}  # connections whose socket is not closed yet

    def _client(self) -> object:
        s = self.settings
        conn = _connection_class()(
            on_lost=lambda c: self._live.pop(c, None),
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username or None,
            password=s.smtp_password.get() or None if s.smtp_username else None,
            local_hostname=self._local_hostname,
            timeout=s.smtp_timeout,
            use_tls=s.smtp_security == "tls",
            start_tls=s.smtp_security == "starttls",
            cert_bundle=s.smtp_ca_file or None,
        )
        return conn

    async def _acquire(self) -> object:
        import aiosmtplib

        while self._idle:
            conn, since = self._idle.pop()
            assert isinstance(conn, aiosmtplib.SMTP)
            if not conn.is_connected:
                conn.close()
                continue
            if time.monotonic() - since > self.idle_check:
                try:
                    await conn.noop()
                except (aiosmtplib.SMTPException, OSError):
                    conn.close()
                    continue
                except BaseException:  # cancelled (a stopping run) mid-probe: never leave the socket open
                    conn.close()
                    raise
            return conn
        conn = self._client()
        assert isinstance(conn, aiosmtplib.SMTP)
        try:  # connecting and greeting fail the same way: one reply code, or none
            await conn.connect()
            if conn.is_ehlo_or_helo_needed:  # after STARTTLS or AUTH aiosmtplib has greeted already
                try:
                    await conn.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await conn.helo()
        except aiosmtplib.SMTPResponseException as exc:
            conn.close()
            raise TransportError(
                f"SMTP {self.settings.smtp_host}:{self.settings.smtp_port} refused the session: {exc.code} {exc.message}",
                temporary=exc.code < 500, code=exc.code,
            ) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            conn.close()
            raise TransportError(
                f"cannot connect to SMTP {self.settings.smtp_host}:{self.settings.smtp_port}: {exc}", temporary=True
            ) from None
        self.opened += 1
        self._live[conn] = conn.lost  # type: ignore[attr-defined]
        return conn

    async def send(self, envelope_from: str, recipients: list[str], message: bytes,
                   on_data: OnData | None = None) -> None:
        import aiosmtplib

        sender = encode_address(envelope_from) if envelope_from else ""
        rcpts = [encode_address(r) for r in recipients]
        payload = wire_ready(message)
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.size)
        if self._bucket is not None:
            await self._bucket.take()
        async with self._sem:
            conn = await self._acquire()
            assert isinstance(conn, aiosmtplib.SMTP)
            keep = False
            try:
                refused = await self._transaction(conn, sender, rcpts, payload, on_data)
                keep = True
            except _Refused as exc:
                keep = conn.is_connected and exc.code != 421
                raise TransportError(str(exc), temporary=exc.temporary, code=exc.code) from None
            except (aiosmtplib.SMTPException, OSError) as exc:
                raise TransportError(f"SMTP connection failed: {exc}", temporary=True) from None
            finally:
                if keep:
                    self._idle.append((conn, time.monotonic()))
                else:
                    conn.close()
            if refused:
                rcpt, code, text = refused[0]
                raise TransportError(f"SMTP refused {rcpt}: {code} {text}",
                                     temporary=all(c < 500 for _, c, _ in refused), code=code)

    async def _transaction(self, conn: object, sender: str, rcpts: list[str], payload: bytes,
                           on_data: OnData | None) -> list[tuple[str, int, str]]:
        """MAIL, RCPT, DATA and the message on one connection; the recipients refused.

        Drives the commands through aiosmtplib's lower-level API instead of
        ``sendmail``, which parses every address again with the email package
        and rewrites line endings and leading dots of the whole message on
        every send; the addresses are checked and the bytes are
        :func:`wire_ready` already. Raises :class:`_Refused` for a refusal
        (after RSET, so the connection can be reused).
        """
        import aiosmtplib

        assert isinstance(conn, aiosmtplib.SMTP)
        timeout = self.settings.smtp_timeout
        mail_from = b"FROM:<" + sender.encode("ascii") + b">"
        if conn.supports_extension("size"):
            mail_from += b" SIZE=%d" % len(payload)
        reply = await conn.execute_command(b"MAIL", mail_from, timeout=timeout)
        if reply.code != 250:
            await self._reset(conn)
            raise _Refused(f"SMTP replied {reply.code} {reply.message}", reply.code)
        refused: list[tuple[str, int, str]] = []
        for rcpt in rcpts:
            reply = await conn.execute_command(b"RCPT", b"TO:<" + rcpt.encode("ascii") + b">", timeout=timeout)
            if reply.code not in (250, 251):
                refused.append((rcpt, reply.code, reply.message))
        if len(refused) == len(rcpts):
            await self._reset(conn)
            rcpt, code, text = refused[0]
            raise _Refused(f"SMTP refused {rcpt}: {code} {text}", code, all(c < 500 for _, c, _ in refused))
        reply = await conn.execute_command(b"DATA", timeout=timeout)
        if reply.code != 354:
            await self._reset(conn)
            raise _Refused(f"SMTP replied {reply.code} {reply.message}", reply.code)
        protocol = conn.protocol
        if protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        if on_data is not None:
            await on_data()  # from here on the server may accept the message
        try:
            protocol.write(payload + b".\r\n")
            reply = await protocol.read_response(timeout=timeout)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
            conn.close()  # a reply we gave up on would pair with the next command
            raise
        if reply.code != 250:
            if reply.code == 421:
                conn.close()
            raise _Refused(f"SMTP replied {reply.code} {reply.message}", reply.code)
        return refused

    @staticmethod
    async def _reset(conn: object) -> None:
        import aiosmtplib

        assert isinstance(conn, aiosmtplib.SMTP)
        if conn.is_connected:
            try:
                await conn.execute_command(b"RSET")
            except (aiosmtplib.SMTPException, OSError):
                pass

    async def close(self) -> None:
        """QUIT the idle connections, and return once every socket is really closed.

        A TLS connection closes asynchronously (close_notify both ways); an
        event loop ended before that leaves its socket open.
        """
        import aiosmtplib

        idle, self._idle = self._idle, []
        for conn, _ in idle:
            assert isinstance(conn, aiosmtplib.SMTP)
            try:
                if conn.is_connected:
                    await conn.quit()
            except (aiosmtplib.SMTPException, OSError):
                pass
            finally:
                conn.close()
        live = list(self._live.items())
        for conn, _ in live:
            assert isinstance(conn, aiosmtplib.SMTP)
            conn.close()
        if live:
            try:
                await asyncio.wait_for(asyncio.gather(*(lost.wait() for _, lost in live)),
                                       max(5.0, self.settings.smtp_timeout))
            except TimeoutError:
                pass  # a peer that never finishes the TLS close: give up waiting, as asyncio would


def _connection_class() -> type:
    """aiosmtplib.SMTP that reports when its socket is closed (imported on first use)."""
    global _CONNECTION
    if _CONNECTION is None:
        import aiosmtplib

        class Connection(aiosmtplib.SMTP):
            def __init__(self, *, on_lost: Callable[[object], object], **kwargs: object) -> None:
                super().__init__(**kwargs)  # type: ignore[arg-type]
                self.lost = asyncio.Event()
                self._on_lost = on_lost

            def _on_connection_lost(self, protocol: object) -> None:
                super()._on_connection_lost(protocol)  # type: ignore[arg-type]
                self.lost.set()
                self._on_lost(self)

        _CONNECTION = Connection
    return _CONNECTION


_CONNECTION: type | None = None


def make_transport(settings: Settings, kind: str | None = None) -> Transport:
    """``smtp`` when an SMTP host is set, else ``maildir``; ``memory`` for dry runs.

    Example:
        >>> make_transport(Settings(), "memory").sent
        []
    """
    kind = kind or settings.transport
    if kind == "memory":
        return MemoryTransport()
    if kind == "maildir":
        return MaildirTransport(settings.mail_maildir)
    if kind == "smtp":
        return SmtpTransport(settings)
    raise ConfigError(f"unknown transport {kind!r}; choose smtp, maildir or memory")
