"""The intracom commands: ``broadcast`` (``send``, the default, and ``status``) and ``listen``."""

# (no "from __future__ import annotations": typer reads these signatures at every start, and string
# annotations would make it evaluate each Annotated[..., typer.Option(...)] again)

import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from ..errors import BroadcastError, UsageError
from ..inputs import parse_wait_s
from ..intracom.acks import check
from ..intracom.handler import DEFAULT_HANDLER_TIMEOUT_S, CommandHandler
from ..intracom.messages import MAX_PAYLOAD_BYTES
from ..models import DEFAULT_CHANNEL, AckReport, Message, human_ms, iso_ms
from ..redact import printable
from . import exit_codes
from .common import (
    APP_SETTINGS,
    Command,
    ConfigOpt,
    DebugOpt,
    Invocation,
    JsonOpt,
    NodeOpt,
    StoreOpt,
    VerboseOpt,
    duration_option,
    invocation,
    wait_option,
)
from .documents import ack_doc, message_doc
from .output import json_line

ChannelOpt = Annotated[str, typer.Option("--channel", "-c", metavar="NAME", help="The channel (default: default).",
                                         show_default=False)]


class BroadcastGroup(TyperGroup):
    """``broadcast ACTION …`` is short for ``broadcast send ACTION …`` unless ACTION names a
    subcommand: an action called ``status`` is sent with ``broadcast send status``."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["send", *args]
        return super().parse_args(ctx, args)


BROADCAST = typer.Typer(name="broadcast", cls=BroadcastGroup, no_args_is_help=True, **APP_SETTINGS,
                        help="Ask every other instance listening on a channel to run an action; see its acks.\n\n"
                             "'mutexctl broadcast ACTION' is short for 'mutexctl broadcast send ACTION'.")
LISTEN = typer.Typer(**APP_SETTINGS)


@BROADCAST.command(cls=Command, context_settings={"ignore_unknown_options": False})
def send(
    ctx: typer.Context,
    action: Annotated[str, typer.Argument(metavar="ACTION", help="What the listeners should do, e.g. reload-cache.",
                                          show_default=False)],
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
    allow_none: Annotated[bool, typer.Option(
        "--allow-none", help="With --wait-acks: send even when no node listens (and exit 0).")] = False,
    config: ConfigOpt = None, store: StoreOpt = None, node_id: NodeOpt = None, as_json: JsonOpt = False,
    verbose: VerboseOpt = 0, debug: DebugOpt = False,
) -> int:
    """Send ACTION to the channel's listeners; print the message id.

    The nodes expected to answer are --to, else the channel's live listeners (minus this node) at send
    time. With --wait-acks: exit 0 when all acked with status 0, 5 when a handler failed, 1 when
    some stayed silent, and 1 without sending when no node listens (unless --allow-none).
    """
    inv = invocation(ctx, config, store, node_id, as_json, verbose, debug)
    wait_s = wait_option(wait)
    text = _read_payload(payload)
    with inv.service() as svc:
        message = svc.broadcast(action, text, channel=channel, to=to or (),
                                require_listeners=wait_acks and not allow_none)
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
        report = svc.wait_acks(message, wait=30.0 if wait_s is None else wait_s,
                               on_progress=lambda r: inv.out.progress(_progress(r)))
    return _report(inv, report, waited=True)


@BROADCAST.command("status", cls=Command)
def status(
    ctx: typer.Context,
    message_id: Annotated[str, typer.Argument(metavar="ID", help="The message id broadcast printed, e.g. default:12.",
                                              show_default=False)],
    config: ConfigOpt = None, store: StoreOpt = None, node_id: NodeOpt = None, as_json: JsonOpt = False,
    verbose: VerboseOpt = 0, debug: DebugOpt = False,
) -> int:
    """Report who acked a message, who failed and who is silent (exit 0, 5 or 1, as --wait-acks)."""
    inv = invocation(ctx, config, store, node_id, as_json, verbose, debug)
    with inv.service() as svc:
        report = svc.ack_report(message_id)
    return _report(inv, report, waited=False)


def _read_payload(payload: Optional[str]) -> str:
    if payload is None:
        return "{}"
    if payload == "-":
        return _utf8(sys.stdin.buffer.read(_READ_AT_MOST), "--payload - (stdin)")
    if payload.startswith("@"):
        path = Path(payload[1:])
        try:
            with path.open("rb") as handle:
                data = handle.read(_READ_AT_MOST)
        except OSError as exc:
            raise UsageError(f"cannot read --payload file {path}: {exc.strerror}") from None
        return _utf8(data, f"--payload file {path}")
    return payload


_READ_AT_MOST = 2 * 1024 * 1024  # enough to tell "over 1 MiB" without reading it all


def _utf8(data: bytes, source: str) -> str:
    if len(data) > MAX_PAYLOAD_BYTES:
        raise UsageError(f"{source} is more than 1 MiB ({MAX_PAYLOAD_BYTES} bytes)",
                         hint="send a reference (a URL, a key) instead of the data")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{source} is not UTF-8 text (byte {exc.start} is not)",
                         hint="send JSON text; encode binary data (base64) inside a JSON string") from None


def _progress(report: AckReport) -> str:
    answered = len(report.acks)
    return f"waiting for acks: {answered}/{len(report.message.expected)} (silent: {', '.join(report.silent)})"


def _report(inv: Invocation, report: AckReport, *, waited: bool) -> int:
    """The acks, then the verdict intracom reaches (acks.check): 0, or its error's exit status."""
    document: dict[str, Any] = {"message": message_doc(report.message), "acked": [ack_doc(a) for a in report.ok],
                                "failed": [ack_doc(a) for a in report.failed], "silent": report.silent}
    inv.out.end_progress()
    if not inv.as_json:
        for ack in report.ok:
            inv.out.note(f"acked by {ack.node}: status 0 in {human_ms(ack.duration_ms)} at {iso_ms(ack.at)}")
        for ack in report.failed:
            inv.out.note(f"FAILED on {ack.node}: status {ack.status} in {human_ms(ack.duration_ms)} "
                         f"at {iso_ms(ack.at)}")
    try:
        check(report, point_to_status=waited)
    except BroadcastError as exc:
        code = exit_codes.exit_code_for(exc)
        inv.out.fail(exc, code, **document)
        return code
    if inv.as_json:
        inv.out.doc({"ok": True, **document})
    elif not report.message.expected:
        inv.out.note("no node was expected to answer (no live listener on the channel at send time)")
    return exit_codes.SUCCESS


