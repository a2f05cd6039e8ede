"""The library's errors in the CLI's words: the flag where the message names an argument
(``error.param``), and the CLI's own hint for what fixes it (``error.remedy``). The library never
names a flag; this is the one place that does it for its errors."""

from __future__ import annotations

from ..errors import MutexctlError
from ..models import MutexState
from ..redact import mask_url

# An argument, by its library name, as a flag (where the CLI takes it as one).
FLAGS = {
    "timeout": "--timeout", "wait": "--wait", "limit": "--limit", "token": "--token", "fence": "--fence",
    "holder": "--holder", "once key": "--once key", "payload": "--payload", "recipient": "--to node",
    "since": "--since", "node id": "--node-id",
}

HINTS = {
    "force": "--force --reason breaks it, on the record",
    "token-or-force": "pass the --token that acquire printed, or --force --reason to break it",
    "stop-or-force": "stop the command (mutexctl then releases it), or break it on the record with --force --reason "
                     "(the command is stopped at its next renewal)",
    "longer-lease": "use a longer --timeout, renew it while you work (mutexctl renew NAME --token FENCE), or run the "
                    "work under 'mutexctl acquire NAME -- CMD'",
    "same-kind": "every holder of a name must ask for it the same way (the same --limit, or --shared); wait until "
                 "they are gone, or use another name",
    "token": "pass the --token (fence) that acquire printed",
    "wait-longer": "wait longer, or see 'mutexctl status' for the holder",
    "reason": 'add --reason "why it is stuck"',
    "store-path": "choose a writable path with --store sqlite:///path/to/file.db",
    "store-other-file": "point --store at another file",
    "longer-command-lease": "use --timeout 1s or more",
    "allow-none": "start 'mutexctl listen' on the nodes, see 'mutexctl nodes', or pass --allow-none to send it anyway",
    "recipients": "leave --to out to reach every listening node",
}


def message(error: BaseException, text: str) -> str:
    """``text`` (the error's message) with the flag in place of the argument it begins with."""
    param = getattr(error, "param", None)
    if isinstance(error, MutexctlError) and param in FLAGS and text.startswith(f"{param} "):
        return FLAGS[param] + text[len(param):]
    return text


def hint(error: BaseException) -> str | None:
    """The CLI's hint for the error: its own words for the error's remedy, else the library's hint."""
    remedy = getattr(error, "remedy", None)
    if remedy == "wait":
        from ..waitline import suggested_wait

        state = getattr(error, "state", None)
        state = state if isinstance(state, MutexState) else None
        wait = f"--wait {suggested_wait(state)}"
        if state is not None and state.slots and getattr(error, "asked", None) == "exclusive":
            if state.kind == "semaphore":
                return f"take one of its slots with --limit {state.limit}, or wait for every slot to end with {wait}"
            return f"take a shared hold with --shared, or wait for every holder to end with {wait}"
        return f"wait for it with {wait}, or see 'mutexctl status'"
    name = getattr(error, "mutex_id", None)
    if remedy == "force" and isinstance(name, str):
        return f"mutexctl release {name} --force --reason '…' breaks it, on the record"
    if remedy in HINTS:
        return HINTS[remedy]
    found = getattr(error, "hint", None)
    return found if isinstance(found, str) else None


def message_of(error: BaseException) -> str:
    """The error's message as the CLI shows it: credentials masked, the flag where it names an argument."""
    return mask_url(message(error, getattr(error, "message", None) or str(error) or error.__class__.__name__))


# What a whole-number option takes, for the parser's "not a valid int" (said in our words).
NUMBERS = {
    "token": "the fence that acquire printed", "fence": "the holder's fence, as 'mutexctl status' shows it",
    "limit": "a whole number", "conflict_exit_code": "an exit status, 0-255",
}


def bad_number(error: BaseException) -> tuple[str, str] | None:
    """The parser's refusal of a whole-number option (``--token abc``) as our message and hint, or None."""
    import re

    from ..inputs import shown

    param = getattr(error, "param", None)
    found = re.fullmatch(r"'(.*)' is not a valid int(?:eger)?\.?", str(getattr(error, "message", "")), re.S)
    if found is None or param is None or not getattr(param, "opts", None):
        return None
    flag = max(param.opts, key=len)
    return f"{flag} {shown(found.group(1))} is not a whole number", \
        f"{flag} takes {NUMBERS.get(param.name, 'a whole number')}"

