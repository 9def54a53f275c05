"""The user commands of `simgate`: send, messages, message, inbox, webhooks, devices, sims.

They talk to a server over its /3rdparty/v1 API only (simgate.client), so they work
against any server, local or remote; the admin commands (run, serve, users...) stay in
simgate.cli."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the user commands to the `simgate` app."""
    from simgate.usercli import browse, devices, send, webhooks

    app.command("send")(send.send)
    app.command("messages")(browse.messages)
    app.command("message")(browse.message)
    app.command("inbox")(browse.inbox)
    app.add_typer(webhooks.app, name="webhooks")
    app.add_typer(devices.app, name="devices")
    app.command("sims")(devices.sims)
