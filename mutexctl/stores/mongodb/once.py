"""Run-once markers on MongoDB: a document per (mutex, key) in ``once``, stamped with the server's
clock; the first record stands; clearing one is on the forced-release record and in the lease
history (``once-cleared``)."""

from __future__ import annotations

import uuid

from ...models import ONCE_CLEARED, Holder, LeaseEvent, OnceMarker
from .base import MongoBase
from .commands import DuplicateKey, Operation, delete_one, find_one, insert_stamped, operation
from .documents import once_marker, utc


class MongoOnce(MongoBase):
    @operation
    def once_marker(self, mutex_id: str, key: str) -> Operation[OnceMarker | None]:
        return read_marker(mutex_id, key)

    @operation
    def mark_once(self, mutex_id: str, key: str, node_id: str, fence: int | None,
                  holder: Holder) -> Operation[OnceMarker]:
        return mark_once(mutex_id, key, node_id, fence, holder)

    @operation
    def clear_once(self, mutex_id: str, key: str, by_node: str, by: Holder,
                   reason: str) -> Operation[OnceMarker | None]:
        return clear_once(self, mutex_id, key, by_node, by, reason, record_id=uuid.uuid4().hex)


def read_marker(mutex_id: str, key: str) -> Operation[OnceMarker | None]:
    doc = yield find_one("once", {"_id": _once_id(mutex_id, key)})
    return once_marker(doc) if doc else None


def mark_once(mutex_id: str, key: str, node_id: str, fence: int | None, holder: Holder) -> Operation[OnceMarker]:
    """Record (mutex, key) done, stamped with the server's clock; the first record stands."""
    fields = {"mutexId": mutex_id, "key": key, "byNode": node_id, "fence": fence, "host": holder.host,
              "pid": holder.pid, "user": holder.user, "command": holder.command}
    try:
        doc = yield insert_stamped("once", _once_id(mutex_id, key), fields, projection={"_id": 1, **dict.fromkeys(
            (*fields, "at"), 1)})
    except DuplicateKey:  # the first record stands
        doc = yield find_one("once", {"_id": _once_id(mutex_id, key)})
    assert doc is not None  # written, or there already
    return once_marker(doc)


def clear_once(store: MongoBase, mutex_id: str, key: str, by_node: str, by: Holder, reason: str, *,
               record_id: str) -> Operation[OnceMarker | None]:
    """Remove the marker, on the record (the history of forced releases): the record is written
    first, so a clear that dies midway leaves the marker and its record, never a silent removal."""
    marker = yield from read_marker(mutex_id, key)
    if marker is None:
        return None
    record = {"mutexId": mutex_id, "byNode": by_node, "byUser": by.user, "byHost": by.host,
              "reason": f"[once {key}] {reason}", "previousHolder": marker.by_node, "previousFence": marker.fence}
    stamped = yield insert_stamped("forced_releases", record_id, record)
    yield delete_one("once", {"_id": _once_id(mutex_id, key)})
    store.queue_event(LeaseEvent(mutex_id, ONCE_CLEARED, utc(stamped["at"]), by_node, None, by,
                                 previous_holder=marker.by_node, previous_fence=marker.fence,
                                 reason=f"[once {key}] {reason}"))
    return marker


def _once_id(mutex_id: str, key: str) -> dict[str, str]:
    return {"mutexId": mutex_id, "key": key}  # (field order is part of the _id's value: always this one)
