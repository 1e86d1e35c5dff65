"""The transports that carry rendered bytes (listmonk's messenger).

They share one protocol, :class:`Transport`: ``await send(envelope_from,
recipients, message_bytes, on_data=None)`` raising :class:`~syndicate.errors.TransportError`
(``temporary`` for 4xx replies and dropped connections, permanent for 5xx,
``code`` the SMTP reply code, ``None`` when no reply came) and ``await
close()``. ``on_data``, when given, is awaited at the moment the relay may
start to hold the message: as DATA begins, after a connection, the rate
limiter, MAIL FROM and RCPT TO (the sender's journal writes its "started"
line there, so ``unknown`` means exactly "the relay may have it"). :class:`MemoryTransport`
keeps what it was given, :class:`MaildirTransport` writes files atomically,
:class:`SmtpTransport` is a pool of reused aiosmtplib connections;
:func:`make_transport` picks one from the settings.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..config import Settings
from ..errors import AddressError, ConfigError, TransportError
from .message import encode_address

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
        if self.fail is not None:
            error = self.fail(envelope_from, recipients, message)
            if error is not None:
                raise error
        if on_data is not None:
            await on_data()
        self.sent.append((envelope_from, list(recipients), message))

    async def close(self) -> None:
        self.closed = True


class MaildirTransport:
    """Writes each message to a Maildir (``tmp/`` then ``new/``, unique names).

    A ``Return-Path`` line with the envelope sender is prepended, as a local
    delivery agent does; line endings are kept as rendered (CRLF).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._made = False
        self._count = 0
        self._host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")

    def _ensure(self) -> None:
        if not self._made:
            for sub in ("tmp", "new", "cur"):
                (self.path / sub).mkdir(parents=True, exist_ok=True)
            self._made = True

    def write(self, envelope_from: str, message: bytes) -> Path:
        """Write one message synchronously; returns its path in ``new/``."""
        self._ensure()
        self._count += 1
        now = time.time()
        name = f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{self._count}R{os.urandom(4).hex()}.{self._host}"
        tmp = self.path / "tmp" / name
        data = b"Return-Path: <" + envelope_from.encode("ascii", "replace") + b">\r\n" + message
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            final = self.path / "new" / name
            os.replace(tmp, final)
        except OSError as exc:
            raise TransportError(f"maildir {self.path}: cannot write a message: {exc.strerror}", temporary=True) from None
        return final

    async def send(self, envelope_from: str, recipients: list[str], message: bytes,
                   on_data: OnData | None = None) -> None:
        for r in recipients:
            encode_address(r)
        if on_data is not None:
            await on_data()
        self.write(encode_address(envelope_from) if envelope_from else "", message)

    async def close(self) -> None:
        return None


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


@functools.cache
def _client_class() -> type[Any]:
    """aiosmtplib's client with one hook: ``before_data``, awaited as DATA begins (built on first use,
    so importing the mailer does not import aiosmtplib)."""
    import aiosmtplib
    from aiosmtplib.typing import Default

    class Client(aiosmtplib.SMTP):
        before_data: OnData | None = None

        async def data(self, message: str | bytes, /, *,
                       timeout: float | Default | None = Default.token) -> aiosmtplib.SMTPResponse:
            hook, self.before_data = self.before_data, None
            if hook is not None:
                await hook()
            return await super().data(message, timeout=timeout)

    return Client


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

    def _client(self) -> object:
        s = self.settings
        return _client_class()(
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

    async def _acquire(self) -> object:
        import aiosmtplib

        while self._idle:
            conn, since = self._idle.pop()
            assert isinstance(conn, _client_class())
            if not conn.is_connected:
                conn.close()
                continue
            if time.monotonic() - since > self.idle_check:
                try:
                    await conn.noop()
                except (aiosmtplib.SMTPException, OSError):
                    conn.close()
                    continue
                except asyncio.CancelledError:  # taken from the idle list: close it, never leak it
                    conn.close()
                    raise
            return conn
        conn = self._client()
        assert isinstance(conn, _client_class())
        try:
            await conn.connect()
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
        return conn

    async def send(self, envelope_from: str, recipients: list[str], message: bytes,
                   on_data: OnData | None = None) -> None:
        import aiosmtplib

        sender = encode_address(envelope_from) if envelope_from else ""
        rcpts = [encode_address(r) for r in recipients]
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.size)
        if self._bucket is not None:
            await self._bucket.take()
        async with self._sem:
            conn = await self._acquire()
            assert isinstance(conn, _client_class())
            keep = False
            try:
                conn.before_data = on_data
                errors, _ = await conn.sendmail(sender, rcpts, message)
                keep = True
            except aiosmtplib.SMTPRecipientsRefused as exc:
                keep = conn.is_connected
                codes = [e.code for e in exc.recipients]
                first = exc.recipients[0]
                raise TransportError(
                    f"SMTP refused {first.recipient}: {first.code} {first.message}",
                    temporary=all(c < 500 for c in codes), code=first.code,
                ) from None
            except aiosmtplib.SMTPResponseException as exc:
                keep = conn.is_connected and exc.code != 421
                raise TransportError(
                    f"SMTP replied {exc.code} {exc.message}", temporary=exc.code < 500, code=exc.code
                ) from None
            except (aiosmtplib.SMTPException, OSError) as exc:
                raise TransportError(f"SMTP connection failed: {exc}", temporary=True) from None
            finally:
                conn.before_data = None
                if keep:
                    self._idle.append((conn, time.monotonic()))
                else:
                    conn.close()
            if errors:
                rcpt, resp = next(iter(errors.items()))
                raise TransportError(
                    f"SMTP refused {rcpt}: {resp.code} {resp.message}",
                    temporary=all(r.code < 500 for r in errors.values()), code=resp.code,
                )

    async def close(self) -> None:
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
