"""MongoDB: the seed's document shared with other services — every value form they write, documents
found by mutexId whatever their _id, mutexctl's own fields void after a foreign write, copies."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pymongo
import pytest
from bson import Int64, ObjectId
from mutexctl import DuplicateMutexError, LockHeldError, Service, Settings
from mutexctl.stores import seed_document

from ..conftest import BUSY_S, Cli, wait_until

pytestmark = pytest.mark.parametrize("store_url", ["mongodb"], indirect=True)

LIVE_MS = 60_000


@pytest.fixture
def collection(store_url: str) -> Iterator[pymongo.collection.Collection]:
    with pymongo.MongoClient(store_url, tz_aware=True) as client:
        yield client.get_default_database()["mutexes"]


def iso(moment: datetime, digits: int = 3, zone: str = "Z") -> str:
    text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{moment.microsecond:06d}".ljust(digits, "0")[:digits]
    return text + zone


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


# takenAt in every form a service writes, for a given moment (all read as that moment, to the ms).
TAKEN_AT_FORMS: dict[str, Any] = {
    "iso-ms-Z": iso,
    "iso-no-fraction": lambda t: iso(t.replace(microsecond=0), 0),
    "iso-micro-offset": lambda t: (t.astimezone(timezone(timedelta(hours=5, minutes=30)))
                                   .isoformat(timespec="microseconds")),
    "iso-nano-Z": lambda t: iso(t, 3)[:-1] + "456789Z",
    "iso-no-zone": lambda t: iso(t, 3, zone=""),
    "iso-space-minus0800": lambda t: t.astimezone(timezone(timedelta(hours=-8))).strftime("%Y-%m-%d %H:%M:%S.")
                                     + f"{t.microsecond // 1000:03d}-0800",
    "bson-date": lambda t: t,
    "epoch-int64": lambda t: Int64(epoch_ms(t)),
    "epoch-double": lambda t: float(epoch_ms(t)),
    "epoch-digit-string": lambda t: str(epoch_ms(t)),
}
TIMEOUT_FORMS: dict[str, Any] = {"int": int, "long": Int64, "double": float, "digit-string": str}
UNREADABLE: dict[str, dict[str, Any]] = {
    "js-date-toString": {"takenAt": "Fri Nov 27 2026 12:03:06 GMT+0000 (Coordinated Universal Time)",
                         "timeout": 1000},
    "java-date-toString": {"takenAt": "Fri Nov 27 12:03:06 UTC 2026", "timeout": 1000},
    "null-takenAt": {"takenAt": None, "timeout": 1000},
    "missing-takenAt": {"timeout": 1000},
    "missing-timeout": {"takenAt": "2020-01-01T00:00:00.000Z"},
    "word-timeout": {"takenAt": "2020-01-01T00:00:00.000Z", "timeout": "one second"},
    "negative-timeout": {"takenAt": "2020-01-01T00:00:00.000Z", "timeout": -5},
    "array-takenAt": {"takenAt": [2026, 11, 27], "timeout": 1000},
    "bool-timeout": {"takenAt": "2020-01-01T00:00:00.000Z", "timeout": True},
}


def foreign_doc(name: str, taken_at: Any, timeout: Any, *, by: str = "java-service-3") -> dict[str, Any]:
    """A lease the way another service's naive upsert writes it: an ObjectId _id, no fence, no holder."""
    return {"_id": ObjectId(), "mutexId": name, "taken": True, "takenAt": taken_at, "takenBy": by,
            "timeout": timeout}


def _try(svc: Service, name: str) -> object:
    try:
        return svc.try_acquire(name, timeout="5s")
    except LockHeldError:
        return None


