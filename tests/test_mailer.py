"""render_mail bytes parsed back with the email package; DKIM checked by dkimpy; VERP; Maildir."""

from __future__ import annotations

import asyncio
import email
import email.policy
import mailbox
import re
from datetime import UTC, datetime, timedelta, timezone
from email.header import decode_header, make_header
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from syndicate.config import Secret, Settings
from syndicate.errors import AddressError, ConfigError, TransportError
from syndicate.mailer import (
    DkimSigner,
    Mail,
    MaildirTransport,
    MemoryTransport,
    SmtpTransport,
    clean_text,
    encode_address,
    format_address,
    list_headers,
    make_transport,
    parse_verp,
    render_mail,
    verp_address,
)

SUBJECT_VI = "Bản tin sáng thứ Ba: Khởi nghiệp, công nghệ và đời sống ở Thành phố Hồ Chí Minh — số 48"
TEXT_VI = "Xin chào Nguyễn Văn An,\n\nĐây là những tin nổi bật hôm nay.\n" * 40
HTML_VI = "<p>Xin chào <b>Nguyễn Văn An</b>,</p>\n<p>Đây là những tin nổi bật hôm nay.</p>\n" * 40
DATE = datetime(2026, 11, 24, 7, 0, tzinfo=timezone(timedelta(hours=7)))


def make_mail(**changes: object) -> Mail:
    base: dict[str, object] = dict(
        from_name="Bản tin Sài Gòn",
        from_addr="tin@news.example.org",
        to_name="Nguyễn Văn An",
        to_addr="an@example.org",
        subject=SUBJECT_VI,
        text=TEXT_VI,
        html=HTML_VI,
        message_id="digest.1.2.2026-11-24@news.example.org",
        date=DATE,
        headers=[
            *list_headers("Tin sáng", "sang.news.example.org", "https://news.example.org/unsubscribe/tok",
                          "mailto:unsubscribe@news.example.org?subject=tok"),
            ("Feedback-ID", "sang:digest:syndicate"),
            ("Precedence", "bulk"),
            ("Auto-Submitted", "auto-generated"),
        ],
        return_path="bounce+1-abc@news.example.org",
    )
    base.update(changes)
    return Mail(**base)  # type: ignore[arg-type]


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    assert not msg.defects, msg.defects
    return msg


def body_of(msg: EmailMessage, kind: str) -> str:
    part = msg.get_body((kind,))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def check_wire_form(raw: bytes) -> None:
    raw.decode("ascii")  # 7-bit only
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")
    lines = raw.split(b"\r\n")
    assert max(len(line) for line in lines) <= 998
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert max(len(line) for line in head) <= 998
    assert all(len(line) <= 78 for line in head)


def test_every_header_round_trips() -> None:
    raw = render_mail(make_mail())
    check_wire_form(raw)
    msg = parse(raw)
    assert msg["Subject"] == SUBJECT_VI
    sender = msg["From"].addresses[0]
    assert (sender.display_name, sender.addr_spec) == ("Bản tin Sài Gòn", "tin@news.example.org")
    to = msg["To"].addresses[0]
    assert (to.display_name, to.addr_spec) == ("Nguyễn Văn An", "an@example.org")
    assert msg["Date"].datetime == DATE
    assert msg["Message-ID"] == "<digest.1.2.2026-11-24@news.example.org>"
    assert msg["MIME-Version"] == "1.0"
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["List-Id"] == "Tin sáng <sang.news.example.org>"
    assert msg["List-Unsubscribe"] == (
        "<https://news.example.org/unsubscribe/tok>, <mailto:unsubscribe@news.example.org?subject=tok>"
    )
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Feedback-ID"] == "sang:digest:syndicate"
    assert msg["Precedence"] == "bulk"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert "Return-Path" not in msg
    assert body_of(msg, "plain") == TEXT_VI
    assert body_of(msg, "html") == HTML_VI
    for part in msg.iter_parts():
        assert part["Content-Transfer-Encoding"] == "base64"
        assert part.get_content_charset() == "utf-8"


def test_text_only_when_no_html() -> None:
    msg = parse(render_mail(make_mail(html="")))
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content().replace("\r\n", "\n") == TEXT_VI


def test_output_is_deterministic() -> None:
    assert render_mail(make_mail()) == render_mail(make_mail())


def test_idna_domains_never_rfc2047_in_address() -> None:
    raw = render_mail(make_mail(to_addr="an@bücher.de", from_addr="tin@báo.vn"))
    head = raw.split(b"\r\n\r\n")[0].decode("ascii")
    assert "<an@xn--bcher-kva.de>" in head
    assert "<tin@xn--bo-mia.vn>" in head
    assert re.search(r"<[^>]*=\?", head) is None
    assert parse(raw)["To"].addresses[0].domain == "xn--bcher-kva.de"


def test_ascii_names_plain_or_quoted() -> None:
    raw = render_mail(make_mail(from_name="Daily News", to_name='Smith, "Bob" <boss>', subject="Hello world"))
    head = raw.split(b"\r\n\r\n")[0].decode("ascii")
    assert "From: Daily News <tin@news.example.org>" in head
    assert "Subject: Hello world" in head
    msg = parse(raw)
    assert msg["To"].addresses[0].display_name == 'Smith, "Bob" <boss>'
    assert msg["To"].addresses[0].addr_spec == "an@example.org"


def test_empty_name_gives_bare_address() -> None:
    msg = parse(render_mail(make_mail(to_name="")))
    assert msg["To"] == "an@example.org"