@LISTEN.command(context_settings={"ignore_unknown_options": False})
def listen(
    ctx: typer.Context,
    command: Annotated[Optional[list[str]], typer.Argument(
        metavar="[-- COMMAND [ARGS]...]", help="Run this for each message, the payload on its stdin.",
        show_default=False)] = None,
    channel: ChannelOpt = DEFAULT_CHANNEL,
    include_self: Annotated[bool, typer.Option("--include-self", help="Also handle this node's own messages.")] = False,
    from_start: Annotated[bool, typer.Option(
        "--from-start", help="Read from the oldest retained message (acked ones are not run again); "
                             "else resume where this node stopped, or (a new node) at now.")] = False,
    once: Annotated[bool, typer.Option("--once", help="Handle what is waiting now, then exit.")] = False,
    handler_timeout: Annotated[Optional[str], duration_option(
        "--handler-timeout", help="Stop a handler running longer (TERM, then KILL) and ack it as failed with "
                                  "status 124; default 10m, inf for no limit.")] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Log only failed handlers on stderr.")] = False,
    config: ConfigOpt = None, store: StoreOpt = None, node_id: NodeOpt = None, as_json: JsonOpt = False,
    verbose: VerboseOpt = 0, debug: DebugOpt = False,
) -> int:
    """Listen on a channel: run COMMAND (or print a JSON line) for each message, then ack it.

    COMMAND gets MUTEXCTL_MESSAGE_ID, MUTEXCTL_ACTION, MUTEXCTL_SENDER and MUTEXCTL_CHANNEL; its exit
    status is the ack. Each handled message is one line on stderr (JSON lines with --json). A restarted
    listener resumes where it stopped. SIGTERM or SIGINT lets the running handler finish (within
    --handler-timeout), then exits 0; if the listener is killed, its handler is killed with it.
    """
    inv = invocation(ctx, config, store, node_id, as_json, verbose, debug)
    limit = parse_wait_s(handler_timeout, what="--handler-timeout") if handler_timeout is not None \
        else DEFAULT_HANDLER_TIMEOUT_S
    if limit == 0:
        raise UsageError("--handler-timeout 0 would stop every handler at once", hint="use e.g. 30s, 10m or inf")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _signum, _frame: stop.set())
    if command:
        runner = CommandHandler(command, limit_s=None if limit == float("inf") else limit)
        handler: Callable[[Message], int] = _logged(runner, inv, quiet=quiet)
    else:
        handler = _print
    with inv.service() as svc:
        handled = svc.intracom.listen(channel=channel, handler=handler, include_self=include_self,
                                      from_start=from_start, once=once, stop=stop)
    inv.out.detail(f"handled {handled} message(s) on {channel}")
    return exit_codes.SUCCESS


def _logged(runner: CommandHandler, inv: Invocation, *, quiet: bool) -> Callable[[Message], int]:
    """``runner``, logging each message it handled as one line on stderr (a JSON line with --json)."""
    def handle(message: Message) -> int:
        started = time.monotonic()
        status = runner(message)
        took_ms = round((time.monotonic() - started) * 1000)
        timed_out = runner.last is not None and runner.last.timed_out
        if quiet and status == 0:
            return status
        if inv.as_json:
            print(json_line({"id": message.id, "action": message.action, "sender": message.sender,
                             "status": status, "duration_ms": took_ms, "timed_out": timed_out}),
                  file=sys.stderr, flush=True)
            return status
        head = f"{message.id} {printable(message.action)} from {printable(message.sender)}"
        if timed_out:
            inv.out.note(f"{head}: TIMED OUT after {human_ms(took_ms)}; stopped (status {status})")
        elif status:
            inv.out.note(f"{head}: FAILED with status {status} in {human_ms(took_ms)}")
        else:
            inv.out.note(f"{head}: status 0 in {human_ms(took_ms)}")
        return status

    return handle


def _print(message: Message) -> int:
    print(json_line(message_doc(message)), flush=True)
    return 0