@pytest.mark.parametrize("form", sorted(TAKEN_AT_FORMS))
def test_a_live_foreign_lease_in_any_takenAt_form_is_held_with_its_real_time_left(
        form: str, service: Service, collection: pymongo.collection.Collection, cli: Cli) -> None:
    now = datetime.now(UTC)
    collection.insert_one(foreign_doc("shared", TAKEN_AT_FORMS[form](now), LIVE_MS))
    with pytest.raises(LockHeldError) as caught:
        service.try_acquire("shared", timeout="5s")
    assert "java-service-3" in caught.value.message and "another service" in caught.value.message
    [state] = json.loads(cli("status", "--json").stdout)["mutexes"]
    assert (state["state"], state["taken_by"], state["foreign"]) == ("held", "java-service-3", True)
    assert LIVE_MS - 5_000 < state["remaining_ms"] <= LIVE_MS
    assert state["timeout_ms"] == LIVE_MS and state["problem"] is None


@pytest.mark.parametrize("form", sorted(TAKEN_AT_FORMS))
def test_an_expired_foreign_lease_in_any_takenAt_form_is_taken_over_in_the_same_document(
        form: str, service: Service, collection: pymongo.collection.Collection) -> None:
    long_ago = datetime.now(UTC) - timedelta(seconds=90)
    inserted = collection.insert_one(foreign_doc("shared", TAKEN_AT_FORMS[form](long_ago), LIVE_MS)).inserted_id
    lease = service.try_acquire("shared", timeout="5s")
    [doc] = collection.find({"mutexId": "shared"})
    assert doc["_id"] == inserted and doc["takenBy"] == "node-a" and lease.fence == 1
    assert doc["takenAt"] == doc["holder"]["takenAt"]  # the seed's form again, stamped


@pytest.mark.parametrize("form", sorted(TIMEOUT_FORMS))
def test_every_timeout_form_counts_on_both_sides_of_the_expiry(
        form: str, service: Service, collection: pymongo.collection.Collection) -> None:
    now = datetime.now(UTC)
    collection.insert_one(foreign_doc("live", iso(now - timedelta(seconds=30)), TIMEOUT_FORMS[form](LIVE_MS)))
    collection.insert_one(foreign_doc("gone", iso(now - timedelta(seconds=90)), TIMEOUT_FORMS[form](LIVE_MS)))
    with pytest.raises(LockHeldError):
        service.try_acquire("live", timeout="5s")
    assert 25_000 < service.status("live")[0].remaining_ms <= 30_000
    assert service.try_acquire("gone", timeout="5s").fence == 1


def test_a_foreign_lease_ends_exactly_at_takenAt_plus_timeout_on_the_server_clock(
        service: Service, collection: pymongo.collection.Collection) -> None:
    collection.insert_one(foreign_doc("short", datetime.now(UTC), 800))
    assert _try(service, "short") is None  # inside the lease
    state = service.status("short")[0]
    assert state.expires_at == state.taken_at + timedelta(milliseconds=800)
    lease = wait_until(lambda: _try(service, "short"), timeout=5)
    assert lease.taken_at >= state.expires_at  # not before, on the server's clock


@pytest.mark.parametrize("form", sorted(UNREADABLE))
def test_a_lease_in_an_unreadable_form_is_never_judged_expired_and_a_forced_release_frees_it(
        form: str, service: Service, collection: pymongo.collection.Collection, cli: Cli) -> None:
    collection.insert_one({"_id": ObjectId(), "mutexId": "odd", "taken": True, "takenBy": "legacy-7",
                           **UNREADABLE[form]})
    refused = cli("acquire", "odd")
    assert refused.returncode == 1, refused.stderr
    assert "expiry is unknown" in refused.stderr and "release odd --force --reason" in refused.stderr
    text = cli("status")
    assert text.returncode == 0 and "unknown" in text.stdout and "expiry unknown" in text.stdout
    [state] = json.loads(cli("status", "--json").stdout)["mutexes"]
    assert (state["state"], state["remaining_ms"], state["taken_by"]) == ("held", None, "legacy-7")
    assert "not a form mutexctl reads" in state["problem"] or "is missing" in state["problem"]
    forced = cli("release", "odd", "--force", "--reason", "INC-9: legacy lease with a broken takenAt")
    assert forced.returncode == 0, forced.stderr
    assert cli("acquire", "odd").returncode == 0


