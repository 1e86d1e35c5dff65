"""The API's notice sender: one thread, one event loop and one transport for its life, batches of queued rows;
in serve, that sender runs in a child process (ProcessNoticeSender)."""

from __future__ import annotations

import email
import email.policy
import pickle
import subprocess
import sys
import time
from pathlib import Path

from loopback import SmtpSink, process_gone, smtp_server

from syndicate import subscribers as lib
from syndicate.api.mail import NoticeSender, ProcessNoticeSender
from syndicate.config import Settings
from syndicate.models import NewsList
from syndicate.sender.notices import notice_journal_dir
from syndicate.store import Store


class SessionSink(SmtpSink):
    """An SMTP sink that also notes which SMTP session (connection) carried each message."""

    def __init__(self) -> None:
        super().__init__()
        self.sessions: list[int] = []

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:  # noqa: N802
        self.sessions.append(id(session))
        return await super().handle_DATA(server, session, envelope)


def queue_confirmations(store: Store, settings: Settings, first: int, count: int) -> list[int]:
    ids = []
    for n in range(first, first + count):
        r = lib.subscribe(store, settings, f"p{n}@example.org", "tin-sang", name=f"Người {n}", source="api")
        assert r.subscription.id is not None
        [queued] = store.queue_notices("confirm", [r.subscription.id])
        assert queued.delivery_id is not None
        ids.append(queued.delivery_id)
    return ids


def test_batches_go_out_over_the_same_smtp_connections_and_each_message_id_is_recorded(
        settings: Settings, store: Store) -> None:
    lib.create_list(store, NewsList(slug="tin-sang", name="Tin sáng"))
    sink = SessionSink()
    with smtp_server(sink) as port:
        s = settings.with_(smtp_host="127.0.0.1", smtp_port=port, smtp_pool_size=1)
        sender = NoticeSender(s)
        try:
            first = queue_confirmations(store, s, 0, 6)
            sender.send(first)
            assert sender.wait_idle(120)
            sink.wait_for(6)
            second = queue_confirmations(store, s, 6, 4)
            sender.send(second)
            assert sender.wait_idle(120)
            sink.wait_for(10)
        finally:
            sender.close()
    assert len(set(sink.sessions)) == 1  # one connection, kept open between the batches (closed with the sender)
    by_id = {}
    for _, rcpts, raw in sink.messages:
        by_id[email.message_from_bytes(raw, policy=email.policy.default)["Message-ID"]] = rcpts
    assert sorted(r for rcpts in by_id.values() for r in rcpts) == sorted(f"p{n}@example.org" for n in range(10))
    for did in first + second:
        d = store.get_delivery(did)
        consent = store.consent_for(d.subscription_id)
        assert consent is not None and d.status == "sent"
        assert consent.confirmation_message_id == d.message_id and d.message_id in by_id
    assert list(notice_journal_dir(s).glob("*.log")) == []
    assert not Path(s.mail_maildir).exists()  # SMTP set: nothing went to the Maildir


def maildir_files(settings: Settings) -> int:
    new = Path(settings.mail_maildir) / "new"
    return len(list(new.iterdir())) if new.is_dir() else 0


def test_the_sender_process_sends_each_row_once_and_a_dead_one_is_replaced(settings: Settings, store: Store) -> None:
    lib.create_list(store, NewsList(slug="tin-sang", name="Tin sáng"))
    sender = ProcessNoticeSender(settings)
    try:
        first = queue_confirmations(store, settings, 0, 5)
        sender.send(first)
        assert sender.wait_idle(120)
        assert maildir_files(settings) == 5
        assert all(store.get_delivery(d).status == "sent" for d in first)
        child = sender._proc
        assert child is not None
        child.kill()  # the sending process dies between batches
        child.wait(120)
        second = queue_confirmations(store, settings, 5, 3)
        sender.send(second)  # a new child takes them
        assert sender.wait_idle(120)
        assert sender._proc is not None and sender._proc.pid != child.pid
    finally:
        sender.close()
    assert maildir_files(settings) == 8  # every row once, none twice
    for did in first + second:
        d = store.get_delivery(did)
        consent = store.consent_for(d.subscription_id)
        assert d.status == "sent" and consent is not None and consent.confirmation_message_id == d.message_id


SERVER = """
import pickle, sys, time
from syndicate.api.mail import ProcessNoticeSender
settings, ids = pickle.loads(sys.stdin.buffer.read())
sender = ProcessNoticeSender(settings)
sender.send(ids)
assert sender.wait_idle(120)
print(sender._proc.pid, flush=True)
time.sleep(3600)  # killed by the test long before
"""


def test_the_sender_process_ends_when_the_server_is_killed(settings: Settings, store: Store) -> None:
    lib.create_list(store, NewsList(slug="tin-sang", name="Tin sáng"))
    ids = queue_confirmations(store, settings, 0, 2)
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert server.stdin is not None and server.stdout is not None
    server.stdin.write(pickle.dumps((settings, ids)))
    server.stdin.close()
    child = int(server.stdout.readline())
    server.stdout.close()
    server.kill()  # SIGKILL: no shutdown runs, only the kernel closes the server's end
    server.wait(120)
    deadline = time.monotonic() + 120
    while not process_gone(child):  # the child reads EOF, finishes what it has and exits: no orphan left behind
        assert time.monotonic() < deadline, "the notice sender outlived its server"
        time.sleep(0.05)
    assert maildir_files(settings) == 2
