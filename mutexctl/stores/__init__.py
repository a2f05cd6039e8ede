"""The store boundary: small protocols per concern (``protocols``), implementations chosen by URL
scheme. Only the chosen driver is imported: pymongo only for a MongoDB URL, sqlite3 only for SQLite.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..redact import mask_url

if TYPE_CHECKING:
    from ..config import Settings
    from .protocols import IfMissing, Store


def open_store(settings: Settings, *, if_missing: IfMissing = "create") -> Store:
    """Open the store named by ``settings.store``. ``if_missing``: what a SQLite store file that does
    not exist is — made on first use ("create"), StoreMissingError ("fail"), or read as empty
    ("empty"; ``store.missing`` says so). Reading a MongoDB database creates nothing either way."""
    url = settings.store
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        from .sqlite import SQLiteStore

        store: Store = SQLiteStore.from_url(url, log_retention_s=settings.log_retention_s, if_missing=if_missing)
        store.history_retention_s = settings.history_retention_s
        return store
    if scheme in ("mongodb", "mongodb+srv"):
        from .mongodb import MongoStore

        mongo = MongoStore(url, database=settings.database, collection=settings.collection,
                           connect_timeout_ms=settings.connect_timeout_ms, log_retention_s=settings.log_retention_s)
        mongo.history_retention_s = settings.history_retention_s
        return mongo
    raise ConfigError(f"unknown store URL {mask_url(url)!r}",
                      hint="use sqlite:///path/to/file.db or mongodb://host/ (mongodb+srv:// too)")
