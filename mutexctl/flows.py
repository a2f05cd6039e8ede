"""The lease rules as flows: generators that *yield* what they need done — a store call (``Call``) or
a pause (``Nap``, which a waiter's doorbell may end early) — and get each answer back, or the
store's error thrown in. Every rule (how to take, wait in line, back off, renew, release, explain a
refusal) is written once, in ``leases``; an executor only does what a flow asks: ``drive`` with the
synchronous store and ``time.sleep``, ``mutexctl.aio`` with an asynchronous store and the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping
from typing import Any, NamedTuple, Protocol, TypeVar

T = TypeVar("T")


class Doorbell(Protocol):
    """What may end a nap early (waitline.Doorbell)."""

    def sleep(self, seconds: float) -> bool: ...

    async def asleep(self, seconds: float) -> bool: ...


class Call(NamedTuple):
    method: str  # a store method (stores.protocols)
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = {}


class Nap(NamedTuple):
    seconds: float
    bell: Doorbell | None = None  # a ring ends the nap early; the answer is whether it rang


class Handed(NamedTuple):
    """A value the flow hands to its consumer (a message to handle); the answer is the consumer's
    (its status). A consumer that stops asking gets LoopEnded thrown in at this point."""

    value: Any


class LoopEnded(Exception):  # noqa: N818 - not an error: the consumer's loop ended
    """Thrown into a flow at a Handed value when its consumer stopped (break, close, garbage collection)."""


Flow = Generator[Call | Nap | Handed, Any, T]


def call(method: str, *args: Any, **kwargs: Any) -> Flow[Any]:
    """``result = yield from call("get", mutex_id)``: one store call."""
    return (yield Call(method, args, kwargs))


def nap(seconds: float, bell: Doorbell | None = None) -> Flow[bool]:
    rung: bool = yield Nap(seconds, bell)
    return rung


class EventBell:
    """A threading.Event as a nap's bell: the nap ends when it is set (a listener's stop)."""

    def __init__(self, event: Any) -> None:
        self.event = event

    def is_set(self) -> bool:
        return bool(self.event.is_set())

    def sleep(self, seconds: float) -> bool:
        return bool(self.event.wait(max(0.0, seconds)))

    async def asleep(self, seconds: float) -> bool:
        raise TypeError("a threading.Event cannot be awaited: give the asynchronous API an asyncio.Event")


def drive(flow: Flow[T], store: object, *, throw: BaseException | None = None) -> T:
    """The synchronous executor: each call on ``store``, each nap slept; what a call raises (and an
    interrupt during a nap) is thrown into the flow, so its ``finally`` and ``except`` apply.
    ``throw``: thrown in first (a flow resumed where it handed a value)."""
    reply: Any = None
    error = throw
    while True:
        try:
            step = flow.send(reply) if error is None else flow.throw(error)
        except StopIteration as done:
            result: T = done.value
            return result
        reply, error = None, None
        try:
            reply = _do(step, store)
        except BaseException as exc:  # noqa: BLE001 - handed to the flow, which re-raises what it does not take
            error = exc


def drive_handing(flow: Flow[None], store: object) -> Generator[Any, Any, None]:
    """``drive`` for a flow that hands values out: a generator of them, whose ``send`` answers one.
    When it is closed (its loop ended) the flow gets LoopEnded where it handed the last one, and
    finishes (an ack of the last message) before the close returns."""
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = flow.send(reply) if error is None else flow.throw(error)
        except StopIteration:
            return
        reply, error = None, None
        if isinstance(step, Handed):
            try:
                reply = yield step.value
            except GeneratorExit:
                try:
                    drive(flow, store, throw=LoopEnded())
                except LoopEnded:
                    pass
                raise
            continue
        try:
            reply = _do(step, store)
        except BaseException as exc:  # noqa: BLE001 - as in drive
            error = exc


def _do(step: Call | Nap | Handed, store: object) -> Any:
    if isinstance(step, Nap):
        return step.bell.sleep(step.seconds) if step.bell is not None else _sleep(step.seconds)
    if isinstance(step, Handed):
        raise TypeError("this flow hands values out: drive it with drive_handing")
    return getattr(store, step.method)(*step.args, **step.kwargs)


def _sleep(seconds: float) -> bool:
    time.sleep(max(0.0, seconds))
    return False
