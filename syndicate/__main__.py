"""``python -m syndicate``: the same as the ``syndicate`` command."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    main()
