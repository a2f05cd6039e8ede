"""Every JSON document the CLI prints (``--json``, ``listen --json`` lines, ``status --watch --json``):
one function per record, so each shape is written once. Times are ISO-8601 UTC with milliseconds."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ..errors import MutexctlError
from ..models import (
    EXCLUSIVE,
    Ack,
    ForcedRelease,
    Lease,
    LeaseEvent,
    Message,
    MutexState,
    NodeInfo,
    OnceMarker,
    SlotHolder,
    iso_ms,
)
from ..redact import mask_url
from . import hints


def error_doc(error: BaseException, code: int) -> dict[str, Any]:
    """The one JSON form of an error: ``{kind, message, exit_code, hint?}``."""
    hint = hints.hint(error)
    kind = getattr(error, "kind", "internal" if not isinstance(error, MutexctlError) else "error")
    return {"kind": kind, "message": hints.message_of(error), "exit_code": code,
            **({"hint": mask_url(hint)} if hint else {})}


def ack_doc(ack: Ack) -> dict[str, Any]:
    return {"node": ack.node, "status": ack.status, "at": iso_ms(ack.at), "duration_ms": ack.duration_ms}


def lease_doc(lease: Lease) -> dict[str, Any]:
    return {"mutex": lease.mutex_id, "node": lease.node_id, "fence": lease.fence, "timeout_ms": lease.timeout_ms,
            "taken_at": iso_ms(lease.taken_at), "expires_at": iso_ms(lease.expires_at)}


def state_doc(state: MutexState, why: str) -> dict[str, Any]:
    """A mutex for --json, with ``why`` (``diagnose.why``'s judgement of it). Holder fields describe
    the current lease only: null when free (the last holder is ``last_taken_by``) and for another
    service's lease (``foreign``)."""
    taken = state.taken
    holder = state.holder if taken else None
    taken_at = since = expires_at = None
    if taken:  # (each time written once: a fleet's status writes tens of thousands)
        taken_at = iso_ms(state.taken_at) if state.taken_at else None
        if state.since:
            since = taken_at if state.since is state.taken_at else iso_ms(state.since)
        expires_at = iso_ms(state.expires_at) if state.expires_at else None
    return {
        "mutex": state.mutex_id, "state": state.state, "taken": taken,
        "taken_by": state.taken_by if taken else None,
        "last_taken_by": None if taken else state.taken_by,
        "foreign": state.foreign,
        "host": holder.host if holder else None, "pid": holder.pid if holder else None,
        "user": holder.user if holder else None, "command": holder.command if holder else None,
        "held_as": holder.taken_as if holder else None,
        "taken_at": taken_at, "since": since, "expires_at": expires_at,
        "remaining_ms": state.remaining_ms, "timeout_ms": state.timeout_ms, "fence": state.fence,
        "problem": state.problem, "documents": state.copies,
        "kind": state.kind, "limit": state.limit, "held_slots": len(state.slots) if state.kind != EXCLUSIVE else None,
        "holders": [slot_doc(slot) for slot in state.slots] if state.slots else [],
        "writer_waiting": state.writer_waiting,
        "waiters": [{"node": w.node, "host": w.host, "pid": w.pid, "since": iso_ms(w.since), "waited_ms": w.waited_ms,
                     "ticket": w.ticket} for w in state.waiters] if state.waiters else [],
        "why": why,
    }


def slot_doc(slot: SlotHolder) -> dict[str, Any]:
    h = slot.holder
    return {"node": slot.node, "fence": slot.fence, "since": iso_ms(slot.since) if slot.since else None,
            "expires_at": iso_ms(slot.expires_at) if slot.expires_at else None, "remaining_ms": slot.remaining_ms,
            "timeout_ms": slot.timeout_ms, "host": h.host if h else None, "pid": h.pid if h else None,
            "user": h.user if h else None, "command": h.command if h else None, "exec": h.exec_mode if h else None,
            "held_as": h.taken_as if h else None}


def marker_doc(marker: OnceMarker) -> dict[str, Any]:
    h = marker.holder
    return {"mutex": marker.mutex_id, "key": marker.key, "done_at": iso_ms(marker.at), "by_node": marker.by_node,
            "fence": marker.fence, "host": h.host if h else None, "pid": h.pid if h else None,
            "command": h.command if h else None}


def forced_doc(record: ForcedRelease) -> dict[str, Any]:
    return {"mutex": record.mutex_id, "at": iso_ms(record.at), "by_node": record.by_node, "by_user": record.by_user,
            "by_host": record.by_host, "reason": record.reason, "previous_holder": record.previous_holder,
            "previous_fence": record.previous_fence}


def event_doc(event: LeaseEvent) -> dict[str, Any]:
    holder = event.holder
    return {"mutex": event.mutex_id, "event": event.kind, "at": iso_ms(event.at), "node": event.node,
            "fence": event.fence, "host": holder.host if holder else None, "pid": holder.pid if holder else None,
            "user": holder.user if holder else None, "command": holder.command if holder else None,
            "waited_ms": event.waited_ms, "held_ms": event.held_ms, "previous_holder": event.previous_holder,
            "previous_fence": event.previous_fence, "late_ms": event.late_ms, "reason": event.reason,
            "slot": event.slot}


def node_doc(node: NodeInfo, now: datetime) -> dict[str, Any]:
    from ..intracom.listen import LIVE_WINDOW_S

    seen_ago_ms = max(0, round((now - node.last_seen).total_seconds() * 1000))
    position = node.cursor if node.cursor is not None else node.since
    return {"channel": node.channel, "node": node.node, "host": node.host, "pid": node.pid,
            "last_seen": iso_ms(node.last_seen), "seen_ago_ms": seen_ago_ms,
            "live": seen_ago_ms <= LIVE_WINDOW_S * 1000,
            "left_at": iso_ms(node.left_at) if node.left_at else None, "position": position,
            "saved_position": node.cursor,
            "registered_at_seq": node.since, "latest": node.latest,
            "behind": None if position is None else max(0, node.latest - position)}


def message_doc(message: Message) -> dict[str, object]:
    return {"id": message.id, "channel": message.channel, "seq": message.seq, "action": message.action,
            "payload": json.loads(message.payload), "sender": message.sender, "to": list(message.to),
            "expected": list(message.expected), "at": iso_ms(message.at)}