@pytest.mark.parametrize(
    "field",
    ["subject", "from_name", "to_name"],
)
def test_header_injection_in_text_is_neutralised(field: str) -> None:
    evil = "Hi\r\nBcc: victim@evil.example\r\n\r\n<script>x</script>\nX-Evil: 1\x00\x0b\u2028Z"
    raw = render_mail(make_mail(**{field: evil}))
    check_wire_form(raw)
    msg = parse(raw)
    assert "Bcc" not in msg and "X-Evil" not in msg
    assert body_of(msg, "plain") == TEXT_VI
    value = msg["Subject"] if field == "subject" else msg["From" if field == "from_name" else "To"].addresses[0].display_name
    assert value == "Hi Bcc: victim@evil.example <script>x</script> X-Evil: 1 Z"


@pytest.mark.parametrize(
    "addr",
    ["an@example.org\r\nBcc: v@evil.example", "an@example.org\nBcc: v@evil.example", "an @example.org",
     "<an@example.org>", "an@exa mple.org", "an", "@example.org", "an@", "ấn@example.org", "an@-bad-.org"],
)
def test_bad_addresses_raise(addr: str) -> None:
    with pytest.raises(AddressError):
        render_mail(make_mail(to_addr=addr))
    with pytest.raises(AddressError):
        encode_address(addr)


def test_extra_header_injection_and_misuse() -> None:
    msg = parse(render_mail(make_mail(headers=[("X-Campaign", "a\r\nBcc: v@evil.example")])))
    assert msg["X-Campaign"] == "a Bcc: v@evil.example" and "Bcc" not in msg
    with pytest.raises(ValueError):
        render_mail(make_mail(headers=[("Bad Name", "x")]))
    with pytest.raises(ValueError):
        render_mail(make_mail(headers=[("Subject", "second subject")]))
    with pytest.raises(ValueError):
        list_headers("x", "a b", "https://x.org/u")
    with pytest.raises(ValueError):
        list_headers("x", "x.org", "https://x.org/u>\r\nBcc: a@b.c")
    with pytest.raises(ValueError):
        render_mail(make_mail(message_id="a\r\nb@c"))
    with pytest.raises(ValueError):
        render_mail(make_mail(date=datetime(2026, 1, 1)))


def test_non_ascii_extra_header_is_encoded() -> None:
    msg = parse(render_mail(make_mail(headers=[("X-Chuyen-Muc", "Công nghệ")])))
    assert msg["X-Chuyen-Muc"] == "Công nghệ"


def test_nfc_normalisation() -> None:
    decomposed = "Tin to\u0301m ta\u0306\u0301t"  # NFD-ish input
    msg = parse(render_mail(make_mail(subject=decomposed, text=decomposed)))
    assert msg["Subject"] == "Tin tóm tắt"
    assert body_of(msg, "plain") == "Tin tóm tắt"


def test_clean_text_examples() -> None:
    assert clean_text("  a\t\tb\r\nc  ") == "a b c"
    assert format_address("", "a@b.org", "To") == "To: a@b.org"


