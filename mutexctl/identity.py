"""Who and where this process is: the host name (the default node id) and the user, as a lease's
holder records them."""

from __future__ import annotations

import os


def host_name() -> str:
    """This machine's name (the default node id, and the host recorded with a lease)."""
    return os.uname().nodename


def user_name() -> str:
    """Who runs this process, as getpass.getuser() says it (without importing getpass's terminal code)."""
    for variable in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        if os.environ.get(variable):
            return os.environ[variable]
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a container without a passwd entry for our uid
        return str(os.getuid())
