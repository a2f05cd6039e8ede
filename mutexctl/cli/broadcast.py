"""``broadcast`` and ``listen``: the intracom commands."""

# (no "from __future__ import annotations": typer reads these signatures at every start, and string
# annotations would make it evaluate each Annotated[..., typer.Option(...)] again)

import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..config import parse_wait_s
from ..errors import MutexctlError, UsageError
from ..intracom import DEFAULT_CHANNEL, AckReport, message_doc
from ..models import Message, human_ms, iso_ms
from ..mutex import Service
from . import exit_codes
from .common import ConfigOpt, DebugOpt, Invocation, JsonOpt, NodeOpt, StoreOpt, VerboseOpt, app, duration_option

ChannelOpt = Annotated[str, typer.Option("--channel", "-c", metavar="NAME", help="The channel (default: default).",
                                         show_default=False)]


class BroadcastOutcomeError(MutexctlError):
    """Some expected node failed or stayed silent; the CLI exits 5 or 1."""

    kind = "broadcast"


@app.command(context_settings={"ignore_unknown_options": False})
def broadcast(
    ctx: typer.Context,
    action: Annotated[str, typer.Argument(metavar="ACTION", help="What the listeners should do, e.g. reload-cache. "
                                                "'broadcast status ID' reports on a message instead.",
                                          show_default=False)],
    message_id: Annotated[Optional[str], typer.Argument(metavar="[ID]", help="With status: the message id.",
                                                        show_default=False)] = None,
    payload: Annotated[Optional[str], typer.Option(
        "--payload", "-p", metavar="JSON|@FILE|-", help="JSON payload (at most 1 MiB): inline, @file, or - for stdin.",
        show_default=False)] = None,
    channel: ChannelOpt = DEFAULT_CHANNEL,
    to: Annotated[Optional[list[str]], typer.Option(
        "--to", metavar="NODE", help="Only these nodes (repeat the option); they are the ones waited for.",
        show_default=False)] = None,
    wait_acks: Annotated[bool, typer.Option("--wait-acks", help="Wait for every expected node's ack.")] = False,
    wait: Annotated[Optional[str], duration_option("-w", "--wait", help="How long --wait-acks waits (default 30s).")
                    ] = None,
    config: ConfigOpt = None, store: StoreOpt = None, node_id: NodeOpt = None, as_json: JsonOpt = False,
    verbose: VerboseOpt = 0, debug: DebugOpt = False,
) -> int:
    """Ask every other instance listening on a channel to run ACTION; print the message id.

    The nodes expected to answer are --to, else the channel's live listeners (minus this node) at send
    time. With --wait-acks: exit 0 when all acked with status 0, 5 when a handler failed, 1 when
    some stayed silent.
    """
    inv = ctx.ensure_object(Invocation).merge(config, store, node_id, as_json, verbose, debug)
    if action == "status":
        if message_id is None:
            raise UsageError("broadcast status needs a message id", hint="mutexctl broadcast status default:12")
        with inv.service() as svc:
            return _report(inv, svc.ack_report(message_id), waited=False)
    if message_id is not None:
        raise UsageError(f"unexpected argument {message_id!r}", hint="only 'broadcast status ID' takes an id")
    wait_s = parse_wait_s(wait, what="--wait") if wait is not None else 30.0
    text = _read_payload(payload)
    with inv.service() as svc:
        message = svc.broadcast(action, text, channel=channel, to=to or ())
        if not wait_acks:
            if inv.as_json:
                inv.out.doc({"ok": True, "message": message_doc(message)})
            else:
                inv.out.data(message.id)
                inv.out.detail(f"sent {action!r} on {channel} as {message.id}; expected: "
                               f"{', '.join(message.expected) or 'no live listener'}")
            return exit_codes.SUCCESS
        if not inv.as_json:
            inv.out.data(message.id)
        report = svc.wait_acks(message, wait=wait_s, on_progress=lambda r: inv.out.progress(_progress(r)))
        return _report(inv, report, waited=True)


def _read_payload(payload: str | None) -> str:
    if payload is None:
        return "{}"
    if payload == "-":
        return sys.stdin.read()
    if payload.startswith("@"):
        path = Path(payload[1:])
        try:
            with path.open("rb") as handle:
                data = handle.read(2 * 1024 * 1024)  # enough to tell "over 1 MiB" without reading it all
        except OSError as exc:
            raise UsageError(f"cannot read --payload file {path}: {exc.strerror}") from None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"--payload file {path} is not UTF-8 text") from None
    return payload


