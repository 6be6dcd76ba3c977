"""Attack: ignores SIGTERM, SIGINT, SIGHUP and SIGALRM, then spins at import for ever.

Graded with the default budget: the grader imports the module once, alone, and every test
fails saying the import did not finish, instead of every call waiting for its own timeout.
"""

import signal

for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM):
    signal.signal(sig, signal.SIG_IGN)
while True:
    try:
        pass
    except BaseException:
        pass


def scaled_softmax(x, temperature):
    z = x / temperature
    return z.softmax(dim=1)
