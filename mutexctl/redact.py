"""What is safe to show: credentials never leave the process, and text from users (reasons, node ids,
command lines) cannot drive the reader's terminal. Every text that is shown, logged, stored or raised
passes ``mask_url``; every user-written text shown on a terminal passes ``printable``.

Both run in time linear in the text (a 100 kB argument costs microseconds, not minutes).
"""

from __future__ import annotations

import re

# "scheme:" and the slashes after it, at the start of a word (after quotes or brackets).
_SCHEME = re.compile(r"[\"'(<\[{]*[A-Za-z][A-Za-z0-9+.-]{0,31}:/{0,3}")
_SPACE = re.compile(r"(\s+)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def mask_url(text: str) -> str:
    """Hide ``user:password@`` wherever it appears: in a URL, however malformed (``mongodb:/u:p@h``,
    a password holding ``#``, ``@``, ``?`` or ``/``), or bare (``u:p@host``).

    Each whitespace-separated word that holds an ``@`` is masked from after its scheme (if any) up to
    its *last* ``@``: a password may itself hold ``@``. This can hide more than the credentials (a
    query string with an ``@`` in it), never less.
    """
    if "@" not in text:
        return text
    return "".join(_mask_word(word) if "@" in word else word for word in _SPACE.split(text))


def _mask_word(word: str) -> str:
    at = word.rfind("@")
    head = word[:at]
    scheme = _SCHEME.match(head)
    start = scheme.end() if scheme else len(head) - len(head.lstrip("\"'(<[{"))
    if scheme is None and ":" not in head:
        return word  # user@host, an e-mail: no password to hide
    if start == at:
        return word  # "scheme:@host": nothing between
    return word[:start] + "***" + word[at:]


def secrets_of(url: str) -> list[str]:
    """The user information of a URL (and its password alone), raw and %-decoded, longest first: to
    scrub from texts that quote them without the URL around them (a driver's error)."""
    from urllib.parse import unquote

    at = url.rfind("@")
    scheme = _SCHEME.match(url)
    if at < 0:
        return []
    userinfo = url[scheme.end() if scheme else 0:at]
    password = userinfo.split(":", 1)[1] if ":" in userinfo else ""
    found = {piece for raw in (userinfo, password) if len(raw) >= 4 for piece in (raw, unquote(raw))}
    return sorted(found, key=len, reverse=True)


def printable(text: str) -> str:
    """``text`` with control characters (a terminal's escape sequences, newlines) shown as escapes."""
    if text.isprintable() or not _CONTROL.search(text):  # (every character _CONTROL finds is unprintable)
        return text
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)