header_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)
body_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=2000)


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subject=header_text, name=header_text, text=body_text, html=body_text)
def test_property_arbitrary_unicode_round_trips(subject: str, name: str, text: str, html: str) -> None:
    raw = render_mail(make_mail(subject=subject, to_name=name, text=text, html=html))
    check_wire_form(raw)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    assert "Bcc" not in msg
    assert str(msg["Subject"]) == clean_text(subject)
    # the RFC 2047 decoder (email.header) drops the space between encoded words; the
    # 3.11 address parser keeps it, so compare it without spaces
    assert msg["To"].addresses[0].display_name.replace(" ", "") == clean_text(name).replace(" ", "")
    to_raw = raw.split(b"\r\nTo:", 1)[1].split(b"\r\nSubject:", 1)[0].decode("ascii")
    phrase = to_raw.rpartition("<")[0] if "<" in to_raw else ""
    decoded = str(make_header(decode_header(phrase.replace("\r\n", "")))).strip() if phrase.strip() else ""
    if phrase.strip().startswith('"'):
        decoded = decoded[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    assert decoded.strip() == clean_text(name)
    assert msg["To"].addresses[0].addr_spec == "an@example.org"
    canon = text.replace("\r\n", "\n").replace("\r", "\n")
    import unicodedata

    if html:
        assert body_of(msg, "plain") == unicodedata.normalize("NFC", canon)
        assert body_of(msg, "html") == unicodedata.normalize("NFC", html.replace("\r\n", "\n").replace("\r", "\n"))
    else:
        assert msg.get_content().replace("\r\n", "\n") == unicodedata.normalize("NFC", canon)


# --- DKIM -------------------------------------------------------------------


def _keys() -> list[object]:
    return [rsa.generate_private_key(public_exponent=65537, key_size=2048), ed25519.Ed25519PrivateKey.generate()]


@pytest.fixture(scope="module", params=["rsa", "ed25519"])
def signer(request: pytest.FixtureRequest) -> DkimSigner:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if request.param == "rsa" else (
        ed25519.Ed25519PrivateKey.generate()
    )
    return DkimSigner("news.example.org", "sel2026", key)


def verify(raw: bytes, signer: DkimSigner) -> bool:
    record = signer.dns_record().encode("ascii")

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"sel2026._domainkey.news.example.org."
        return record

    return bool(dkim.verify(raw, dnsfunc=dnsfunc))


def test_dkim_verifies_with_dkimpy(signer: DkimSigner) -> None:
    raw = render_mail(make_mail(), signer)
    assert raw.startswith(b"DKIM-Signature: v=1; a=" + signer.algorithm.encode())
    check_wire_form(raw)
    assert verify(raw, signer)
    msg = parse(raw)
    assert msg["Subject"] == SUBJECT_VI


@pytest.mark.parametrize(
    "tamper",
    [
        lambda raw: raw.replace(b"Message-ID: <digest.1", b"Message-ID: <digest.9"),
        lambda raw: raw[:-40] + b"A" + raw[-39:],
        lambda raw: raw.replace(b"\r\nMIME-Version", b"\r\nSubject: forged\r\nMIME-Version"),
        lambda raw: raw.replace(b"\r\nMIME-Version", b"\r\nFrom: evil@evil.example\r\nMIME-Version"),
    ],
    ids=["header", "body", "added-subject", "added-from"],
)
def test_dkim_fails_after_tampering(signer: DkimSigner, tamper: object) -> None:
    raw = render_mail(make_mail(), signer)
    assert callable(tamper)
    changed = tamper(raw)
    assert changed != raw
    assert not verify(changed, signer)


@pytest.mark.parametrize(
    "forged",
    [
        b"List-Unsubscribe: <https://evil.example/unsubscribe>\r\n",
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
        b"Reply-To: evil@evil.example\r\n",
        b"Cc: victim@example.org\r\n",
        b"Content-Type: text/plain\r\n",
        b"MIME-Version: 1.0\r\n",
        b"Subject: forged\r\n",
    ],
    ids=["list-unsubscribe", "list-unsubscribe-post", "reply-to", "cc", "content-type", "mime-version", "subject"],
)
@pytest.mark.parametrize("where", ["top", "below-signature"])
def test_dkim_fails_when_a_header_is_prepended(signer: DkimSigner, forged: bytes, where: str) -> None:
    """A verifier reads the topmost instance of a header: one added above the signed ones must break the signature."""
    raw = render_mail(make_mail(), signer)
    assert verify(raw, signer)
    if where == "top":
        changed = forged + raw
    else:
        head, sep, rest = raw.partition(b"\r\nDate: ")
        changed = head + b"\r\n" + forged + sep[2:] + rest
    assert changed != raw
    assert not verify(changed, signer)


def test_dkim_oversigns_the_headers_a_forger_would_add(signer: DkimSigner) -> None:
    raw = render_mail(make_mail(), signer)
    sig = parse(raw)["DKIM-Signature"]
    h = re.sub(r"\s+", "", str(sig)).split("h=")[1].split(";")[0].split(":")
    for name in ("from", "to", "subject", "reply-to", "cc", "list-unsubscribe", "list-unsubscribe-post",
                 "content-type", "mime-version"):
        present = sum(1 for line in raw.split(b"\r\n\r\n")[0].split(b"\r\n")
                      if line.lower().startswith(name.encode() + b":"))
        assert h.count(name) == present + 1, (name, h)


def test_dkim_from_settings(tmp_path: Path) -> None:
    assert DkimSigner.from_settings(Settings()) is None
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "dkim.pem"
    pem.write_bytes(rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    s = Settings(dkim_domain="news.example.org", dkim_selector="sel2026", dkim_key_file=str(pem))
    signer = DkimSigner.from_settings(s)
    assert signer is not None and signer.algorithm == "rsa-sha256"
    assert verify(render_mail(make_mail(), signer), signer)
    # dkimpy's own Ed25519 format: a base64 seed
    import base64

    ed = ed25519.Ed25519PrivateKey.generate()
    seed = ed.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    raw_key = tmp_path / "ed.key"
    raw_key.write_text(base64.b64encode(seed).decode() + "\n")
    signer = DkimSigner.from_settings(s.with_(dkim_key_file=str(raw_key)))
    assert signer is not None and signer.algorithm == "ed25519-sha256"
    assert verify(render_mail(make_mail(), signer), signer)
    with pytest.raises(ConfigError, match="domain and selector"):
        DkimSigner.from_settings(Settings(dkim_key_file=str(pem)))
    with pytest.raises(ConfigError, match="missing.pem"):
        DkimSigner.from_settings(s.with_(dkim_key_file=str(tmp_path / "missing.pem")))
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(ConfigError, match="bad.pem"):
        DkimSigner.from_settings(s.with_(dkim_key_file=str(bad)))


# --- VERP -------------------------------------------------------------------


def test_verp_round_trip_and_forgery(settings: Settings) -> None:
    s = settings.with_(mail_sender_address="tin@news.example.org", mail_return_path_domain="bounces.example.org")
    addr = verp_address(s, 12345)
    assert re.fullmatch(r"bounce\+12345-[0-9a-f]{10}@bounces\.example\.org", addr)
    assert parse_verp(addr, s) == 12345
    assert parse_verp(f"<{addr.upper()}>", s) == 12345  # some MTAs change case
    mac = addr.split("-")[1].split("@")[0]
    assert parse_verp(addr.replace("12345", "12346"), s) is None
    assert parse_verp(f"bounce+12345-{'0' * 10}@bounces.example.org", s) is None
    assert parse_verp(f"bounce+12346-{mac}@bounces.example.org", s) is None
    assert parse_verp("someone@example.org", s) is None
    other = s.with_(secret_key=Secret("another-secret"))
    assert parse_verp(addr, other) is None
    assert verp_address(s.with_(mail_return_path_domain=""), 7).endswith("@news.example.org")
    with pytest.raises(ConfigError):
        verp_address(Settings(), 1)


# --- Transports ---------------------------------------------------------------


def test_memory_transport() -> None:
    t = MemoryTransport(fail=lambda f, r, m: TransportError("no", temporary=False, code=550) if "bad" in r[0] else None)
    raw = render_mail(make_mail())
    asyncio.run(t.send("b@x.org", ["an@example.org"], raw))
    with pytest.raises(TransportError) as info:
        asyncio.run(t.send("b@x.org", ["bad@example.org"], raw))
    assert info.value.code == 550 and not info.value.temporary
    assert t.sent == [("b@x.org", ["an@example.org"], raw)]


def test_maildir_transport_writes_readable_messages(tmp_path: Path) -> None:
    t = MaildirTransport(tmp_path / "md")
    mails = [make_mail(message_id=f"m{i}@news.example.org", to_addr=f"u{i}@example.org") for i in range(5)]

    async def go() -> None:
        for m in mails:
            await t.send(m.envelope_from, m.recipients, render_mail(m))
        await t.close()

    asyncio.run(go())
    assert list((tmp_path / "md" / "tmp").iterdir()) == []
    box = mailbox.Maildir(tmp_path / "md", factory=None, create=False)
    got = {}
    for key in box.iterkeys():
        msg = parse(box.get_bytes(key))
        got[msg["Message-ID"]] = msg
        assert msg["Return-Path"] == "<bounce+1-abc@news.example.org>"
        assert msg["Subject"] == SUBJECT_VI
        assert body_of(msg, "html") == HTML_VI
    assert sorted(got) == sorted(f"<m{i}@news.example.org>" for i in range(5))


def test_maildir_files_have_lf_line_endings_and_still_verify(tmp_path: Path, signer: DkimSigner) -> None:
    """Maildir is a local format: LF line ends, as an MDA writes them (mutt showed ^M on CRLF files)."""
    t = MaildirTransport(tmp_path / "md")
    mail = make_mail()
    raw = render_mail(mail, signer)
    path = t.write(mail.envelope_from, raw)
    data = path.read_bytes()
    assert b"\r" not in data
    assert data == b"Return-Path: <bounce+1-abc@news.example.org>\n" + raw.replace(b"\r\n", b"\n")
    msg = parse(data)
    assert msg["Subject"] == SUBJECT_VI and body_of(msg, "html") == HTML_VI
    assert verify(data, signer)  # a verifier reading the file canonicalises LF back to CRLF


def test_maildir_sends_in_flight_together_share_a_group_commit(tmp_path: Path) -> None:
    """Concurrent sends each end with their file durable in new/, and share the syncs (fewer commits than sends)."""
    t = MaildirTransport(tmp_path / "md")
    groups: list[int] = []
    publish = t._publish

    def counting(staged: list[Any], errors: list[OSError | None]) -> list[OSError | None]:
        groups.append(len(staged))
        return publish(staged, errors)

    t._publish = counting  # type: ignore[method-assign]
    mails = [make_mail(message_id=f"m{i}@news.example.org", to_addr=f"u{i}@example.org") for i in range(20)]

    async def go() -> None:
        await asyncio.gather(*(t.send(m.envelope_from, m.recipients, render_mail(m)) for m in mails))
        await t.close()

    asyncio.run(go())
    assert list((tmp_path / "md" / "tmp").iterdir()) == []
    box = mailbox.Maildir(tmp_path / "md", factory=None, create=False)
    got = sorted(parse(box.get_bytes(key))["Message-ID"] for key in box.iterkeys())
    assert got == sorted(f"<m{i}@news.example.org>" for i in range(20))
    assert sum(groups) == 20 and len(groups) < 20


def test_a_failed_group_commit_fails_each_of_its_sends_for_a_retry_and_leaves_no_file(tmp_path: Path) -> None:
    t = MaildirTransport(tmp_path / "md")
    raw = render_mail(make_mail())
    asyncio.run(t.send("a@b.org", ["c@d.org"], raw))
    [first] = (tmp_path / "md" / "new").iterdir()
    first.unlink()
    (tmp_path / "md" / "new").rmdir()
    (tmp_path / "md" / "new").write_text("not a directory")  # every rename into new/ now fails

    async def go() -> list[BaseException | None]:
        return await asyncio.gather(*(t.send("a@b.org", ["c@d.org"], raw) for _ in range(5)), return_exceptions=True)

    outcomes = asyncio.run(go())
    assert all(isinstance(o, TransportError) and o.temporary for o in outcomes), outcomes
    assert str(outcomes[0]) == f"maildir {tmp_path / 'md'}: cannot write a message: Not a directory"
    assert list((tmp_path / "md" / "tmp").iterdir()) == []


def test_maildir_unwritable_is_transport_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises((TransportError, OSError)):
        asyncio.run(MaildirTransport(blocker / "md").send("a@b.org", ["c@d.org"], b"x"))


def test_make_transport(settings: Settings) -> None:
    assert isinstance(make_transport(settings), MaildirTransport)
    assert isinstance(make_transport(settings, "memory"), MemoryTransport)
    assert isinstance(make_transport(settings.with_(smtp_host="127.0.0.1")), SmtpTransport)
    with pytest.raises(ConfigError, match="host"):
        make_transport(settings, "smtp")
    with pytest.raises(ConfigError, match="carrier-pigeon"):
        make_transport(settings, "carrier-pigeon")


def test_envelope_is_idna(settings: Settings) -> None:
    m = make_mail(to_addr="an@bücher.de", return_path="")
    assert m.recipients == ["an@xn--bcher-kva.de"]
    assert m.envelope_from == "tin@news.example.org"
    _ = UTC


def test_verp_domain_prefers_setting_then_list_sender(settings: Settings) -> None:
    s = settings.with_(mail_sender_address="news@localhost")
    assert verp_address(s, 7, "tin.example.org").endswith("@tin.example.org")
    assert verp_address(s, 7).endswith("@localhost")
    fixed = s.with_(mail_return_path_domain="bounces.example.org")
    assert verp_address(fixed, 7, "tin.example.org").endswith("@bounces.example.org")
    assert parse_verp(verp_address(s, 7, "tin.example.org"), s) == 7


# --- golden bytes -------------------------------------------------------------
# Fixed keys and a fixed clock: RSA PKCS#1 v1.5 and Ed25519 signatures are
# deterministic, so every byte of these messages is known. Any change to the
# rendering (a faster encoder, a spliced body, a new signer) must keep them.

GOLDEN_EMAIL = Path(__file__).parent / "golden" / "email"
GOLDEN_T = 1_795_000_000


def _golden_signer(kind: str) -> DkimSigner:
    from syndicate.mailer import load_key

    return DkimSigner("news.example.org", "sel2026", load_key((GOLDEN_EMAIL / f"{kind}.pem").read_bytes()))


GOLDEN_MAILS: dict[str, dict[str, object]] = {
    "digest-vi": {},
    "text-only": {"html": ""},
    "ascii": {"from_name": "Daily News", "to_name": "Bob Smith", "subject": "Hello world",
              "text": "Hello Bob,\n\nThe news.\n", "html": "<p>Hello Bob,</p>\n<p>The news.</p>\n"},
    "awkward-body": {"text": "a\r\nb\rc\n\n.leading dot\n  two  spaces \t\nto\u0301m\n\n\n",
                     "html": "<p>\t tab </p>\r\n\r\n", "to_name": ""},
    "empty-body": {"text": "", "html": ""},
}


@pytest.mark.parametrize("signed", ["none", "rsa", "ed25519"])
@pytest.mark.parametrize("name", sorted(GOLDEN_MAILS))
def test_golden_messages(name: str, signed: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import syndicate.mailer.dkim as dkim_module

    monkeypatch.setattr(dkim_module.time, "time", lambda: GOLDEN_T + 0.5)
    signer = None if signed == "none" else _golden_signer(signed)
    raw = render_mail(make_mail(**GOLDEN_MAILS[name]), signer)
    check_wire_form(raw)
    if signer is not None:
        assert verify(raw, signer)
    path = GOLDEN_EMAIL / f"{name}.{signed}.eml"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_bytes(raw)
    assert raw == path.read_bytes(), f"{path.name} differs from the golden file (UPDATE_GOLDEN=1 to accept)"


# --- the spliced body encoder -------------------------------------------------

from syndicate.mailer.body import BodyCache, body_b64  # noqa: E402
from syndicate.mailer.dkim import _relaxed_body, _relaxed_header  # noqa: E402

_EXAMPLES = int(__import__("os").environ.get("SYNDICATE_EXAMPLES", "200"))
# characters that stress each step: combining marks (NFC across a boundary),
# CR and LF (CRLF across a boundary), lone surrogates, 2-4 byte UTF-8
_TRICKY = st.sampled_from(["a", " ", ".", "\r", "\n", "\r\n", "ệ", "e\u0302", "\u0301", "\u0323", "\ud800", "😀",
                           "ᄀ", "ᅡ", "x" * 60])
# mostly starting with ASCII, so most examples take the spliced path (the rest test the fallback)
_piece = st.tuples(st.sampled_from(["", "a", "\n", " ", ".", "x", "ệ"]), st.lists(_TRICKY, max_size=12)).map(
    lambda t: t[0] + "".join(t[1]))
# a few long fixed runs, shared by every example so the cache is hit at many phases
_RUNS = ["<p>Đây là những tin nổi bật hôm nay.</p>\n" * 40, "Tin " + "chào buổi sáng, " * 150 + "\n",
         "\u0301 starts with a combining mark " * 30, "ends with CR " * 50 + "\r", "x" * 2000]
_fixed = st.one_of(_piece, st.sampled_from(_RUNS), st.tuples(_piece, st.sampled_from(_RUNS)).map("".join))
_SHARED_CACHE = BodyCache()


@hsettings(max_examples=_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_fixed, _piece), max_size=5), _fixed)
def test_spliced_body_equals_whole_body(pairs: list[tuple[str, str]], tail: str) -> None:
    parts = tuple(p for pair in pairs for p in pair) + (tail,)
    assert _SHARED_CACHE.encode(parts) == body_b64("".join(parts))


def test_spliced_body_is_really_spliced_for_a_digest() -> None:
    cache = BodyCache()
    fixed = ("Tin sáng\n\n", "\n\n" + "Đây là những tin nổi bật hôm nay.\n" * 200 + "Bỏ đăng ký: ", "\n")
    for name in ["Xin chào An,", "Xin chào Nguyễn Văn Bình,", "Hello,", ""]:
        parts = (fixed[0], name, fixed[1], f"https://news.example.org/u/{len(name)}tok", fixed[2])
        assert cache.encode(parts) == body_b64("".join(parts))
    assert (cache.spliced, cache.fallbacks) == (4, 0)
    # a value that starts with a combining mark could compose with the run before it: encoded whole
    assert cache.encode(("Tin e", "\u0302 x", fixed[1])) == body_b64("Tin e\u0302 x" + fixed[1])
    assert cache.fallbacks == 1


def test_spliced_body_cache_stays_bounded() -> None:
    cache = BodyCache(max_bytes=100_000)
    for i in range(50):
        run = f"group {i} " + "nội dung " * 2000
        for name in ("An", "Bình"):
            parts = ("", name, run)
            assert cache.encode(parts) == body_b64("".join(parts))
    assert cache._size < 100_000 + 2 * 40_000


@hsettings(max_examples=_EXAMPLES, deadline=None)
@given(st.lists(st.sampled_from([b"a", b" ", b"\t", b"\r\n", b"\r", b"\n", b"  \r\n"]), max_size=30).map(b"".join))
def test_relaxed_body_matches_rfc6376(body: bytes) -> None:
    import re as re_

    # RFC 6376 3.4.4, written out plainly as the reference
    ref = re_.sub(rb"[ \t]+", b" ", re_.sub(rb"[ \t]+\r\n", b"\r\n", body)).rstrip(b"\r\n")
    assert _relaxed_body(body) == (ref + b"\r\n" if ref else b"")


@hsettings(max_examples=_EXAMPLES, deadline=None)
@given(st.lists(st.sampled_from(["a", "B", " ", "\t", "\r\n ", "\r\n\t", ":", "  "]), max_size=20).map("".join))
def test_relaxed_header_matches_rfc6376(value: str) -> None:
    import re as re_

    line = "X-Test:" + value
    name, _, v = line.partition(":")
    assert _relaxed_header(line) == name.lower() + ":" + re_.sub(r"[ \t]+", " ", v.replace("\r\n", "")).strip()


@pytest.mark.parametrize("signed", ["none", "rsa", "ed25519"])
def test_render_with_parts_gives_the_golden_bytes(signed: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import syndicate.mailer.dkim as dkim_module

    monkeypatch.setattr(dkim_module.time, "time", lambda: GOLDEN_T + 0.5)
    signer = None if signed == "none" else _golden_signer(signed)
    greeting, name = "Xin chào Nguyễn Văn An,", "Nguyễn Văn An"
    text_parts = ("", greeting, TEXT_VI[len(greeting):])
    html_parts = ("<p>Xin chào <b>", name, HTML_VI[len("<p>Xin chào <b>" + name):])
    assert "".join(text_parts) == TEXT_VI and "".join(html_parts) == HTML_VI
    cache = BodyCache()
    mail = make_mail(text_parts=text_parts, html_parts=html_parts)
    for _ in range(2):  # the second time from the cache
        raw = render_mail(mail, signer, cache)
        assert raw == (GOLDEN_EMAIL / f"digest-vi.{signed}.eml").read_bytes()
    assert cache.spliced == 4
    with pytest.raises(ValueError, match="text_parts do not join"):
        make_mail(text_parts=("x",))


# --- the SMTP hand-off without re-normalising ---------------------------------

from syndicate.mailer.transports import wire_ready  # noqa: E402


def test_wire_ready_passes_rendered_bytes_through_and_fixes_the_rest() -> None:
    from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

    raw = render_mail(make_mail())
    assert wire_ready(raw) is raw  # no copy, no rewrite
    plain = bytes(raw)
    assert type(plain) is bytes and wire_ready(plain) is plain  # the same form, found by scanning
    for messy in [b"a\nb", b".x\r\ny", b"a\r\n.b\r\n", b"a\rb\r\n", b"a\r\n\n", b"", b"a"]:
        assert wire_ready(messy) == PERIOD_REGEX.sub(b"..", normalize_message_line_endings(messy))


@pytest.mark.parametrize("signed", ["none", "rsa", "ed25519"])
@pytest.mark.parametrize("name", sorted(GOLDEN_MAILS))
def test_what_render_mail_marks_wire_ready_really_is(name: str, signed: str) -> None:
    """The WireMessage mark skips the scans: every rendered message must pass them anyway."""
    from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

    from syndicate.mailer import WireMessage

    raw = render_mail(make_mail(**GOLDEN_MAILS[name]), None if signed == "none" else _golden_signer(signed))
    assert type(raw) is WireMessage
    body = bytes(raw).split(b"\r\n\r\n", 1)[1]
    assert _relaxed_body(body) == body  # the signer hashes render_mail's body as it is (canonical=True)
    assert PERIOD_REGEX.sub(b"..", normalize_message_line_endings(bytes(raw))) == raw
    assert wire_ready(bytes(raw)) == raw


class _Recorder:
    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []
        self.reject: set[str] = set()

    async def handle_RCPT(self, server: object, session: object, envelope: object, address: str,
                          options: object) -> str:
        if address in self.reject:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)  # type: ignore[attr-defined]
        return "250 OK"

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))  # type: ignore[attr-defined]
        return "250 OK"


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_smtp_hand_off_is_byte_exact_and_tells_when_data_starts(settings: Settings, loop: str) -> None:
    from loopback import smtp_server

    handler = _Recorder()
    handler.reject.add("gone@example.org")
    signer = _golden_signer("rsa")
    raw = render_mail(make_mail(), signer)
    messy = b"Subject: x\n\n.starts with a dot\nbare LF\n"
    with smtp_server(handler) as port:
        s = settings.with_(smtp_host="127.0.0.1", smtp_port=port, smtp_pool_size=1,
                           mail_sender_address="tin@news.example.org")
        calls: list[str] = []

        def note(what: str) -> Any:
            async def on_data() -> None:
                calls.append(what)
            return on_data

        async def go() -> None:
            t = SmtpTransport(s)
            try:
                await t.send("bounce+1-abc@news.example.org", ["an@example.org"], raw,
                             on_data=note("ok"))
                await t.send("bounce+2-abc@news.example.org", ["an@example.org"], messy)
                with pytest.raises(TransportError, match="SMTP refused gone@example.org: 550 5.1.1 no such user") as info:
                    await t.send("bounce+3-abc@news.example.org", ["gone@example.org"], raw,
                                 on_data=note("refused"))
                assert info.value.temporary is False and info.value.code == 550
                # the refused transaction was reset: the same connection carries the next message
                await t.send("bounce+4-abc@news.example.org", ["an@example.org"], raw)
                assert t.opened == 1
                assert type(asyncio.get_running_loop()).__module__.split(".")[0] == loop
            finally:
                await t.close()

        from syndicate.mailer.loop import run

        run(go(), loop)
    assert calls == ["ok"]  # never called for a message the relay refused before DATA
    assert [r[0] for r in handler.received] == ["bounce+1-abc@news.example.org", "bounce+2-abc@news.example.org",
                                                "bounce+4-abc@news.example.org"]
    assert handler.received[0][2] == raw and verify(handler.received[0][2], signer)
    assert handler.received[1][2] == b"Subject: x\r\n\r\n.starts with a dot\r\nbare LF\r\n"


