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


Flow = Generator[Call | Nap, Any, T]


def call(method: str, *args: Any, **kwargs: Any) -> Flow[Any]:
    """``result = yield from call("get", mutex_id)``: one store call."""
    return (yield Call(method, args, kwargs))


def nap(seconds: float, bell: Doorbell | None = None) -> Flow[bool]:
    rung: bool = yield Nap(seconds, bell)
    return rung


def drive(flow: Flow[T], store: object) -> T:
    """The synchronous executor: each call on ``store``, each nap slept; what a call raises (and an
    interrupt during a nap) is thrown into the flow, so its ``finally`` and ``except`` apply."""
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = flow.send(reply) if error is None else flow.throw(error)
        except StopIteration as done:
            result: T = done.value
            return result
        reply, error = None, None
        try:
            if isinstance(step, Nap):
                reply = step.bell.sleep(step.seconds) if step.bell is not None else _sleep(step.seconds)
            else:
                reply = getattr(store, step.method)(*step.args, **step.kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the flow, which re-raises what it does not take
            error = exc


def _sleep(seconds: float) -> bool:
    time.sleep(max(0.0, seconds))
    return False