def test_one_document_of_each_odd_form_never_breaks_status_for_the_others(
        service: Service, collection: pymongo.collection.Collection, cli: Cli) -> None:
    service.try_acquire("ours", timeout="1h")
    odd = [{"_id": ObjectId(), "mutexId": f"odd-{name}", "taken": True, "takenBy": "x", **fields}
           for name, fields in UNREADABLE.items()]
    odd += [{"_id": ObjectId(), "mutexId": "odd-fence", "taken": True, "takenAt": "x", "fence": "seven",
             "holder": "not a document", "takenBy": 42},
            {"_id": ObjectId(), "mutexId": "odd-free", "taken": "yes"},
            {"_id": ObjectId(), "name": "no mutexId at all"},
            {"_id": ObjectId(), "mutexId": 1234, "taken": True}]
    collection.insert_many(odd)
    for args in (("status",), ("status", "--json"), ("status", "odd-fence"), ("status", "odd-fence", "--json")):
        done = cli(*args)
        assert done.returncode == 0, (args, done.stderr)
    names = [s["mutex"] for s in json.loads(cli("status", "--json").stdout)["mutexes"]]
    assert "ours" in names and len(names) == len(UNREADABLE) + 3
    states = {s.mutex_id: s for s in service.status()}
    assert states["ours"].state == "held" and states["odd-free"].state == "free"
    assert states["odd-fence"].taken_by == "42" and states["odd-fence"].holder is None


def test_a_mutex_whose_document_has_an_objectid_is_found_by_mutexId_by_every_operation(
        service: Service, collection: pymongo.collection.Collection, cli: Cli) -> None:
    collection.insert_one({"_id": ObjectId(), "mutexId": "svc", "taken": False})
    assert service.P("svc", "node-a", 60_000) is True
    assert [s.state for s in service.status("svc")] == ["held"]
    assert json.loads(cli("status", "svc", "--json").stdout)["mutexes"][0]["taken_by"] == "node-a"
    assert cli("acquire", "svc").returncode == 1  # held: not "never taken", and no second document
    assert service.V("svc") is True
    lease = service.try_acquire("svc", timeout="1h")
    service.renew(lease)
    forced = cli("release", "svc", "--force", "--reason", "test")
    assert forced.returncode == 0 and "force-released 'svc'" in forced.stderr
    assert collection.count_documents({"mutexId": "svc"}) == 1
    assert collection.find_one({"mutexId": "svc"})["fence"] == 2


def test_a_document_mutexctl_inserts_is_named_after_its_mutex(service: Service,
                                                               collection: pymongo.collection.Collection) -> None:
    service.try_acquire("fresh", timeout="5s")
    assert collection.find_one({"mutexId": "fresh"})["_id"] == "fresh"


def test_mutexctl_fields_left_by_an_earlier_lease_do_not_describe_a_foreign_one(
        service: Service, collection: pymongo.collection.Collection, cli: Cli) -> None:
    lease = service.try_acquire("mixed", timeout="1h", command="./old-job --secret-free")
    service.release("mixed", token=lease.fence)
    # another service's P: only the seed's fields change; fence and holder stay behind
    collection.update_one({"mutexId": "mixed"}, {"$set": {"taken": True, "takenAt": iso(datetime.now(UTC)),
                                                           "takenBy": "node-js-1", "timeout": LIVE_MS},
                                                  "$unset": {"expiresAt": ""}})
    with pytest.raises(LockHeldError):
        service.try_acquire("mixed", timeout="5s")
    state = service.status("mixed")[0]
    assert (state.taken_by, state.foreign, state.holder) == ("node-js-1", True, None)
    document = json.loads(cli("status", "mixed", "--json").stdout)["mutexes"][0]
    assert document["command"] is None and document["pid"] is None and document["foreign"] is True
    assert "old-job" not in cli("status").stdout
    # and the former holder's late release (same fence) cannot free it
    with pytest.raises(Exception, match="node-js-1"):
        service.release("mixed", token=lease.fence)
    assert service.status("mixed")[0].taken_by == "node-js-1"


