"""A grader process dies with its parent, so that killing the grader leaves nothing behind.

A batch runner's or a CI's timeout stops ``python -m autograder grade`` with SIGKILL; its
pytest child runs in a session of its own (so that the grader can kill the whole session), and
would live on, grading, with the worker zygote under it. Every process the grader starts calls
:func:`die_with_parent` first: the kernel's parent-death signal where there is one (Linux; the
zygote, the supervisors and the workers use it too), and a watchdog thread on the parent's pid
everywhere, which also covers a parent that died before the call.
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time

PARENT_ENV = "AUTOGRADER_PARENT_PID"  # set by ``batch`` for the ``grade`` processes it starts
PR_SET_PDEATHSIG = 1
POLL_S = 0.5


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when the process ``parent_pid`` (its parent now) is gone."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # no prctl (macOS): the watchdog alone
        pass
    if os.getppid() != parent_pid:  # the parent died before the signal was set up
        os.kill(os.getpid(), signal.SIGKILL)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(POLL_S)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="autograder-lifeline", daemon=True).start()


def from_environment() -> None:
    """:func:`die_with_parent` for the pid in ``$AUTOGRADER_PARENT_PID``, when it is set."""
    value = os.environ.get(PARENT_ENV, "")
    if value.isdigit():
        die_with_parent(int(value))
