"""The user commands of `simgate`: send, messages, message, inbox, webhooks, devices, sims.

They talk to a server over its /3rdparty/v1 API only (simgate.client), so they work
against any server, local or remote; the admin commands (run, serve, users...) stay in
simgate.cli."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the user commands to the `simgate` app."""
    from simgate.usercli import browse, devices, send, webhooks

    # short summaries: the top-level --help shows them whole at 80 columns
    app.command("send", short_help="Send an SMS (or a CSV of them) through a SIM.")(send.send)
    app.command("messages", short_help="List messages, their state and SIM; --follow.")(
        browse.messages)
    app.command("message", short_help="One message: its states, recipients, attempts.")(
        browse.message)
    app.command("inbox")(browse.inbox)
    app.add_typer(webhooks.app, name="webhooks")
    app.add_typer(devices.app, name="devices")
    app.command("sims", short_help="The SIM slots: state, number, sends against limits.")(
        devices.sims)