def test_a_stale_expiresAt_of_an_older_mutexctl_never_decides_a_foreign_lease(
        service: Service, collection: pymongo.collection.Collection) -> None:
    past = datetime.now(UTC) - timedelta(hours=1)
    doc = foreign_doc("legacy", iso(datetime.now(UTC)), LIVE_MS, by="node-js-2")
    collection.insert_one({**doc, "expiresAt": past, "fence": 7,
                           "holder": {"host": "old-vm", "pid": 1, "user": "u", "command": "old"}})
    with pytest.raises(LockHeldError):
        service.try_acquire("legacy", timeout="5s")
    assert service.status("legacy")[0].holder is None


def test_a_foreign_takeover_under_our_own_node_id_is_not_ours_to_renew_or_release(
        service: Service, collection: pymongo.collection.Collection) -> None:
    lease = service.try_acquire("same-id", timeout="300ms")
    wait_until(lambda: service.status("same-id")[0].state == "expired", timeout=5)
    collection.update_one({"mutexId": "same-id"}, {"$set": {"takenAt": iso(datetime.now(UTC)),
                                                             "timeout": LIVE_MS, "takenBy": "node-a"}})
    with pytest.raises(Exception, match="cannot renew"):
        service.renew(lease)
    with pytest.raises(Exception, match="cannot release"):
        service.release("same-id", token=lease.fence)
    assert service.status("same-id")[0].state == "held"


def test_renewal_moves_takenAt_so_a_reader_of_the_seed_fields_sees_the_lease_live(
        store_url: str, collection: pymongo.collection.Collection) -> None:
    with Service(Settings(node_id="node-a", store=store_url)) as svc, \
            svc.lock("renewed", timeout="600ms") as held:
        first = collection.find_one({"mutexId": "renewed"})["takenAt"]
        for _ in range(6):  # 1.8 s: three times the timeout
            now = datetime.now(UTC)
            doc = collection.find_one({"mutexId": "renewed"})
            seed_view_ends = datetime.fromisoformat(doc["takenAt"].replace("Z", "+00:00")) + \
                timedelta(milliseconds=doc["timeout"])
            assert seed_view_ends > now, "a reader of the five seed fields would take it now"
            assert doc["holder"]["takenAt"] == doc["takenAt"]
            wait_until(lambda since=now: held.lost or datetime.now(UTC) - since > timedelta(milliseconds=300))
        assert not held.lost and doc["takenAt"] != first
        assert doc["holder"]["since"] < datetime.fromisoformat(doc["takenAt"].replace("Z", "+00:00"))


def test_several_documents_with_one_mutexId_are_never_taken_and_status_says_how_to_fix_it(
        service: Service, collection: pymongo.collection.Collection, cli: Cli) -> None:
    collection.insert_many([{"_id": ObjectId(), "mutexId": "twice", "taken": False},
                            {"_id": ObjectId(), "mutexId": "twice", "taken": True, "takenAt": "2020-01-01T00:00:00Z",
                             "takenBy": "old", "timeout": 10}])
    with pytest.raises(DuplicateMutexError, match="2 documents share mutexId 'twice'"):
        service.try_acquire("twice", timeout="5s")
    refused = cli("acquire", "twice")
    assert refused.returncode == 1 and "2 documents share mutexId 'twice'" in refused.stderr
    assert cli("acquire", "other").returncode == 0  # only the duplicated name is refused
    [state] = json.loads(cli("status", "twice", "--json").stdout)["mutexes"]
    assert state["state"] == "duplicate" and state["documents"] == 2 and "init-schema" in state["why"]
    assert "duplicate" in cli("status").stdout
    forced = cli("release", "twice", "--force", "--reason", "x")
    assert forced.returncode == 1 and "2 documents" in forced.stderr
    init = cli("init-schema")
    assert init.returncode == 4 and "'twice' (2 documents)" in init.stderr, init.stderr
    assert collection.count_documents({"mutexId": "twice"}) == 2  # nothing was changed
    collection.delete_one({"mutexId": "twice", "taken": True})
    assert cli("init-schema").returncode == 0
    assert cli("acquire", "twice").returncode == 0


