"""`simgate webhooks add|list|rm`: where the server posts your events."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from simgate.usercli.common import (
    JsonOpt,
    LazyApi,
    connected,
    out,
    print_json,
)

app = typer.Typer(help="Your webhooks: the URLs the server posts events to.",
                  no_args_is_help=True, rich_markup_mode=None)
# every event the server takes (POST /3rdparty/v1/webhooks)
EVENTS = ("sms:received", "sms:data-received", "sms:sent", "sms:delivered", "sms:failed",
          "sms:cancelled", "system:ping", "mms:received", "mms:downloaded", "app:started",
          "sms:batch:received", "sms:batch:data-received", "mms:batch:received",
          "mms:batch:downloaded", "sim:changed")


@app.command("add")
@connected
def add(
    url: Annotated[str, typer.Argument(help="The receiver, https://...")],
    event: Annotated[str, typer.Option(
        "--event", help=f"The event: {', '.join(EVENTS)}.")] = "sms:received",
    device: Annotated[str | None, typer.Option(
        "--device", help="Only this device's events.")] = None,
    webhook_id: Annotated[str | None, typer.Option(
        "--id", help="Id of your own; an existing id is replaced.")] = None,
    json_output: JsonOpt = False,
    *,
    connection: LazyApi,  # given by @connected
) -> None:
    """Register a webhook (the server checks the URL and the event)."""
    body = {"url": url, "event": event}
    if device:
        body["deviceId"] = device
    if webhook_id:
        body["id"] = webhook_id
    hook = connection.run(lambda a: a.add_webhook(body))
    if json_output:
        print_json(hook)
    else:
        out.print(f"webhook [bold]{hook['id']}[/]: {hook['event']} -> {hook['url']}",
                  highlight=False)


@app.command("list")
@connected
def list_(
    json_output: JsonOpt = False,
    *,
    connection: LazyApi,  # given by @connected
) -> None:
    """List your webhooks."""
    hooks = connection.run(lambda a: a.webhooks())
    if json_output:
        print_json(hooks)
        return
    table = Table("id", "event", "url", "device")
    for hook in hooks:
        table.add_row(hook["id"], hook["event"], hook["url"], hook.get("deviceId") or "all")
    out.print(table)


@app.command("rm")
@connected
def remove(
    webhook_id: Annotated[str, typer.Argument(metavar="ID", help="The webhook's id.")],
    *,
    connection: LazyApi,  # given by @connected
) -> None:
    """Remove a webhook (an id you do not have is no error, as with the API)."""
    connection.run(lambda a: a.remove_webhook(webhook_id))
    out.print(f"webhook {webhook_id} removed", highlight=False)
