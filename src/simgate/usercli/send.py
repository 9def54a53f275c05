"""`simgate send`: one message to one or more numbers, or a CSV file of them."""

from __future__ import annotations

import asyncio
import base64
import binascii
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from simgate.client.api import Api
from simgate.client.bulk import (
    FINAL,
    Outcome,
    ResultFile,
    Row,
    read_rows,
    send_rows,
    wait_final,
)
from simgate.domain.sims import MAX_SIM_SLOTS
from simgate.domain.states import ProcessState
from simgate.usercli.common import (
    Exit,
    JsonOpt,
    LazyApi,
    connected,
    err,
    fail,
    one_line_errors,
    out,
    print_json,
)


@connected
def send(
    text: Annotated[str | None, typer.Argument(
        help="The message text; - reads it from stdin (with --data-port: the data,"
             " base64-encoded).")] = None,
    to: Annotated[list[str] | None, typer.Option(
        "--to", help="Recipient phone number (E.164, e.g. +12025550123); repeatable.")] = None,
    csv_file: Annotated[Path | None, typer.Option(
        "--csv", help="Send every row of this CSV file: columns phone, text, optional sim"
                      " and id.")] = None,
    result: Annotated[Path | None, typer.Option(
        "--result", help="With --csv: the result file, one line per row with its message id"
                         " and state [default: CSV.result.csv]; running again with it sends"
                         " only the rows not yet accepted.")] = None,
    sim: Annotated[int | None, typer.Option(
        "--sim", min=1, max=MAX_SIM_SLOTS,
        help="SIM slot to send through (1-based) [default: the server's SIM selection].")]
    = None,
    device: Annotated[str | None, typer.Option("--device", help="Device id to send from.")]
    = None,
    ttl: Annotated[int | None, typer.Option(
        "--ttl", min=5, help="Seconds the message may wait before it fails.")] = None,
    priority: Annotated[int | None, typer.Option(
        "--priority", min=-128, max=127, help="100 or more skips pacing and limits.")] = None,
    data_port: Annotated[int | None, typer.Option(
        "--data-port", min=1, max=65535, help="Send a data SMS to this port.")] = None,
    message_id: Annotated[str | None, typer.Option(
        "--id", help="Message id of your own: sending it again is refused (409), never"
                     " sent twice.")] = None,
    delivery_report: Annotated[bool, typer.Option(
        "--delivery-report/--no-delivery-report",
        help="Ask the network for a delivery report.")] = True,
    wait: Annotated[bool, typer.Option(
        "--wait", help="Wait until each message is Sent, Delivered, Failed or Cancelled.")]
    = False,
    concurrency: Annotated[int, typer.Option(
        "--concurrency", min=1, max=32, help="With --csv: requests in flight.")] = 16,
    json_output: JsonOpt = False,
    *,
    connection: LazyApi,  # given by @connected
) -> None:
    """Send an SMS: `simgate send --to +12025550123 --sim 2 "Hello"`, or a whole CSV file
    with `simgate send --csv list.csv` (resumable: run it again to finish an interrupted
    send; no row is sent twice)."""
    defaults: dict[str, Any] = {"withDeliveryReport": delivery_report}
    for key, value in (("simNumber", sim), ("deviceId", device), ("ttl", ttl),
                       ("priority", priority)):
        if value is not None:
            defaults[key] = value
    if csv_file is not None:
        if to or text is not None or message_id or data_port:
            raise fail("--csv takes the numbers and texts from the file: give no --to, text,"
                       " --id or --data-port with it", Exit.BAD_INPUT)
        connection()  # credentials and server checked before a result file is made
        result_path = result or csv_file.with_name(csv_file.name + ".result.csv")
        code = _bulk(connection, csv_file, result_path, defaults, wait, concurrency,
                     json_output)
        raise typer.Exit(int(code))
    if not to:
        raise fail("give at least one --to NUMBER (or --csv FILE)", Exit.BAD_INPUT)
    if text == "-":
        text = sys.stdin.read().removesuffix("\n")
    if text is None or text == "":
        raise fail("give the text to send (or --csv FILE)", Exit.BAD_INPUT)
    if result is not None:
        raise fail("--result goes with --csv", Exit.BAD_INPUT)
    body = {**defaults, "phoneNumbers": to}
    if message_id:
        body["id"] = message_id
    if data_port is not None:
        try:
            base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise fail("with --data-port, the text is the data in base64 (e.g. `base64 -w0"
                       " file`)", Exit.BAD_INPUT) from None
        body["dataMessage"] = {"data": text, "port": data_port}
    else:
        body["textMessage"] = {"text": text}
    state = connection.run(lambda a: _one(a, body, wait))
    if json_output:
        print_json(state)
    else:
        _print_state(state)
    if state["state"] in ("Failed", "Cancelled"):
        raise typer.Exit(int(Exit.PARTIAL))


