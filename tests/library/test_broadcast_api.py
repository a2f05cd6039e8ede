"""Broadcast from code: payloads as values, decoded on the way in, and an iterator that acks the
message it handed over also when the loop ends early."""

from __future__ import annotations

import math
import threading

import pytest
from mutexctl import Service, Settings, UsageError


@pytest.fixture
def pair(store_url: str) -> tuple[Service, Service]:
    sender = Service(Settings(node_id="sender", store=store_url))
    sender.init_schema()
    listener = Service(Settings(node_id="listener", store=store_url))
    return sender, listener


def test_payloads_are_values_or_json_text_and_come_back_decoded(pair: tuple[Service, Service]) -> None:
    sender, listener = pair
    sender.broadcast("a", {"x": 1, "names": ["é", None]})
    sender.broadcast("b", [1, 2.5, True])
    sender.broadcast("c", '{"y": 2}')
    got = [(m.action, m.value, m.payload) for m in listener.listen(from_start=True, once=True)]
    assert got == [("a", {"x": 1, "names": ["é", None]}, '{"x":1,"names":["é",null]}'),
                   ("b", [1, 2.5, True], "[1,2.5,true]"), ("c", {"y": 2}, '{"y":2}')]
    handled: list[object] = []
    assert listener.listen(from_start=True, once=True, include_self=True, handler=lambda m: 0) == 0  # all acked
    other = Service(Settings(node_id="other", store=sender.settings.store))
    other.listen(from_start=True, once=True, handler=lambda m: handled.append(m.value) or 0)
    assert handled == [{"x": 1, "names": ["é", None]}, [1, 2.5, True], {"y": 2}]


@pytest.mark.parametrize("bad", [b"{}", {1, 2}, 7, None, {"x": math.nan}, {"x": object()}, "{not json", {"n": 2**70}])
def test_a_payload_that_is_not_strict_json_is_a_usage_error_and_sends_nothing(pair: tuple[Service, Service],
                                                                              bad: object) -> None:
    sender, _ = pair
    before = sender.store.latest_seq("default")
    with pytest.raises(UsageError) as refused:
        sender.broadcast("x", bad)
    assert refused.value.message.startswith("payload ")
    assert sender.store.latest_seq("default") == before


def test_breaking_out_of_the_iterator_acks_the_message_it_handed_over(pair: tuple[Service, Service]) -> None:
    sender, listener = pair
    first = sender.broadcast("one", {}, to=["listener"])
    second = sender.broadcast("two", {}, to=["listener"])
    for message in listener.listen(from_start=True):
        assert message.id == first.id
        break
    report = sender.wait_acks(first, wait="5s")
    assert [a.node for a in report.acks] == ["listener"] and report.acks[0].status == 0
    # the next listen goes on with the next message, not the one handed over
    stop = threading.Event()
    seen = []
    listener.listen(handler=lambda m: seen.append(m.id) or stop.set() or 0, stop=stop)
    assert seen == [second.id]


def test_closing_the_iterator_or_dropping_it_acks_too(pair: tuple[Service, Service]) -> None:
    sender, listener = pair
    first = sender.broadcast("one", {}, to=["listener"])
    messages = listener.listen(from_start=True)
    assert next(messages).id == first.id
    messages.close()
    assert [a.node for a in sender.ack_report(first.id).acks] == ["listener"]
    second = sender.broadcast("two", {}, to=["listener"])
    dropped = listener.listen()
    assert next(dropped).id == second.id
    del dropped  # garbage collected
    assert [a.node for a in sender.ack_report(second.id).acks] == ["listener"]
