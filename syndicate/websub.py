"""WebSub publish pings: every changed feed at once, one short deadline, failures as warnings."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable

from .config import Settings


def _ping_one(hub: str, url: str, timeout: float) -> str | None:
    """One WebSub publish POST; an error message, or None when the hub took it."""
    body = urllib.parse.urlencode({"hub.mode": "publish", "hub.url": url}).encode("ascii")
    request = urllib.request.Request(
        hub, data=body, method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "syndicate"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - admin-set URL
            response.read(65536)
        return None
    except urllib.error.HTTPError as exc:
        exc.close()
        return f"hub {hub} refused the ping for {url}: HTTP {exc.code} (check [feeds] hub_url)"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"hub {hub} unreachable for {url}: {reason} (check [feeds] hub_url)"


def ping_hub(settings: Settings, urls: Iterable[str], deadline: float | None = None) -> tuple[list[str], list[str]]:
    """WebSub publish: POST ``hub.mode=publish&hub.url=<feed>`` to the hub, for all feeds at once.

    The pings run concurrently and the whole round gets ``deadline`` seconds
    (default: ``[feeds] hub_timeout``);
    a ping still unanswered then is reported and left behind (on a daemon
    thread, so it never holds up the process). Returns (pinged urls, warning
    messages); a failing hub never undoes or fails a publish.
    """
    hub = settings.feeds_hub_url
    deadline = max(0.1, settings.feeds_hub_timeout if deadline is None else deadline)
    targets = list(dict.fromkeys(urls))
    if not hub or not targets:
        return [], []
    results: dict[str, str | None] = {}
    lock = threading.Lock()

    def run(url: str) -> None:
        outcome = _ping_one(hub, url, deadline)
        with lock:
            results[url] = outcome

    threads = [threading.Thread(target=run, args=(url,), daemon=True, name="websub-ping") for url in targets]
    for thread in threads:
        thread.start()
    ends = time.monotonic() + deadline
    for thread in threads:
        thread.join(max(0.0, ends - time.monotonic()))
    pinged: list[str] = []
    problems: list[str] = []
    with lock:
        for url in targets:
            if url not in results:
                problems.append(f"hub {hub} did not answer the ping for {url} within {deadline:g} s (check [feeds] hub_url)")
            elif results[url] is None:
                pinged.append(url)
            else:
                problems.append(str(results[url]))
    return pinged, problems