def _progress(report: AckReport) -> str:
    answered = len(report.acks)
    return f"waiting for acks: {answered}/{len(report.message.expected)} (silent: {', '.join(report.silent)})"


def _report(inv: Invocation, report: AckReport, *, waited: bool) -> int:
    code = (exit_codes.HANDLER_FAILED if report.failed else
            exit_codes.CONFLICT if report.silent else exit_codes.SUCCESS)
    if inv.as_json:
        document = {"ok": code == 0, "message": message_doc(report.message),
                    "acked": [_ack_doc(a) for a in report.ok], "failed": [_ack_doc(a) for a in report.failed],
                    "silent": report.silent}
        if code:
            document["error"] = {"kind": "broadcast", "message": _summary(report), "exit_code": code}
        inv.out.doc(document)
        return code
    inv.out.end_progress()
    for ack in report.ok:
        inv.out.note(f"acked by {ack.node}: status 0 in {human_ms(ack.duration_ms)} at {iso_ms(ack.at)}")
    for ack in report.failed:
        inv.out.note(f"FAILED on {ack.node}: status {ack.status} in {human_ms(ack.duration_ms)} at {iso_ms(ack.at)}")
    if code:
        inv.out.fail(BroadcastOutcomeError(_summary(report), hint="see 'mutexctl broadcast status "
                                           f"{report.message.id}'" if waited else None), code)
    elif not report.message.expected:
        inv.out.note("no node was expected to answer (no live listener on the channel at send time)")
    return code


def _summary(report: AckReport) -> str:
    parts = []
    if report.failed:
        parts.append("failed on " + ", ".join(f"{a.node} (status {a.status})" for a in report.failed))
    if report.silent:
        parts.append("no answer from " + ", ".join(report.silent))
    return f"message {report.message.id}: " + "; ".join(parts)


def _ack_doc(ack: object) -> dict[str, object]:
    return {"node": ack.node, "status": ack.status, "at": iso_ms(ack.at),  # type: ignore[attr-defined]
            "duration_ms": ack.duration_ms}  # type: ignore[attr-defined]


@app.command(context_settings={"ignore_unknown_options": False})
def listen(
    ctx: typer.Context,
    command: Annotated[Optional[list[str]], typer.Argument(
        metavar="[-- COMMAND [ARGS]...]", help="Run this for each message, the payload on its stdin.",
        show_default=False)] = None,
    channel: ChannelOpt = DEFAULT_CHANNEL,
    include_self: Annotated[bool, typer.Option("--include-self", help="Also handle this node's own messages.")] = False,
    from_start: Annotated[bool, typer.Option(
        "--from-start", help="Read from the oldest retained message (acked ones are not run again); "
                             "else resume, or a new listener starts at now.")] = False,
    once: Annotated[bool, typer.Option("--once", help="Handle what is waiting now, then exit.")] = False,
    config: ConfigOpt = None, store: StoreOpt = None, node_id: NodeOpt = None, as_json: JsonOpt = False,
    verbose: VerboseOpt = 0, debug: DebugOpt = False,
) -> int:
    """Listen on a channel: run COMMAND (or print a JSON line) for each message, then ack it.

    COMMAND gets MUTEXCTL_MESSAGE_ID, MUTEXCTL_ACTION, MUTEXCTL_SENDER and MUTEXCTL_CHANNEL; its exit
    status is the ack. A restarted listener resumes where it stopped. SIGTERM or SIGINT lets the
    running handler finish, then exits 0.
    """
    inv = ctx.ensure_object(Invocation).merge(config, store, node_id, as_json, verbose, debug)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _signum, _frame: stop.set())
    with inv.service() as svc:
        handler = _command_handler(command) if command else _print_handler
        handled = svc.listen(channel=channel, handler=handler, include_self=include_self, from_start=from_start,
                             once=once, stop=stop)
    inv.out.detail(f"handled {handled} message(s) on {channel}")
    return exit_codes.SUCCESS


def _print_handler(message: Message) -> int:
    print(json.dumps(message_doc(message), ensure_ascii=False), flush=True)
    return 0


def _command_handler(command: list[str]):  # type: ignore[no-untyped-def]
    from ..runner import run_handler

    def handle(message: Message) -> int:
        env = dict(os.environ, MUTEXCTL_MESSAGE_ID=message.id, MUTEXCTL_ACTION=message.action,
                   MUTEXCTL_SENDER=message.sender, MUTEXCTL_CHANNEL=message.channel)
        return run_handler(command, message.payload.encode("utf-8"), env)

    return handle


__all__ = ["Service", "broadcast", "listen"]
