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

# Secret-bearing arguments of a command line (README, "What a stored command line hides"). A word of
# shell text: quoted pieces and bare characters run together, as shlex.join writes them.
_WORD = r"""(?:'[^']*'|"[^"]*"|[^\s'"])+"""
_SECRET_NAME = (r"[\w.-]*(?:passw(?:or)?d|passphrase|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key"
                r"|credentials?)")
_SECRET_ARGS = [
    # --password=VALUE, --db-password VALUE, --api-token VALUE (an option whose name ends so; not
    # --password-file or --password-stdin, whose value is no secret)
    re.compile(rf"(?i)(?<![\w-])(--?{_SECRET_NAME})(=|\s+(?!-))({_WORD})"),
    # NAME=VALUE, as an argument, an environment assignment or in a query string (token=…&)
    re.compile(rf"(?i)(?<![\w-])({_SECRET_NAME})(=)([^\s&;'\"]+)"),
    # HTTP credentials in a header: "Authorization: Bearer …", "X-Api-Key: …", "Cookie: …"
    re.compile(r"(?i)((?:proxy-)?authorization:\s*(?:bearer|basic|token|digest|negotiate)?|"
               r"x-[\w-]*(?:token|key|secret):|cookie:)(\s*)([^\s'\"]+)"),
]
_MYSQL = re.compile(r"(?<![\w-])(?:mysql|mariadb)[\w-]*(?![\w-])")
_ATTACHED_P = re.compile(r"(?<![\w-])(-p)()([^\s'\"]+)")


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


def mask_command(text: str) -> str:
    """A command line safe to store and show: ``mask_url``, and the value of every secret-bearing
    argument (``--password=…``, ``--password …``, ``-p…``, ``token=…``, ``Authorization: Bearer …``,
    see ``_SECRET_ARGS``) replaced by ``***``. Like ``mask_url`` it may hide more, never less."""
    text = mask_url(text)
    for pattern in _SECRET_ARGS:
        text = pattern.sub(_masked, text)
    client = _MYSQL.search(text)  # -pSECRET: the password flag of the MySQL/MariaDB clients, value attached
    if client:                    # (elsewhere -p… is a port, -print, -pthread: left as it is)
        text = text[:client.end()] + _ATTACHED_P.sub(_masked, text[client.end():])
    return text


def _masked(found: re.Match[str]) -> str:
    name, between, value = found.group(1), found.group(2), found.group(3)
    return f"{name}{between}***" if value != "***" else found.group(0)


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