def test_personalised_digest_parts_render_the_same_bytes_spliced() -> None:
    from syndicate.digest import GREETING, PREFERENCES, UNSUBSCRIBE, RenderedDigest, personalise
    from syndicate.models import NewsList

    body = "".join(f"<h2>Tin số {i}: khởi nghiệp ở Thành phố Hồ Chí Minh</h2>\n<p>Tóm tắt {i}.</p>\n" for i in range(80))
    html = f"<p>{GREETING}</p>\n{body}<a href=\"{UNSUBSCRIBE}\">Huỷ</a> · <a href=\"{PREFERENCES}\">Tuỳ chọn</a>\n"
    text = f"{GREETING}\n\n{body}\nHuỷ: {UNSUBSCRIBE}\nTuỳ chọn: {PREFERENCES}\n"
    r = RenderedDigest(NewsList(slug="tin-sang", name="Tin sáng", id=1), "2026-11-24", "", "Tin sáng", html, text,
                       80, "", "vi")
    signer = _golden_signer("ed25519")
    cache = BodyCache()
    for i, name in enumerate(["Nguyễn Văn An", "Bình", "", "<b>Lê & Chi</b>", "Emma Schmidt"]):
        p = personalise(r, name, f"https://news.example.org/u/{i}.tok{i * 7}", f"https://news.example.org/p/{i}")
        assert "".join(p.text_parts) == p.text and "".join(p.html_parts) == p.html
        spliced = make_mail(text=p.text, html=p.html, text_parts=p.text_parts, html_parts=p.html_parts)
        plain = make_mail(text=p.text, html=p.html)
        assert render_mail(spliced, signer, cache) == render_mail(plain, signer)
    assert (cache.spliced, cache.fallbacks) == (10, 0)


