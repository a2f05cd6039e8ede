"""Making the client from a URL: every option checked (a misspelled ``tsl=true`` must not connect in
plain text), no driver warning on the user's terminal, and a refused port told at once."""

from __future__ import annotations

import socket
import warnings
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import pymongo
from pymongo.common import validate as validate_option
from pymongo.errors import ConfigurationError, InvalidURI

from ...errors import ConfigError, StoreUnavailableError
from ...redact import mask_url

URL_HINT = "see the URL forms in README.md, section MongoDB"


def open_client(url: str, *, connect_timeout_ms: int, scrub: Any, kind: Any = None) -> Any:
    """The client for ``url`` (``kind``: the client class, default pymongo.MongoClient; the event
    loop's is pymongo.AsyncMongoClient); ConfigError names a bad option, StoreUnavailableError a
    name that does not resolve or a port that refuses connections. ``scrub`` hides the URL's credentials."""
    shown = mask_url(url)
    _check_options(url, shown)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            client: Any = (kind or pymongo.MongoClient)(url, **timeouts(url, connect_timeout_ms), w="majority",
                                                        tz_aware=True, appname="mutexctl")
    except (ConfigurationError, InvalidURI, ValueError, TypeError) as exc:
        reason = scrub(str(exc))
        if "DNS" in reason or "nameserver" in reason.lower():  # an SRV or TXT lookup failed: the network's
            raise StoreUnavailableError(f"store {shown}: its name does not resolve: {reason}",
                                        hint="check the host name and this machine's DNS") from None
        raise ConfigError(f"bad MongoDB URL {shown}: {reason}", hint=URL_HINT) from None
    for warning in caught:
        if issubclass(warning.category, UserWarning):  # what pymongo does with an option it ignores
            client.close()
            raise ConfigError(f"bad MongoDB URL {shown}: {scrub(str(warning.message))}", hint=URL_HINT)
    return client


def timeouts(url: str, connect_timeout_ms: int) -> dict[str, Any]:
    """The driver's timeouts: those the URL sets are the URL's (a keyword would override them); the
    others from ``connect_timeout`` (how long to look for the server), which a shorter connectTimeoutMS
    in the URL also bounds: a server that does not answer in it is told then, not seconds later."""
    given = {key.lower(): value for key, value in _options(url)}
    connect = int(float(given["connecttimeoutms"])) if "connecttimeoutms" in given else connect_timeout_ms
    chosen = {"serverSelectionTimeoutMS": min(connect_timeout_ms, connect or connect_timeout_ms),
              "connectTimeoutMS": connect_timeout_ms, "socketTimeoutMS": max(2 * connect_timeout_ms, 10_000)}
    return {key: value for key, value in chosen.items() if key.lower() not in given}


def _options(url: str) -> list[tuple[str, str]]:
    at = url.rfind("@")
    query = url[url.find("?", at + 1) + 1:] if "?" in url[at + 1:] else ""
    return parse_qsl(query, keep_blank_values=True)


def _check_options(url: str, shown: str) -> None:
    """Each option of the URL's query, checked by the driver's own validators, named when wrong.

    (The driver itself only warns about an unknown option — without naming it — and ignores it.)
    """
    for key, value in _options(url):
        try:
            validate_option(key, value)
        except (ConfigurationError, ValueError, TypeError) as exc:
            problem = (str(exc).replace(value, "…") if value else str(exc)).replace(" Refer to docstring.", "")
            raise ConfigError(f"bad MongoDB URL {shown}: option {mask_url(key)!r}: {problem}", hint=URL_HINT) from None


def _knocks(client: pymongo.MongoClient[dict[str, Any]], timeout_ms: int) -> Iterator[tuple[str, str]]:
    """Each seed host (``host:port``) and what a TCP connection to it met: ``accepted``, ``refused`` or
    ``failed`` (unreachable, unresolvable, slow), each tried at most a second."""
    for host, port in client.topology_description.server_descriptions():
        try:
            with socket.create_connection((host, port), timeout=min(1.0, timeout_ms / 1000)):
                outcome = "accepted"
        except ConnectionRefusedError:
            outcome = "refused"
        except OSError:
            outcome = "failed"
        yield f"{host}:{port}", outcome


def refused(client: pymongo.MongoClient[dict[str, Any]], connect_timeout_ms: int) -> list[str] | None:
    """The seed hosts, when every one of them refuses the TCP connection (then the driver would only
    tell after its whole server-selection timeout); None when something listens, or when the answer
    is not that plain (unreachable, unresolvable, slow: the driver's timeout decides). A replica set
    in an election still gets the whole timeout: its hosts accept connections."""
    found = []
    for where, outcome in _knocks(client, connect_timeout_ms):
        if outcome != "refused":
            return None
        found.append(where)
    return found or None


def silent(client: pymongo.MongoClient[dict[str, Any]], timeout_ms: int) -> list[str]:
    """The seed hosts that accept a TCP connection (after the driver found no server: they took the
    connection and never answered)."""
    return [where for where, outcome in _knocks(client, timeout_ms) if outcome == "accepted"]