def test_the_first_write_makes_mutexId_unique_so_a_naive_foreign_upsert_cannot_copy_a_held_mutex(
        service: Service, collection: pymongo.collection.Collection) -> None:
    service.try_acquire("guarded", timeout="1h")
    with pytest.raises(pymongo.errors.DuplicateKeyError):  # what a naive P's upsert meets while it is held
        collection.update_one({"mutexId": "guarded", "taken": False},
                              {"$set": {"taken": True, "takenBy": "js", "takenAt": datetime.now(UTC)}},
                              upsert=True)
    assert collection.count_documents({"mutexId": "guarded"}) == 1


def test_check_reports_a_missing_unique_index_and_init_schema_repairs_it(
        collection: pymongo.collection.Collection, cli: Cli) -> None:
    assert cli("init-schema").returncode == 0
    assert cli("init-schema", "--check").returncode == 0
    collection.drop_index("mutexId_1")
    check = cli("init-schema", "--check")
    assert check.returncode == 4 and "unique index on mutexId" in check.stderr
    dry = cli("init-schema", "--dry-run")
    assert dry.returncode == 0 and "would apply step 4" in dry.stdout
    assert cli("init-schema").returncode == 0
    assert cli("init-schema", "--check").returncode == 0


@pytest.mark.parametrize("value", [
    *(f(datetime(2026, 11, 27, 12, 3, 6, 908123, tzinfo=UTC)) for f in TAKEN_AT_FORMS.values()),
    "2026-02-30T00:00:00Z", "2026-11-27T12:03", "2026-11-27t12:03:06,5+05", "0", "9999999999999", "99999999999999",
    "100000000000000", -1, 1e300, float("nan"), "", " 2026-11-27T12:03:06Z", "2026-11-27", "2026-13-01T00:00:00Z",
    None, True, [1], {"a": 1}])
def test_the_server_and_python_read_a_takenAt_alike(value: Any, collection: pymongo.collection.Collection) -> None:
    collection.insert_one({"_id": "probe", "takenAt": value, "timeout": 1000})
    [doc] = collection.aggregate([{"$match": {"_id": "probe"}}, {"$project": {
        "raw": "$takenAt", "t": seed_document.TAKEN_AT, "e": seed_document.EXPIRY}}])
    ours = seed_document.taken_at_time(doc.get("raw"))  # as stored (a Date keeps milliseconds)
    assert doc["t"] == ours
    assert doc["e"] == (None if ours is None else ours + timedelta(seconds=1))


@pytest.mark.parametrize("value", [0, 1, 1500, Int64(2**40), 12.5, "30000", "0030000", "", "1e3", "-1", -1,
                                   float("inf"), float("nan"), 10**13, None, True, "12345678901234"])
def test_the_server_and_python_read_a_timeout_alike(value: Any, collection: pymongo.collection.Collection) -> None:
    collection.insert_one({"_id": "probe", "timeout": value})
    [doc] = collection.aggregate([{"$match": {"_id": "probe"}}, {"$project": {"raw": "$timeout",
                                                                               "t": seed_document.TIMEOUT}}])
    assert doc["t"] == seed_document.timeout_ms(doc.get("raw"))