# --- headers of what the sender builds -------------------------------------------


def _store_with_a_list(store: Any, settings: Settings) -> tuple[int, int]:
    """One list, one confirmed and one pending subscription, three articles: (confirmed id, pending id)."""
    from syndicate.models import Article, NewsList
    from syndicate.subscribers import subscribe

    t0 = datetime(2026, 11, 23, tzinfo=UTC)
    store.create_list(NewsList(slug="tin-sang", name="Tin sáng", sender_address="tin@news.example.org"))
    done = subscribe(store, settings, "lan@example.org", "tin-sang", name="Lan", confirmed=True, now=t0)
    waiting = subscribe(store, settings, "binh@example.org", "tin-sang", name="Bình")
    store.upsert_articles([Article(guid=f"a{i}", title=f"Tin {i}", slug=f"a-{i}", published=t0 + timedelta(hours=i),
                                   summary="Tóm tắt.", category="Xã hội") for i in range(1, 4)])
    assert done.subscription.id is not None and waiting.subscription.id is not None
    return done.subscription.id, waiting.subscription.id


def test_digests_and_notices_say_they_are_automatic(store: Any, settings: Settings) -> None:
    """Auto-Submitted (RFC 3834) and X-Auto-Response-Suppress (Exchange) keep out-of-office replies away."""
    from syndicate.sender import deliver_notices, run_send

    _, pending_id = _store_with_a_list(store, settings)
    s = settings.with_(mail_feedback_id="syndicate")
    store.queue_notices("confirm", [pending_id])
    notices = MemoryTransport()
    deliver_notices(store, s, [pending_id], transport=notices)
    digests = MemoryTransport()
    run_send(store, s, digests, now=datetime(2026, 11, 24, 1, tzinfo=UTC))
    assert len(notices.sent) == 1 and len(digests.sent) == 1
    for kind, (_f, _r, raw) in (("confirm", notices.sent[0]), ("digest", digests.sent[0])):
        msg = parse(raw)
        raw.decode("ascii")  # (an unsubscribe URL cannot fold: header lines may pass 78, never 998)
        assert max(map(len, raw.split(b"\r\n"))) <= 998
        assert msg["Auto-Submitted"] == "auto-generated", kind
        assert msg["X-Auto-Response-Suppress"] == "All", kind
        assert msg["Feedback-ID"] == f"tin-sang:{kind}:syndicate"
        assert raw.count(b"\r\nAuto-Submitted:") == 1 and raw.count(b"\r\nX-Auto-Response-Suppress:") == 1


