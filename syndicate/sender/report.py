"""What one run did: :class:`SendReport`."""

from __future__ import annotations

from dataclasses import dataclass, field


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
    dry_run: bool = False
    planning_seconds: float = 0.0
    sending_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.unknown == 0

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
        if self.recovered:
            text += f"; recorded {self.recovered:,} sent by an interrupted run"
        if self.purged:
            text += f"; purged {self.purged:,} never confirmed in time"
        return text

    def as_dict(self) -> dict[str, object]:
        return {
            "run_id": self.run_id, "queued": self.queued, "sent": self.sent, "failed": self.failed,
            "skipped": self.skipped, "retry_later": self.retry_later, "unknown": self.unknown, "recovered": self.recovered,
            "purged": self.purged,
            "dry_run": self.dry_run, "planning_seconds": round(self.planning_seconds, 3),
            "sending_seconds": round(self.sending_seconds, 3), "errors": self.errors[:20],
        }
