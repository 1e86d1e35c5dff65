"""Child processes: a fresh interpreter running one function of ours, with a socket to talk over.

Not ``fork`` (no lock or thread of the parent's is copied) and not
multiprocessing's spawn (which re-runs the caller's main script). The full
build's workers (:mod:`syndicate.site_build`) and the API's notice sender
(:mod:`syndicate.api.mail`) start this way.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from typing import Any


def start_child(module: str, function: str, *, share_fds: Sequence[int] = (),
                **popen: Any) -> tuple[subprocess.Popen[bytes], socket.socket]:
    """Run ``module.function(fd)`` in a new ``sys.executable``; returns the process and our end of the socket.

    ``fd`` is the child's end of a socket pair; the child sees the parent's
    ``sys.path``. ``share_fds``: more of our file descriptors the child gets,
    under the same numbers. Extra keyword arguments go to :class:`subprocess.Popen`.
    """
    ours, theirs = socket.socketpair()
    code = f"import sys; from {module} import {function}; {function}(int(sys.argv[1]))"
    try:
        process = subprocess.Popen(
            # -P: not the working directory first on sys.path (`-c` would put it there), the parent's path only
            [sys.executable, "-P", "-c", code, str(theirs.fileno())], pass_fds=[theirs.fileno(), *share_fds],
            env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}, **popen,
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return process, ours