# --- several DKIM keys ------------------------------------------------------------


def _verify_all(raw: bytes, records: dict[bytes, bytes]) -> list[tuple[bytes, bool]]:
    """(d=, verified) for every DKIM-Signature of ``raw``, each checked by dkimpy against ``records``."""
    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        return records[name]

    d = dkim.DKIM(raw)
    count = len(re.findall(rb"(?mi)^DKIM-Signature:", raw))
    out = []
    for i in range(count):
        ok = bool(d.verify(idx=i, dnsfunc=dnsfunc))
        assert d.domain is not None
        out.append((d.domain, ok))
    return out


def _record(signer: DkimSigner) -> tuple[bytes, bytes]:
    return f"{signer.selector}._domainkey.{signer.domain}.".encode(), signer.dns_record().encode()


def test_rsa_and_ed25519_together_give_two_signatures_that_both_verify() -> None:
    from syndicate.mailer import DkimKeyring

    rsa_signer = DkimSigner("news.example.org", "r1", rsa.generate_private_key(65537, 2048))
    ed_signer = DkimSigner("news.example.org", "e1", ed25519.Ed25519PrivateKey.generate())
    ring = DkimKeyring([rsa_signer, ed_signer])
    raw = render_mail(make_mail(), ring)
    check_wire_form(raw)
    head = raw.split(b"\r\n\r\n")[0]
    assert re.findall(rb"(?m)^DKIM-Signature: v=1; a=([a-z0-9-]+);", head) == [b"rsa-sha256", b"ed25519-sha256"]
    records = dict([_record(rsa_signer), _record(ed_signer)])
    assert _verify_all(raw, records) == [(b"news.example.org", True), (b"news.example.org", True)]
    assert parse(raw)["Subject"] == SUBJECT_VI
    forged = b"List-Unsubscribe: <https://evil.example/u>\r\n" + raw
    assert _verify_all(forged, records) == [(b"news.example.org", False), (b"news.example.org", False)]
    # a receiver that knows only RSA still has a signature it can check
    only_rsa = dict([_record(rsa_signer)])
    assert bool(dkim.DKIM(raw).verify(idx=0, dnsfunc=lambda n, timeout=5: only_rsa[n]))


