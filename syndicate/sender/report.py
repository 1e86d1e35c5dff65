"""What one run did: :class:`SendReport`, its summary line and its exit code."""

from __future__ import annotations

from dataclasses import dataclass, field

#: ``syndicate send`` exit codes (also in its --help and the README).
EXIT_OK = 0  # every due message was sent (or nothing was due)
EXIT_FAILED = 1  # a message failed for good, or the run stopped on an error (a full disk, ...)
EXIT_DEFERRED = 3  # nothing failed, but some messages wait for a later run (retry, SIGTERM, relay down)
EXIT_UNKNOWN = 4  # nothing failed, but some messages are `unknown`: the relay may have them
EXIT_LOCKED = 75  # another run holds the lock (EX_TEMPFAIL)


@dataclass
class SendReport:
    """What one run did; :meth:`summary` is the line cron mails to the admin."""

    run_id: str
    queued: int = 0
    skipped: int = 0
    sent: int = 0
    failed: int = 0
    retry_later: int = 0
    unknown: int = 0
    recovered: int = 0  # sent by a run that died before recording it
    purged: int = 0  # pending subscriptions never confirmed in time, removed by this run
    given_back: int = 0  # claimed but never started (SIGTERM, relay down, storage error): queued again
    left: int = 0  # due rows still queued when the run stopped early
    stopped: str = ""  # why the run stopped early: "SIGTERM", "the relay is unreachable", ...
    fatal: str = ""  # what stopped the run: the path and cause of a storage error, or an unexpected error
    dry_run: bool = False
    planning_seconds: float = 0.0
    sending_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_OK

    @property
    def exit_code(self) -> int:
        """0 all sent, 1 failed or storage error, 4 unknown, 3 deferred.

        Example:
            >>> [SendReport("r", sent=3).exit_code, SendReport("r", retry_later=1).exit_code]
            [0, 3]
        """
        if self.dry_run:
            return EXIT_OK
        if self.failed or self.fatal:
            return EXIT_FAILED
        if self.unknown:
            return EXIT_UNKNOWN
        if self.retry_later or self.given_back or self.left or self.stopped:
            return EXIT_DEFERRED
        return EXIT_OK

    def summary(self) -> str:
        """Example:
        >>> SendReport("r", sent=1234, failed=2, skipped=10, retry_later=3).summary()
        'sent 1,234, failed 2, skipped 10, retry later 3'
        """
        if self.dry_run:
            return f"dry run: would send {self.queued:,}, skip {self.skipped:,} (nothing written)"
        text = f"sent {self.sent:,}, failed {self.failed:,}, skipped {self.skipped:,}, retry later {self.retry_later:,}"
        if self.unknown:
            text += f", unknown {self.unknown:,} (not resent; see `syndicate outbox retry --unknown`)"
        if self.stopped:
            text += f"; stopped early ({self.stopped}), {self.left:,} left for the next run"
        if self.recovered:
            text += f"; recorded {self.recovered:,} sent by an interrupted run"
        if self.purged:
            text += f"; purged {self.purged:,} never confirmed in time"
        return text

    def as_dict(self) -> dict[str, object]:
        return {
            "run_id": self.run_id, "queued": self.queued, "sent": self.sent, "failed": self.failed,
            "skipped": self.skipped, "retry_later": self.retry_later, "unknown": self.unknown, "recovered": self.recovered,
            "purged": self.purged, "given_back": self.given_back, "left": self.left, "stopped": self.stopped,
            "fatal": self.fatal, "exit_code": self.exit_code,
            "dry_run": self.dry_run, "planning_seconds": round(self.planning_seconds, 3),
            "sending_seconds": round(self.sending_seconds, 3), "errors": self.errors[:20],
        }
