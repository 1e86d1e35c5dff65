"""The suppression promise through the API: a Hypothesis state machine over a real store file and the whole app.

Any order of creates (write and admin tokens), confirmations by the person,
unsubscribes, erasures and admin resubscribes: an address that left or was
erased is never active again unless an admin resubscribed it (or, before it
left, the person confirmed); every answer is the one the model predicts
(201/200, 422 in the CLI's words, 404), and GET shows the modelled status.
``SYNDICATE_EXAMPLES=N`` runs N examples instead of the default 10.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from test_api import Api, serving

from syndicate import subscribers
from syndicate.api.auth import create_token
from syndicate.config import Secret, Settings
from syndicate.models import NewsList
from syndicate.store import open_store

EXAMPLES = int(os.environ.get("SYNDICATE_EXAMPLES", "10"))
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
ADDRESSES = ["an@example.org", "Binh@example.org", "chi@ví-dụ.vn"]
address = st.sampled_from(ADDRESSES)


class ApiConsent(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(dir=SCRATCH))
        self.settings = Settings(db=str(self.dir / "s.db"), secret_key=Secret("state-secret-key-0123456789-abcdefgh"),
                                 base_url="https://news.example.org", mail_maildir=str(self.dir / "maildir"),
                                 feeds_out=str(self.dir / "site"), api_rate=0.0, api_send_at_once=False,
                                 source="tests")
        self.store = open_store(self.settings.db)
        subscribers.create_list(self.store, NewsList(slug="tin-sang", name="Tin sáng"))
        self.write = create_token(self.store, "w", "write")[1]
        self.admin = create_token(self.store, "a", "admin")[1]
        self._serving = serving(self.settings)
        self.api = Api(self._serving.__enter__(), self.settings)
        self.model: dict[str, str] = {}  # address -> pending | active | unsubscribed | erased

    def teardown(self) -> None:
        self._serving.__exit__(None, None, None)
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def post(self, token: str, body: dict[str, object]) -> tuple[int, dict[str, object]]:
        r = self.api.call("POST", "/subscribers", token, json={"list": "tin-sang", **body})
        return r.status_code, r.json()

    @rule(who=address)
    def create(self, who: str) -> None:
        state = self.model.get(who)
        code, body = self.post(self.write, {"email": who})
        if state in ("unsubscribed", "erased"):
            assert code == 422, body
            assert body["error"]["field"] == "email"  # type: ignore[index]
            return
        assert code == (201 if state is None else 200), body
        self.model[who] = state or "pending"

    @rule(who=address)
    def create_confirmed(self, who: str) -> None:
        state = self.model.get(who)
        code, body = self.post(self.admin, {"email": who, "confirmed": True})
        if state in ("unsubscribed", "erased"):
            assert code == 422, body
            return
        assert code in (200, 201), body
        self.model[who] = "active"

    @rule(who=address)
    def admin_resubscribe(self, who: str) -> None:
        code, body = self.post(self.admin, {"email": who, "confirmed": True, "resubscribe": True})
        assert code in (200, 201), body
        self.model[who] = "active"

    @rule(who=address)
    def person_confirms(self, who: str) -> None:
        if self.model.get(who) != "pending":
            return
        person = self.store.get_subscriber(subscribers.normalize_address(who))
        nl = self.store.get_list("tin-sang")
        assert person.id is not None and nl.id is not None
        token = subscribers.make_token(self.settings, "confirm", person.id, nl.id, person.email)
        subscribers.confirm(self.store, self.settings, token)
        self.model[who] = "active"

    @rule(who=address)
    def unsubscribe(self, who: str) -> None:
        state = self.model.get(who)
        r = self.api.call("POST", f"/subscribers/{who}/unsubscribe", self.write, json={"list": "tin-sang"})
        if state in (None, "erased"):
            assert r.status_code == 404, r.text
            return
        assert r.status_code == 200, r.text
        self.model[who] = "unsubscribed"

    @rule(who=address)
    def erase(self, who: str) -> None:
        state = self.model.get(who)
        r = self.api.call("DELETE", f"/subscribers/{who}", self.admin)
        if state in (None, "erased"):
            assert r.status_code == 404, r.text
            return
        assert r.status_code == 200, r.text
        self.model[who] = "erased"

    @invariant()
    def statuses_are_the_model_s(self) -> None:
        for who in ADDRESSES:
            state = self.model.get(who)
            r = self.api.call("GET", f"/subscribers/{who}", self.write)
            if state in (None, "erased"):
                assert r.status_code == 404, (who, state, r.text)
                continue
            assert [s["status"] for s in r.json()["subscriptions"]] == [state], (who, r.text)


ApiConsent.TestCase.settings = hsettings(max_examples=EXAMPLES, stateful_step_count=20, deadline=None)
test_api_consent = ApiConsent.TestCase
