"""Output: data on stdout, people's text on stderr, JSON with --json; the JSON forms every command shares."""

from __future__ import annotations

import sys
from typing import Any

from ..errors import MutexctlError
from ..models import Ack, Lease, iso_ms
from ..redact import mask_url


class Output:
    def __init__(self, *, as_json: bool = False, verbose: int = 0) -> None:
        self.as_json = as_json
        # In exec mode stdout is the command's (as with flock): mutexctl's JSON goes to stderr, one line.
        self.json_to_stderr = False
        self.verbose = verbose
        self.stderr_tty = sys.stderr.isatty()
        self._progress_shown = False
        self._progress_kind = ""

    def data(self, text: str) -> None:
        print(text, flush=True)

    def doc(self, document: dict[str, Any]) -> None:
        import json

        print(json.dumps(document, indent=None, sort_keys=False, default=str), flush=True,
              file=sys.stderr if self.json_to_stderr else sys.stdout)

    def note(self, text: str) -> None:
        """A line for people, on stderr (never in --json mode's stdout)."""
        self.end_progress()
        print(mask_url(text), file=sys.stderr, flush=True)

    def detail(self, text: str) -> None:
        """A note shown on a terminal or with -v; scripts' stderr stays quiet."""
        if self.verbose or self.stderr_tty:
            self.note(text)

    def fail(self, error: BaseException, code: int, **document: Any) -> None:
        """One line ``mutexctl: <message>`` (plus a hint line), or the --json error document (with
        ``document``'s fields beside it)."""
        if self.as_json:
            self.doc({"ok": False, **document, "error": error_doc(error, code)})
            return
        self.end_progress()
        print(f"mutexctl: {_message(error)}", file=sys.stderr)
        hint = getattr(error, "hint", None)
        if hint:
            print(f"hint: {mask_url(hint)}", file=sys.stderr)
        sys.stderr.flush()

    def progress(self, text: str, *, kind: str = "") -> None:
        """While waiting: a live line on a terminal; otherwise one line per kind of news (the holder,
        an outage), not one per poll."""
        if self.as_json and not self.stderr_tty:
            return
        if self.stderr_tty:
            sys.stderr.write(f"\r\x1b[K{text}")
            sys.stderr.flush()
            self._progress_shown = True
        elif self._progress_kind != kind or not self._progress_shown:
            print(text, file=sys.stderr, flush=True)
            self._progress_shown = True
        self._progress_kind = kind

    def end_progress(self) -> None:
        if self._progress_shown and self.stderr_tty:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
        self._progress_shown = self._progress_shown and not self.stderr_tty


def error_doc(error: BaseException, code: int) -> dict[str, Any]:
    """The one JSON form of an error: ``{kind, message, exit_code, hint?}``."""
    hint = getattr(error, "hint", None)
    kind = getattr(error, "kind", "internal" if not isinstance(error, MutexctlError) else "error")
    return {"kind": kind, "message": _message(error), "exit_code": code, **({"hint": mask_url(hint)} if hint else {})}


def _message(error: BaseException) -> str:
    return mask_url(getattr(error, "message", None) or str(error) or error.__class__.__name__)


def ack_doc(ack: Ack) -> dict[str, Any]:
    return {"node": ack.node, "status": ack.status, "at": iso_ms(ack.at), "duration_ms": ack.duration_ms}


def lease_doc(lease: Lease) -> dict[str, Any]:
    return {"mutex": lease.mutex_id, "node": lease.node_id, "fence": lease.fence, "timeout_ms": lease.timeout_ms,
            "taken_at": iso_ms(lease.taken_at), "expires_at": iso_ms(lease.expires_at)}