def test_each_from_domain_is_signed_with_its_own_key() -> None:
    from syndicate.mailer import DkimKeyring

    main_key = DkimSigner("example.org", "s1", ed25519.Ed25519PrivateKey.generate())
    sub_key = DkimSigner("sport.example.org", "s1", ed25519.Ed25519PrivateKey.generate())
    other = DkimSigner("báo.vn", "s1", ed25519.Ed25519PrivateKey.generate())
    ring = DkimKeyring([main_key, sub_key, other])
    records = dict(map(_record, (main_key, sub_key, other)))
    for from_addr, d in [("tin@news.example.org", b"example.org"), ("tin@sport.example.org", b"sport.example.org"),
                         ("tin@live.sport.example.org", b"sport.example.org"), ("tin@báo.vn", b"xn--bo-mia.vn"),
                         ("tin@unrelated.example", b"example.org")]:  # nothing aligns: the first key's domain
        raw = render_mail(make_mail(from_addr=from_addr, from_name=""), ring)
        assert _verify_all(raw, records) == [(d, True)], from_addr
    # a bare From address (no display name) is read too
    assert ring.signers_for("SPORT.example.org.") == (sub_key,)


def test_configured_keys_sign_what_the_sender_sends(store: Any, settings: Settings, tmp_path: Path) -> None:
    """[dkim] RSA + [[dkim.keys]] Ed25519 for one domain, and a second list's own domain, through `send`."""
    from syndicate.config import load_settings
    from syndicate.mailer.dkimkeys import generate_key
    from syndicate.models import NewsList
    from syndicate.sender import run_send
    from syndicate.subscribers import subscribe

    for name, kind in (("rsa.pem", "rsa"), ("ed.pem", "ed25519"), ("other.pem", "ed25519")):
        (tmp_path / name).write_bytes(generate_key(kind))
    cfg = tmp_path / "syndicate.toml"
    cfg.write_text(f"""
[dkim]
domain = "news.example.org"
selector = "r1"
key_file = "{tmp_path / 'rsa.pem'}"

[[dkim.keys]]
domain = "news.example.org"
selector = "e1"
key_file = "{tmp_path / 'ed.pem'}"

[[dkim.keys]]
domain = "other.example.net"
selector = "o1"
key_file = "{tmp_path / 'other.pem'}"
""")
    loaded = load_settings(str(cfg), env={})
    s = settings.with_(dkim_domain=loaded.dkim_domain, dkim_selector=loaded.dkim_selector,
                       dkim_key_file=loaded.dkim_key_file, dkim_keys=loaded.dkim_keys)
    from syndicate.mailer import DkimKeyring

    ring = DkimKeyring.from_settings(s)
    assert ring is not None and len(ring.signers) == 3
    records = dict(map(_record, ring.signers))
    _store_with_a_list(store, settings)
    store.create_list(NewsList(slug="the-thao", name="Thể thao", sender_address="sport@other.example.net"))
    subscribe(store, s, "lan@example.org", "the-thao", name="Lan", confirmed=True,
              now=datetime(2026, 11, 23, tzinfo=UTC))
    sent = MemoryTransport()
    run_send(store, s, sent, now=datetime(2026, 11, 24, 1, tzinfo=UTC))
    by_from = {parse(raw)["From"].addresses[0].domain: _verify_all(raw, records) for _f, _r, raw in sent.sent}
    assert by_from == {"news.example.org": [(b"news.example.org", True), (b"news.example.org", True)],
                       "other.example.net": [(b"other.example.net", True)]}


def test_the_event_loop_setting() -> None:
    from syndicate.config import load_settings
    from syndicate.mailer.loop import loop_factory, loop_name

    assert loop_name("auto") == "uvloop" and loop_name("asyncio") == "asyncio"  # uvloop is a dependency
    assert load_settings(env={"SYNDICATE_SEND_LOOP": "asyncio"}).send_loop == "asyncio"
    with pytest.raises(ConfigError) as info:
        load_settings(env={"SYNDICATE_SEND_LOOP": "trio"})
    assert str(info.value) == "environment variable SYNDICATE_SEND_LOOP: 'send_loop' is 'trio'; choose one of auto, uvloop, asyncio"
    with pytest.raises(ConfigError, match="choose one of auto, uvloop, asyncio"):
        loop_factory("trio")
