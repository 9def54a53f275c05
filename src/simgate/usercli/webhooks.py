"""`simgate webhooks add|list|rm`: where the server posts your events."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from simgate.usercli.common import (
    JsonOpt,
    PasswordOpt,
    ServerOpt,
    TokenOpt,
    UserOpt,
    connect,
    out,
    print_json,
    run,
)

app = typer.Typer(help="Your webhooks: the URLs the server posts events to.",
                  no_args_is_help=True, rich_markup_mode=None)
EVENTS = ("sms:received", "sms:data-received", "sms:sent", "sms:delivered", "sms:failed",
          "sms:cancelled", "system:ping", "mms:received", "mms:downloaded", "app:started")


@app.command("add")
def add(
    url: Annotated[str, typer.Argument(help="The receiver, https://...")],
    event: Annotated[str, typer.Option(
        "--event", help=f"The event: {', '.join(EVENTS)}.")] = "sms:received",
    device: Annotated[str | None, typer.Option(
        "--device", help="Only this device's events.")] = None,
    webhook_id: Annotated[str | None, typer.Option(
        "--id", help="Id of your own; an existing id is replaced.")] = None,
    json_output: JsonOpt = False,
    server: ServerOpt = None,
    username: UserOpt = None,
    password: PasswordOpt = None,
    token: TokenOpt = None,
) -> None:
    """Register a webhook (the server checks the URL and the event)."""
    body = {"url": url, "event": event}
    if device:
        body["deviceId"] = device
    if webhook_id:
        body["id"] = webhook_id
    api = connect(server, username, password, token)
    hook = run(api, lambda a: a.add_webhook(body))
    if json_output:
        print_json(hook)
    else:
        out.print(f"webhook [bold]{hook['id']}[/]: {hook['event']} -> {hook['url']}",
                  highlight=False)


@app.command("list")
def list_(
    json_output: JsonOpt = False,
    server: ServerOpt = None,
    username: UserOpt = None,
    password: PasswordOpt = None,
    token: TokenOpt = None,
) -> None:
    """List your webhooks."""
    api = connect(server, username, password, token)
    hooks = run(api, lambda a: a.webhooks())
    if json_output:
        print_json(hooks)
        return
    table = Table("id", "event", "url", "device")
    for hook in hooks:
        table.add_row(hook["id"], hook["event"], hook["url"], hook.get("deviceId") or "all")
    out.print(table)


@app.command("rm")
def remove(
    webhook_id: Annotated[str, typer.Argument(metavar="ID", help="The webhook's id.")],
    server: ServerOpt = None,
    username: UserOpt = None,
    password: PasswordOpt = None,
    token: TokenOpt = None,
) -> None:
    """Remove a webhook (an id you do not have is no error, as with the API)."""
    api = connect(server, username, password, token)
    run(api, lambda a: a.remove_webhook(webhook_id))
    out.print(f"webhook {webhook_id} removed", highlight=False)