def test_a_forced_release_killed_after_its_one_write_keeps_its_record(
        service: Service, store_url: str, collection: pymongo.collection.Collection) -> None:
    import subprocess
    import sys

    from ..conftest import HELPERS

    lease = service.try_acquire("stuck", timeout="1h")
    done = subprocess.run([sys.executable, str(HELPERS / "force_then_die.py"), store_url, "stuck", "INC-1: vm gone"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == -9, done.stderr  # killed between the release and the copy into the history
    history = collection.database["forced_releases"]
    assert history.count_documents({}) == 0
    [state] = service.status("stuck")
    [record] = service.forced_releases("stuck")
    assert state.state == "free" and (record.reason, record.previous_fence) == ("INC-1: vm gone", lease.fence)
    assert [f.reason for f in service.overview("stuck").forced] == ["INC-1: vm gone"]
    service.try_acquire("stuck", timeout="1h")
    service.force_release("stuck", reason="INC-2")  # copies what the dead one left, too
    assert sorted(d["reason"] for d in history.find()) == ["INC-1: vm gone", "INC-2"]
    assert [f.reason for f in service.forced_releases("stuck")] == ["INC-2", "INC-1: vm gone"]


def _mutex_id_indexes(collection: pymongo.collection.Collection) -> dict[str, bool]:
    return {name: bool(spec.get("unique")) for name, spec in collection.index_information().items()
            if [tuple(k) for k in spec["key"]] == [("mutexId", 1)]}


def test_the_unique_index_has_the_name_a_service_s_natural_create_index_gives(
        collection: pymongo.collection.Collection, cli: Cli) -> None:
    """A service that runs createIndex({mutexId: 1}, {unique: true}) after init-schema meets the same
    index (a real mongod refuses the same keys under another name: IndexOptionsConflict)."""
    assert cli("init-schema").returncode == 0
    assert _mutex_id_indexes(collection) == {"mutexId_1": True}
    assert collection.create_index([("mutexId", 1)], unique=True) == "mutexId_1"
    assert _mutex_id_indexes(collection) == {"mutexId_1": True}
    assert cli("init-schema", "--check").returncode == 0


@pytest.mark.parametrize("name", ["mutexId_1", "by_mutex", "mutexId_unique"])
def test_a_unique_index_on_mutexId_of_any_name_counts_and_no_second_one_is_made(
        collection: pymongo.collection.Collection, cli: Cli, name: str) -> None:
    collection.create_index([("mutexId", 1)], unique=True, name=name)  # a service's, before init-schema
    assert cli("init-schema").returncode == 0
    assert cli("init-schema", "--check").returncode == 0
    assert _mutex_id_indexes(collection) == {name: True}
    assert cli("acquire", "x", "--", "true").returncode == 0


def test_a_plain_index_under_the_unique_index_s_name_is_told_not_taken_for_unique(
        collection: pymongo.collection.Collection, cli: Cli) -> None:
    collection.create_index([("mutexId", 1)], name="mutexId_1")  # not unique
    init = cli("init-schema")
    assert init.returncode == 4 and "mutexId cannot be made unique" in init.stderr, init.stderr
    assert "Traceback" not in init.stderr and "hint: drop the conflicting index" in init.stderr
    assert cli("init-schema", "--check").returncode == 4  # (stopped before the step)
    collection.drop_index("mutexId_1")
    assert cli("init-schema").returncode == 0 and _mutex_id_indexes(collection) == {"mutexId_1": True}


def test_a_waiter_behind_another_service_s_lease_backs_off_instead_of_polling_at_the_floor(
        service: Service, collection: pymongo.collection.Collection) -> None:
    """A foreign lease says nothing of its age: the waiter takes the age it has seen, so it polls
    about a dozen times in 3 s (the 25 ms floor would be 120), and still takes the lease at its end."""
    collection.insert_one(foreign_doc("shared", datetime.now(UTC), 2500))
    polls: list[float] = []
    real = service.store.wait_turn

    def counted(*args: Any, **kwargs: Any) -> Any:
        polls.append(time.monotonic())
        return real(*args, **kwargs)

    service.store.wait_turn = counted  # type: ignore[method-assign]
    started = time.monotonic()
    lease = service.acquire("shared", timeout="5s", wait="30s")
    waited = time.monotonic() - started
    behind = [p for p in polls if p - started < 2.0]  # while the foreign lease surely ran
    assert len(behind) <= 12, len(behind)  # 25, 25, 50, 100 … ms, then at most one a second
    assert lease.fence >= 1 and waited < 2.5 + 1.0 + BUSY_S  # taken within about a poll of its end


def test_after_a_dead_slot_holder_the_name_is_free_for_an_exclusive_taker(
        service: Service, other: Service, collection: pymongo.collection.Collection) -> None:
    """The seed view of a semaphore (its latest slot's end) is computed alike by every server: after
    the last slot ran out, an exclusive acquire gets the name (it was "held, ends in 0ms" for ever)."""
    service.try_acquire("s1", timeout="600ms", limit=2)  # its holder dies: never renewed nor released
    doc = collection.find_one({"mutexId": "s1"})
    assert doc is not None and isinstance(doc["timeout"], int) and not isinstance(doc["timeout"], Int64)
    assert 0 < doc["timeout"] <= 600  # the latest slot's time left, an int32 as an exclusive lease's
    wait_until(lambda: _try(other, "s1"), timeout=10 * BUSY_S)
    assert other.status("s1")[0].taken_by == "node-b"


def test_every_operator_the_store_sends_is_in_the_checked_list_and_the_readme_names_the_minimum(
        service: Service, other: Service) -> None:
    """Each command of a workload that uses every kind of lease, the queue, run-once, forced releases,
    status, history and broadcast is searched for operators: each must be in stores/mongodb/operators.py
    (with the version that introduced it), whose highest version is the README's minimum."""
    from pathlib import Path

    from mutexctl.stores.mongodb.base import MongoBase
    from mutexctl.stores.mongodb.operators import MIN_SERVER_VERSION, OPERATORS

    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and key.startswith("$"):
                    found.add(key)
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)
        elif isinstance(value, str) and value.startswith("$$") and value[2:3].isupper():  # a system variable
            found.add(value.split(".")[0])

    real = MongoBase._send

    def spy(self: MongoBase, command: Any) -> Any:
        walk(command.args)
        return real(self, command)

    MongoBase._send = spy  # type: ignore[method-assign]
    try:
        service.init_schema()
        lease = service.try_acquire("x", timeout="5s")
        service.renew(lease)
        service.release("x")
        with service.lock("y", timeout="2s"):
            pass
        slot = service.try_acquire("s", timeout="5s", limit=2)
        service.renew(slot)
        service.release("s", token=slot.fence)
        shared = service.try_acquire("r", timeout="5s", shared=True)
        with pytest.raises(LockHeldError):
            other.acquire("r", timeout="5s", wait="300ms")  # waits in line, announced
        service.release("r", token=shared.fence)
        service.try_acquire("f", timeout="5s")
        other.force_release("f", reason="test")
        service.try_acquire("fs", timeout="5s", limit=3)
        other.force_release("fs", reason="test")
        service.run_once("o", "k", lambda held: None)
        service.clear_once("o", "k", reason="test")
        service.overview(recent=5)
        service.history()
        message = service.broadcast("z", {"q": 1})
        other.listen(once=True, handler=lambda m: 0)
        service.wait_acks(message, wait="1s")
        service.nodes()
        service.store.server_report()
        service.store.schema_problems()
    finally:
        MongoBase._send = real  # type: ignore[method-assign]
    assert {"$set", "$$NOW", "$reduce", "$expr"} <= found  # (the workload reached the pipelines)
    assert found - set(OPERATORS) == set(), "operators sent but not in the checked list"
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert f"minimum server version, {'.'.join(map(str, MIN_SERVER_VERSION))}**" in readme


def test_status_streams_a_fleet_in_batches_and_keeps_each_names_copies_together(
        service: Service, collection: pymongo.collection.Collection, monkeypatch: pytest.MonkeyPatch) -> None:
    from mutexctl.stores.mongodb import status

    monkeypatch.setattr(status, "PAGE", 4)
    for i in range(9):
        service.try_acquire(f"m{i}", timeout="1h")
    # copies of one name that straddle a batch's end, and a batch's worth of copies of another (written
    # by a service of old, before the unique index)
    for name, info in collection.index_information().items():
        if info["key"] == [("mutexId", 1)]:
            collection.drop_index(name)
    collection.insert_many([{"_id": ObjectId(), "mutexId": "m3", "taken": False} for _ in range(2)]
                           + [{"_id": ObjectId(), "mutexId": "m6x", "taken": False} for _ in range(5)])
    reads: list[Any] = []
    send = service.store._send  # type: ignore[attr-defined]
    monkeypatch.setattr(service.store, "_send", lambda cmd: reads.append(cmd) or send(cmd))
    view = service.overview()
    by_name = {s.mutex_id: s for s in view.states}
    assert [s.mutex_id for s in view.states] == sorted(by_name) == [*(f"m{i}" for i in range(7)), "m6x", "m7", "m8"]
    assert (by_name["m3"].state, by_name["m3"].copies) == ("duplicate", 3)
    assert (by_name["m6x"].state, by_name["m6x"].copies) == ("duplicate", 5)
    assert all(by_name[f"m{i}"].state == "held" for i in (0, 1, 2, 4, 5, 6, 7, 8))
    [read] = [c for c in reads if c.collection == "mutexes"]  # one cursor, in batches of PAGE, time-limited
    assert read.verb == "find" and read.options["batch_size"] == 4 and read.options["max_time_ms"]


def test_a_read_over_the_servers_time_limit_is_store_unavailable_not_an_internal_error(
        service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    from mutexctl import StoreUnavailableError
    from pymongo.errors import ExecutionTimeout

    def hopeless(cmd: Any) -> Any:
        raise ExecutionTimeout("operation exceeded time limit", code=50)

    monkeypatch.setattr(service.store, "_send", hopeless)
    with pytest.raises(StoreUnavailableError, match="too slowly"):
        service.overview()


@pytest.mark.parametrize("foreign_write", ["replaceOne", "delete-then-seed-insert", "replace-unflushed"])
def test_the_fence_never_goes_back_after_another_service_replaces_the_document(
        foreign_write: str, service: Service, collection: pymongo.collection.Collection) -> None:
    for _ in range(3):
        lease = service.try_acquire("fenced", timeout="1h")
        service.release("fenced", token=lease.fence)
    assert lease.fence == 3
    if foreign_write != "replace-unflushed":
        service.store.flush_events()  # type: ignore[attr-defined]  # (in the history now, as after a while)
        assert service.store.pending_events() == 0  # type: ignore[attr-defined]
    if foreign_write == "delete-then-seed-insert":  # a seed P's upsert after someone deleted it
        collection.delete_one({"mutexId": "fenced"})
        collection.insert_one({"mutexId": "fenced", "taken": False, "takenBy": "js", "takenAt": iso(datetime.now(UTC)),
                               "timeout": 1000})
    else:  # a seed service's save(): every field it does not write is gone, fence with them
        collection.replace_one({"mutexId": "fenced"}, {"mutexId": "fenced", "taken": False})
    assert "fence" not in (collection.find_one({"mutexId": "fenced"}) or {})
    after = service.try_acquire("fenced", timeout="1h")
    assert after.fence == 4
    assert collection.find_one({"mutexId": "fenced"})["fence"] == 4  # the document says so, too
    service.release("fenced", token=after.fence)  # the lease is whole: its own fence releases it
    assert service.try_acquire("fenced", timeout="1h").fence == 5


def test_a_waiter_that_takes_a_replaced_document_goes_on_from_the_fence_on_record(
        service: Service, other: Service, collection: pymongo.collection.Collection) -> None:
    first = service.try_acquire("queued", timeout="1h")
    service.store.flush_events()  # type: ignore[attr-defined]
    collection.replace_one({"mutexId": "queued"}, {"mutexId": "queued", "taken": True, "takenBy": "seed-svc",
                                                   "takenAt": datetime.now(UTC), "timeout": 1500})
    got = other.acquire("queued", timeout="1h", wait=f"{BUSY_S + 5}s")  # waits in line, then takes it
    assert got is not None and got.fence > first.fence
