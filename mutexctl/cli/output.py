"""Output: data on stdout, people's text on stderr, JSON with --json; the JSON forms every command shares."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from ..redact import mask_url, printable
from . import hints

# JSON escapes C0 controls itself; these it leaves raw, and a terminal reads U+009B as an escape (CSI).
_RAW_IN_JSON = re.compile("[\x7f-\x9f\u2028\u2029]")


def json_line(document: dict[str, Any]) -> str:
    """One line of JSON, UTF-8 text kept readable, with nothing in it that a terminal would act on."""
    # (Documents are trees built here: no cycle to look for, which costs a sixth of a fleet's status.)
    text = json.dumps(document, ensure_ascii=False, default=str, check_circular=False)
    if text.isascii() and "\x7f" not in text:  # (two scans in C: a fleet's status is megabytes)
        return text
    return _RAW_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def shown(text: str) -> str:
    """People's text as it reaches a terminal: credentials masked, control characters (escape
    sequences a foreign document may carry in a node id or a reason) escaped, line by line."""
    return "\n".join(printable(line) for line in mask_url(text).split("\n"))


class Output:
    def __init__(self, *, as_json: bool = False, verbose: int = 0, json_to_stderr: bool = False) -> None:
        self.as_json = as_json
        # In exec mode stdout is the command's (as with flock): mutexctl's JSON goes to stderr, one line,
        # whether the parser, a check or the run itself ends it.
        self.json_to_stderr = json_to_stderr
        self.verbose = verbose
        self.stderr_tty = sys.stderr.isatty()
        self._progress_shown = False
        self._progress_kind = ""

    def data(self, text: str) -> None:
        print(shown(text), flush=True)

    def doc(self, document: dict[str, Any]) -> None:
        print(json_line(document), flush=True, file=sys.stderr if self.json_to_stderr else sys.stdout)

    def note(self, text: str) -> None:
        """A line for people, on stderr (never in --json mode's stdout)."""
        self.end_progress()
        print(shown(text), file=sys.stderr, flush=True)

    def detail(self, text: str) -> None:
        """A note shown on a terminal or with -v; scripts' stderr stays quiet."""
        if self.verbose or self.stderr_tty:
            self.note(text)

    def fail(self, error: BaseException, code: int, **document: Any) -> None:
        """One line ``mutexctl: <message>`` (plus a hint line), or the --json error document (with
        ``document``'s fields beside it)."""
        if self.as_json:
            from .documents import error_doc

            self.doc({"ok": False, **document, "error": error_doc(error, code)})
            return
        self.end_progress()
        print(f"mutexctl: {printable(hints.message_of(error))}", file=sys.stderr)
        hint = hints.hint(error)
        if hint:
            print(f"hint: {shown(hint)}", file=sys.stderr)
        sys.stderr.flush()

    def progress(self, text: str, *, kind: str = "") -> None:
        """While waiting: a live line on a terminal; otherwise one line per kind of news (the holder,
        an outage), not one per poll."""
        if self.as_json and not self.stderr_tty:
            return
        text = printable(mask_url(text))
        if self.stderr_tty:
            self._progress_shown = True  # first: a Ctrl-C right after the write must find the line shown
            sys.stderr.write(f"\r\x1b[K{text}")
            sys.stderr.flush()
        elif self._progress_kind != kind or not self._progress_shown:
            print(text, file=sys.stderr, flush=True)
            self._progress_shown = True
        self._progress_kind = kind

    def interrupted(self, text: str) -> None:
        """Ctrl-C (the terminal echoed ^C): one line saying so, below the waiting line if one shows."""
        waiting = self._progress_shown and self.stderr_tty
        if waiting:
            sys.stderr.write("\n")  # the waiting line stays: it says what was waited for
            self._progress_shown = False
        print(f"mutexctl: {text}" + ("; the wait was given up and nothing was taken" if waiting else ""),
              file=sys.stderr, flush=True)

    def end_progress(self) -> None:
        if self._progress_shown and self.stderr_tty:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
        self._progress_shown = self._progress_shown and not self.stderr_tty