async def _one(api: Api, body: dict[str, Any], wait: bool) -> dict[str, Any]:
    """POST the message; with `wait`, poll it until it reaches a state --wait stops at."""
    state = await api.send(body)
    while wait and state["state"] not in FINAL:
        await asyncio.sleep(0.5)
        state = await api.message(state["id"])
    return state


def _print_state(state: dict[str, Any]) -> None:
    sim = state.get("simNumber")
    out.print(f"[bold]{state['id']}[/] {state['state']}"
              + (f" via SIM {sim}" if sim else ""), highlight=False)
    for recipient in state.get("recipients", []):
        error = f"  {recipient['error']}" if recipient.get("error") else ""
        out.print(f"  {recipient['phoneNumber']}: {recipient['state']}{error}", highlight=False)


def _bulk(connection: LazyApi, csv_file: Path, result_path: Path, defaults: dict[str, Any],
          wait: bool, concurrency: int, json_output: bool) -> Exit:
    """Send the CSV's rows (those not yet accepted) and print the summary; the exit code
    says whether every row went."""
    with one_line_errors():  # a bad CSV or result file: exit 2 before anything is sent
        rows = read_rows(csv_file)
        results = ResultFile(result_path)
    try:
        with one_line_errors():
            results.check(rows)
        earlier = sum(o.status == "accepted" for o in results.outcomes.values())
        if earlier:
            err.print(f"resuming from {result_path}: {earlier} of {len(rows)} rows were"
                      " accepted before and are not sent again", highlight=False)
        progress = Progress(TextColumn("{task.description}"), BarColumn(),
                            MofNCompleteColumn(), TextColumn("{task.fields[detail]}"),
                            TimeElapsedColumn(), console=err, disable=json_output)
        counts: Counter[str] = Counter()

        async def work(a: Api) -> None:
            with progress:
                sending = progress.add_task("sending", total=len(rows), completed=earlier,
                                            detail="")

                def sent(outcome: Outcome) -> None:
                    counts[outcome.status] += 1
                    progress.update(sending, advance=1,
                                    detail=f"{counts['rejected']} rejected")

                await send_rows(a, rows, results, defaults, sent, concurrency)
                if not wait:
                    return
                accepted = [o for o in results.outcomes.values() if o.status == "accepted"]
                done = sum(o.state in FINAL for o in accepted)
                waiting = progress.add_task("final   ", total=len(accepted), completed=done,
                                            detail="")
                final: Counter[str] = Counter()

                def finished(outcome: Outcome) -> None:
                    final[outcome.state] += 1
                    progress.update(waiting, advance=1,
                                    detail=f"{final['Failed']} failed")

                await wait_final(a, results, finished, concurrency=concurrency)

        try:
            connection.run(work)
        except KeyboardInterrupt:
            results.close()
            accepted = sum(o.status == "accepted" for o in results.outcomes.values())
            raise fail(f"interrupted: {accepted} of {len(rows)} rows accepted; run the same"
                       f" command again to send the rest (result file {result_path})",
                       Exit.INTERRUPTED) from None
    finally:
        results.close()
    return _summary(rows, results, result_path, json_output)


def _summary(rows: list[Row], results: ResultFile, path: Path, json_output: bool) -> Exit:
    outcomes = [results.outcomes[r.number] for r in rows if r.number in results.outcomes]
    statuses = Counter(o.status for o in outcomes)
    states = Counter(o.state for o in outcomes if o.status == "accepted")
    rejected = [o for o in outcomes if o.status == "rejected"]
    failed = states["Failed"] + states["Cancelled"]
    if json_output:
        print_json({"rows": len(rows), "accepted": statuses["accepted"],
                    "rejected": len(rejected), "states": dict(states),
                    "resultFile": str(path),
                    "errors": [{"row": o.row, "phone": o.phone, "error": o.error}
                               for o in rejected][:100]})
    else:
        reached = [s for s in ProcessState if states[s]]  # in the order of progress
        table = Table("rows", "accepted", "rejected", *reached, box=None)
        table.add_row(str(len(rows)), str(statuses["accepted"]), str(len(rejected)),
                      *(str(states[s]) for s in reached))
        out.print(table)
        for outcome in rejected[:10]:
            out.print(f"  row {outcome.row} ({outcome.phone}): {outcome.error}",
                      highlight=False)
        if len(rejected) > 10:
            out.print(f"  ... and {len(rejected) - 10} more rejected rows", highlight=False)
        out.print(f"result file: {path}", highlight=False)
    return Exit.PARTIAL if rejected or failed else Exit.OK
