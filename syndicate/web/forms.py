"""Reading the public forms: every field checked, every refusal a sentence in the page's language.

The pages call these before any library function, so nothing is half-saved:
a field that does not hold what the form offered raises :class:`FormError`,
which the page renders as a 400 with ``FormError.message(t)``. Numbers are
ASCII digits only (``int()`` takes ``'١'`` as 1 and raises on ``'²'``), in
range; names have a length cap; topics and cadences must be ones the form
offered.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

from ..errors import InputError
from ..sanitize import one_line

NAME_LIMIT = 100
_NUMBER = re.compile(r"[0-9]{1,2}\Z")  # \Z, not $: "3\n" is not a number
_SHOWN = 60


class FormError(Exception):
    """A field (or the whole form) that cannot be used; ``key`` names its sentence in ``[<lang>.form]``."""

    def __init__(self, key: str, field: str = "", **params: object) -> None:
        super().__init__(key)
        self.key = key
        self.field = field
        self.params = params

    def message(self, t: Mapping[str, Any]) -> str:
        label = str(t.get(self.field, self.field)) if self.field else ""
        return str(t["form"][self.key]).format(label=label, **self.params)


def shown(raw: str) -> str:
    """A value as a visitor can read it back: control characters made visible, long values cut.

    Example:
        >>> shown("²"), shown("3\\n")
        ('²', '3\\\\n')
    """
    text = raw if raw.isprintable() else repr(raw)[1:-1]
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


async def read_form(request: Request, *, max_fields: int) -> FormData:
    """The posted fields, or FormError when the body carries files, too many fields, or cannot be parsed."""
    try:
        return await request.form(max_files=0, max_fields=max_fields)
    except HTTPException as exc:  # Starlette reports multipart limits this way
        detail = str(exc.detail)
        if detail.startswith("Too many files"):
            raise FormError("files") from None
        if detail.startswith("Too many fields"):
            raise FormError("too_many_fields") from None
        raise FormError("unreadable") from None


def text(form: FormData, name: str) -> str:
    """One text field ('' when absent); a file where text belongs is refused."""
    value = form.get(name)
    if isinstance(value, UploadFile):
        raise FormError("files")
    return value or ""


def texts(form: FormData, name: str) -> list[str]:
    values = form.getlist(name)
    if any(isinstance(v, UploadFile) for v in values):
        raise FormError("files")
    return [str(v) for v in values]


def whole_number(raw: str, field: str, low: int, high: int) -> int | None:
    """None for an empty field, else an ASCII whole number in ``[low, high]``.

    Example:
        >>> whole_number(" 06 ", "send_hour", 0, 23), whole_number("", "send_hour", 0, 23)
        (6, None)
        >>> whole_number("²", "weekday", 0, 6)
        Traceback (most recent call last):
        ...
        syndicate.web.forms.FormError: number
    """
    value = raw.strip(" \t")
    if not value:
        return None
    if not _NUMBER.match(value) or not low <= int(value) <= high:
        raise FormError("number", field, low=low, high=high, value=shown(raw.strip(" \t")))
    return int(value)


def choice(raw: str, field: str, choices: Mapping[str, str]) -> str | None:
    """None for an empty field, else one of ``choices`` (value -> label shown in the message)."""
    if not raw:
        return None
    if raw not in choices:
        raise FormError("choice", field, choices=", ".join(choices.values()), value=shown(raw))
    return raw


def topics(values: Sequence[str], field: str, allowed: Sequence[tuple[str, str]], list_name: str) -> list[str]:
    """The ticked topics, each one the form offered, in order, without repeats."""
    offered = {slug for slug, _ in allowed}
    chosen = list(dict.fromkeys(values))
    for value in chosen:
        if value not in offered:
            raise FormError("topic", field, value=shown(value), list=list_name)
    return chosen


def person_name(raw: str, field: str) -> str:
    """A name on one line, at most NAME_LIMIT characters."""
    name = one_line(raw)
    if len(name) > NAME_LIMIT:
        raise FormError("too_long", field, size=len(name), limit=NAME_LIMIT)
    return name


def time_zone(raw: str, field: str) -> str | None:
    """None for an empty field, else an IANA zone name."""
    from ..subscribers import check_timezone

    value = raw.strip()
    if not value:
        return None
    try:
        return check_timezone(value)
    except InputError:
        raise FormError("timezone", field, value=shown(value)) from None
