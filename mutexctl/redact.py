"""Credentials never leave the process: every text that is shown, logged, stored or raised passes here."""

from __future__ import annotations

import functools
import re


@functools.cache
def _credentials() -> re.Pattern[str]:  # compiled on first use: most runs have no URL to show
    return re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<userinfo>[^@/?#]*@)", re.IGNORECASE)


def mask_url(text: str) -> str:
    """Hide ``user:password@`` in a URL (and in any URL inside a longer text)."""
    if "://" not in text:
        return text
    return _credentials().sub(lambda m: m.group("scheme") + "***@", text)
