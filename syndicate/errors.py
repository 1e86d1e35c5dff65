"""The exception tree. Every message says what was wrong and how to fix it.

    SyndicateError              base: the CLI prints ``error: <message>``, exit 1
    ├── ConfigError             a missing or invalid setting (names key and file)
    ├── StoreError              the database cannot be opened or is inconsistent
    │   └── NotFound            a named article, list or subscriber does not exist
    ├── InputError              bad input from a user or a file (names the input)
    │   ├── ParseError          a source file that cannot be read as its format
    │   └── AddressError        a string that is not a usable email address
    ├── TokenError              a signed link that is forged, expired or misused
    ├── TransportError          a mail transport failed (carries ``temporary``)
    └── LockError               another run holds the lock (exit code 75)
"""

from __future__ import annotations


class SyndicateError(Exception):
    """Base class: anything syndicate raises on purpose."""

    exit_code = 1


class ConfigError(SyndicateError):
    """A setting is missing or invalid; the message names the key and file."""

    exit_code = 78  # EX_CONFIG


class StoreError(SyndicateError):
    """The database cannot be opened, migrated or is inconsistent."""


class NotFound(StoreError):
    """A named article, list or subscriber does not exist."""


class InputError(SyndicateError):
    """Bad input from a user or a file; the message names the input."""

    exit_code = 65  # EX_DATAERR


class ParseError(InputError):
    """A source file could not be parsed as its format."""


class AddressError(InputError):
    """A string is not a usable email address."""


class TokenError(SyndicateError):
    """A signed token is forged, expired, or used for another purpose."""


class TransportError(SyndicateError):
    """A mail transport failed. ``temporary`` says whether a retry may succeed."""

    def __init__(self, message: str, *, temporary: bool = True, code: int | None = None):
        super().__init__(message)
        self.temporary = temporary
        self.code = code


class LockError(SyndicateError):
    """Another run holds the lock; try again later."""

    exit_code = 75  # EX_TEMPFAIL
