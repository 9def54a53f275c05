"""The user CLI (`simgate send/messages/message/inbox/webhooks`) against a real `simgate
run`: in-process through typer's runner, and as spawned processes that are interrupted
for real. The emulated network is the witness of what was sent: every SMS goes to SIM 2's
own number and arrives in the inbox."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
from typer.testing import CliRunner

from simgate.cli import app
from simgate.testing import free_port
from tests.conftest import wait_until
from tests.e2e.gateway import PASSWORD, SIM2, USER, ready_device, start_run
from tests.e2e.relay import CuttingRelay

runner = CliRunner()


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The user's environment: credentials in variables, no config file of the machine's."""
    return {"SIMGATE_USERNAME": USER, "SIMGATE_PASSWORD": PASSWORD,
            "SIMGATE_CLIENT_CONFIG": str(tmp_path / "no-client.toml"), **extra}


def cli(process, tmp_path, *args: str, **env: str):
    return runner.invoke(app, [*args, "--server", process.url],
                         env=env_for(tmp_path, **env))


def api(process) -> httpx.Client:
    """The test's own client; 30 s a request, as a loaded machine may take that long."""
    return httpx.Client(base_url=f"{process.url}/3rdparty/v1", auth=(USER, PASSWORD),
                        timeout=30)


def wait_sync(predicate, timeout: float):
    return asyncio.run(wait_until(predicate, timeout=timeout))


def ready(process) -> None:
    with api(process) as client:
        wait_sync(lambda: (d := client.get("/devices").json()) and d[0]["simCards"], 60)


def spawn(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "simgate", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **env_for(tmp_path)})


def write_csv(path: Path, rows: int, tag: str) -> list[str]:
    texts = [f"{tag} {i}" for i in range(rows)]
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["phone", "text", "sim"])
        for i, text in enumerate(texts):
            writer.writerow([SIM2, text, 1 + i % 2])
    return texts


def received_texts(client: httpx.Client) -> Counter[str]:
    found: Counter[str] = Counter()
    offset = 0
    while page := client.get("/inbox", params={"limit": 500, "offset": offset}).json():
        found.update(m["contentPreview"] for m in page)
        offset += len(page)
    return found


def inbox_when_it_holds(process, count: int, timeout: float) -> Counter[str]:
    """The texts in the inbox once it holds `count` SMS: each look asks for one row and
    its total, so waiting does not load the server that is still taking them in."""
    with api(process) as client:
        wait_sync(lambda: int(client.get("/inbox", params={"limit": 1})
                              .headers["X-Total-Count"]) >= count, timeout)
        return received_texts(client)


def result_lines(path: Path) -> dict[int, dict[str, str]]:
    """The last line of each row of a result file."""
    with path.open(newline="") as file:
        return {int(line["row"]): line for line in csv.DictReader(file)}


def test_send_through_sim_2_and_read_it_back_as_tables_and_json(tmp_path):
    process = start_run(tmp_path)
    try:
        ready(process)
        sent = runner.invoke(app, ["send", "--to", SIM2, "--sim", "2", "--wait", "--json", "-",
                                   "--server", process.url],
                             input="hello through SIM 2\n", env=env_for(tmp_path))
        assert sent.exit_code == 0, sent.output
        state = json.loads(sent.stdout)
        assert state["state"] in ("Sent", "Delivered") and state["simNumber"] == 2

        detail = cli(process, tmp_path, "message", state["id"])
        assert detail.exit_code == 0, detail.output
        assert state["id"] in detail.stdout and "via SIM 2" in detail.stdout
        assert "Pending" in detail.stdout and SIM2 in detail.stdout  # timeline, recipient

        listed = cli(process, tmp_path, "messages", "--json", "--state", state["state"])
        assert [m["id"] for m in json.loads(listed.stdout)] == [state["id"]]
        for sim, expected in ((2, [state["id"]]), (1, [])):
            by_sim = cli(process, tmp_path, "messages", "--json", "--sim", str(sim))
            assert [m["id"] for m in json.loads(by_sim.stdout)] == expected, (sim, by_sim.output)
        table = cli(process, tmp_path, "messages")
        assert state["id"] in table.stdout

        with api(process) as client:
            wait_sync(lambda: received_texts(client)["hello through SIM 2"], 15)
        inbox = cli(process, tmp_path, "inbox", "--json")
        assert inbox.exit_code == 0, inbox.output
        [arrived] = json.loads(inbox.stdout)
        assert arrived["contentPreview"] == "hello through SIM 2"
        assert arrived["simNumber"] == 2
        assert "hello through" in cli(process, tmp_path, "inbox").stdout  # wrapped at 80

        data = cli(process, tmp_path, "send", "--to", SIM2, "--data-port", "5000", "--wait",
                   "--json", "AAEC")  # base64 of bytes 0, 1, 2
        assert data.exit_code == 0, data.output
        assert json.loads(data.stdout)["state"] in ("Sent", "Delivered")
        with api(process) as client:
            wait_sync(lambda: client.get("/inbox", params={"type": "DATA_SMS"}).json(), 15)
        [binary] = json.loads(cli(process, tmp_path, "inbox", "--type", "DATA_SMS",
                                  "--json").stdout)
        assert binary["contentPreview"] == "AAEC"
        one_line_error = cli(process, tmp_path, "send", "--to", SIM2, "--data-port", "5000",
                             "not base64!")
        assert one_line_error.exit_code == 2 and "base64" in one_line_error.stderr

        added = cli(process, tmp_path, "webhooks", "add", "https://example.org/hook",
                    "--event", "sms:sent", "--json")
        assert added.exit_code == 0, added.output
        hook = json.loads(added.stdout)
        listed = json.loads(cli(process, tmp_path, "webhooks", "list", "--json").stdout)
        assert [(h["id"], h["event"], h["url"]) for h in listed] == [
            (hook["id"], "sms:sent", "https://example.org/hook")]
        assert cli(process, tmp_path, "webhooks", "rm", hook["id"]).exit_code == 0
        assert json.loads(cli(process, tmp_path, "webhooks", "list", "--json").stdout) == []
    finally:
        process.stop()


def test_each_failure_is_one_line_and_an_exit_code_scripts_can_tell_apart(tmp_path):
    process = start_run(tmp_path)
    try:
        ready(process)

        def one_line(result, code: int, words: str) -> None:
            assert result.exit_code == code, result.output
            assert "Traceback" not in result.output, result.output
            assert result.exception is None or isinstance(result.exception, SystemExit), (
                result.exception)
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and words in lines[0], result.stderr

        one_line(cli(process, tmp_path, "messages", SIMGATE_PASSWORD="wrong"), 3, "credentials")
        unreachable = runner.invoke(app, ["inbox", "--server", f"http://127.0.0.1:{free_port()}"],
                                    env=env_for(tmp_path))
        one_line(unreachable, 4, "unreachable")
        one_line(cli(process, tmp_path, "send", "--to", "not a number", "hi"), 2, "not a number")
        one_line(cli(process, tmp_path, "send", "--to", SIM2), 2, "text")
        one_line(cli(process, tmp_path, "message", "no-such-id"), 1, "404")
        bad = tmp_path / "bad.csv"
        bad.write_text("number,text\n+12025550102,hi\n")
        one_line(cli(process, tmp_path, "send", "--csv", str(bad)), 2, "phone")
        config = tmp_path / "client.toml"
        config.write_text(f'username = "{USER}"\npassword = "{PASSWORD}"\n')
        config.chmod(0o644)
        readable = runner.invoke(app, ["inbox", "--server", process.url],
                                 env={"SIMGATE_CLIENT_CONFIG": str(config)})
        one_line(readable, 2, "chmod 600")
        config.chmod(0o600)  # the same file, private: its credentials are used
        assert runner.invoke(app, ["inbox", "--server", process.url],
                             env={"SIMGATE_CLIENT_CONFIG": str(config)}).exit_code == 0
        with api(process) as client:  # a token instead of the password; its scopes hold
            token = client.post("/auth/token", json={"scopes": ["inbox:list"]}).json()
        by_token = {"SIMGATE_CLIENT_CONFIG": str(tmp_path / "none.toml"),
                    "SIMGATE_TOKEN": token["access_token"]}
        assert runner.invoke(app, ["inbox", "--server", process.url],
                             env=by_token).exit_code == 0
        one_line(runner.invoke(app, ["messages", "--server", process.url], env=by_token), 3,
                 "messages:list")
        # a row the server refuses: the others go, the exit code says "partial"
        mixed = tmp_path / "mixed.csv"
        mixed.write_text(f"phone,text\n{SIM2},fine\nnot a number,refused\n")
        partial = cli(process, tmp_path, "send", "--csv", str(mixed), "--json")
        assert partial.exit_code == 5, partial.output
        summary = json.loads(partial.stdout)
        assert (summary["accepted"], summary["rejected"]) == (1, 1), summary
        assert summary["errors"][0]["row"] == 2
    finally:
        process.stop()


def test_devices_and_sims_from_the_cli_fit_80_columns_and_remove_a_dead_device(tmp_path):
    """`sims --json` has every SIM with its number; the table at 80 columns drops other
    columns before it cuts a phone number; `devices rm` removes a device that never
    worked, and `/health` stops counting it."""
    process = start_run(tmp_path)
    try:
        ready(process)
        dead = httpx.post(f"{process.url}/mobile/v1/device", auth=(USER, PASSWORD),
                              json={"name": "ttyUSB9", "simCards": []}, timeout=30).json()
        as_json = cli(process, tmp_path, "sims", "--json")
        assert as_json.exit_code == 0, as_json.output
        found = json.loads(as_json.stdout)
        assert {(s["simNumber"], s["phoneNumber"]) for s in found} >= {(2, SIM2)}
        assert all("usage" in s for s in found)
        table = cli(process, tmp_path, "sims")
        assert table.exit_code == 0, table.output
        lines = table.stdout.splitlines()
        assert max(len(line) for line in lines) <= 80, table.stdout
        for sim in found:
            assert any(sim["phoneNumber"] in line for line in lines), table.stdout
        listed = json.loads(cli(process, tmp_path, "devices", "list", "--json").stdout)
        assert dead["id"] in [d["id"] for d in listed] and len(listed) == 2
        assert "ttyUSB9" in cli(process, tmp_path, "devices", "list").stdout
        removed = cli(process, tmp_path, "devices", "rm", dead["id"])
        assert removed.exit_code == 0 and "ttyUSB9" in removed.stdout, removed.output
        left = json.loads(cli(process, tmp_path, "devices", "list", "--json").stdout)
        assert [d["id"] for d in left] == [listed[0]["id"] if listed[0]["id"] != dead["id"]
                                          else listed[1]["id"]]
        unknown = cli(process, tmp_path, "devices", "rm", dead["id"])
        assert unknown.exit_code == 1 and "devices list" in unknown.stderr
    finally:
        process.stop()


def test_no_credentials_names_the_places_looked_at_and_unreachable_wins(tmp_path,
                                                                       monkeypatch):
    """From another directory, every user command (and `sims`) says where it looked
    for credentials, with exit 3; a server that does not answer is exit 4, credentials
    or not."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    bare = {"SIMGATE_CLIENT_CONFIG": str(tmp_path / "none.toml")}
    process = start_run(tmp_path / "gateway")
    try:
        for command in (["messages"], ["sims"], ["devices", "list"], ["inbox"]):
            result = runner.invoke(app, [*command, "--server", process.url], env=bare)
            assert result.exit_code == 3, (command, result.output)
            for place in ("simgate-data", "SIMGATE_DATA_DIR", "none.toml", "SIMGATE_TOKEN"):
                assert place in result.stderr, (command, place, result.stderr)
        dead = f"http://127.0.0.1:{free_port()}"
        for command in (["send", "--to", SIM2, "hi"], ["sims"], ["messages"]):
            result = runner.invoke(app, [*command, "--server", dead], env=bare)
            assert result.exit_code == 4 and "unreachable" in result.stderr, result.output
    finally:
        process.stop()


def test_follow_prints_each_state_change_as_it_comes(tmp_path):
    process = start_run(tmp_path, "--fault", "2:delay=3")  # SIM 2 takes 3 s a send
    follower = None
    try:
        ready(process)
        with api(process) as client:
            def post(text: str, sim: int) -> str:
                return client.post("/messages", json={"textMessage": {"text": text},
                                                      "phoneNumbers": [SIM2],
                                                      "simNumber": sim}).json()["id"]

            first = post("before", 1)
            follower = spawn(tmp_path, "messages", "--follow", "--json", "--interval", "0.2",
                             "--server", process.url)
            lines = iter(follower.stdout)  # one JSON object a line, as the changes come
            assert json.loads(next(lines))["id"] == first  # the listing: it is watching
            watched = post("watched", 2)
            states = []
            for line in lines:
                change = json.loads(line)
                if change["id"] == watched:
                    states.append(change["state"])
                    if change["state"] == "Delivered":
                        break
        # seen while it waited on SIM 2, then at each step: never the same state twice
        assert states[0] in ("Pending", "Processed") and states[-1] == "Delivered", states
        assert len(states) == len(set(states)), states
        follower.send_signal(signal.SIGINT)
        assert follower.wait(15) == 0, follower.stderr.read()
    finally:
        if follower and follower.poll() is None:
            follower.kill()
        process.stop()


def test_a_bulk_send_of_1000_rows_ends_with_every_message_sent_once(tmp_path):
    process = start_run(tmp_path)
    try:
        ready(process)
        texts = write_csv(tmp_path / "list.csv", 1000, "bulk")
        result = tmp_path / "list.result.csv"
        bulk = spawn(tmp_path, "send", "--csv", str(tmp_path / "list.csv"), "--result",
                     str(result), "--no-delivery-report", "--wait", "--json",
                     "--server", process.url)
        stdout, stderr = bulk.communicate(timeout=300)
        assert bulk.returncode == 0, stderr
        summary = json.loads(stdout)
        assert summary["accepted"] == 1000 and summary["states"] == {"Sent": 1000}
        rows = result_lines(result)
        assert len(rows) == 1000 and {r["state"] for r in rows.values()} == {"Sent"}
        with api(process) as client:
            for row in list(rows.values())[::50]:  # the file's ids are the server's
                assert client.get(f"/messages/{row['id']}").json()["state"] == "Sent"
            assert client.get("/messages").headers["X-Total-Count"] == "1000"
        assert inbox_when_it_holds(process, 1000, 120) == Counter(texts)
    finally:
        process.stop()


async def test_an_interrupted_bulk_send_resumes_and_sends_no_row_twice(tmp_path):
    """Ctrl-C, then kill -9, each while requests are on the wire (the server took them,
    the CLI never heard): the third run finishes, and every row went out once."""
    rows = 200  # at most 80 + 100 accepted before the third run: it has rows left to send
    process = start_run(tmp_path)
    relay = await CuttingRelay(process.url).start()
    try:
        async with httpx.AsyncClient(base_url=f"{process.url}/3rdparty/v1",
                                     auth=(USER, PASSWORD), timeout=10) as client:
            await ready_device(client)
            texts = write_csv(tmp_path / "list.csv", rows, "resumed")
            result = tmp_path / "list.result.csv"
            args = ["send", "--csv", str(tmp_path / "list.csv"), "--result", str(result),
                    "--concurrency", "8"]

            for cut_after, stop in ((80, signal.SIGINT), (100, signal.SIGKILL)):
                relay.cut(after=cut_after)  # answers that many sends, then holds the answers
                bulk = spawn(tmp_path, *args, "--server", relay.url)
                # all 8 in flight (or the CLI ended early: its stderr says why)
                await wait_until(lambda b=bulk: relay.held >= 8 or b.poll() is not None,
                                 timeout=120)
                assert bulk.poll() is None, bulk.stderr.read()
                bulk.send_signal(stop)
                _, stderr = await asyncio.to_thread(bulk.communicate, timeout=60)
                if stop == signal.SIGINT:
                    assert bulk.returncode == 130, stderr
                    assert "run the same command again" in stderr
                else:
                    assert bulk.returncode == -signal.SIGKILL
                accepted = [r for r in result_lines(result).values() if r["status"] == "accepted"]
                assert len(accepted) < rows  # stopped mid-way

            relay.release()
            final = spawn(tmp_path, *args, "--wait", "--json", "--server", process.url)
            stdout, stderr = await asyncio.to_thread(final.communicate, timeout=300)
            assert final.returncode == 0, stderr
            assert "resuming" in stderr
            assert json.loads(stdout)["accepted"] == rows

            lines = result_lines(result)
            ids = [lines[n]["id"] for n in range(1, rows + 1)]
            assert len(set(ids)) == rows
            for message_id in ids[::10]:
                assert (await client.get(f"/messages/{message_id}")).status_code == 200
            listed = await client.get("/messages", params={"limit": 1})
            assert listed.headers["X-Total-Count"] == str(rows)  # no row made two messages
            received = await asyncio.to_thread(inbox_when_it_holds, process, rows, 120)
            assert received == Counter(texts)  # each SMS reached the network once
    finally:
        await relay.stop()
        process.stop()


async def test_a_local_server_json_is_used_only_with_its_own_credentials_and_if_ours(tmp_path):
    """A ./simgate-data/server.json names where the credentials go: credentials given
    by flags, variables or the config file never go there, and a data directory another
    user owns is not the user's local gateway at all."""
    heard: list[bytes] = []

    async def catch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heard.append(await reader.read(4096))
        writer.close()

    catcher = await asyncio.start_server(catch, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{catcher.sockets[0].getsockname()[1]}"
    data = tmp_path / "simgate-data"
    data.mkdir(mode=0o700)
    (data / "server.json").write_text(json.dumps({"url": url}))
    nowhere = str(free_port())  # the default server: nobody listens there

    async def messages(**env: str) -> int:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "simgate", "messages", cwd=tmp_path,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "SIMGATE_CLIENT_CONFIG": str(tmp_path / "none.toml"),
                 "SIMGATE_PORT": nowhere, **env})
        return await asyncio.wait_for(process.wait(), 60)

    try:
        assert await messages(SIMGATE_USERNAME="me", SIMGATE_PASSWORD="my-password") == 4
        (data / "credentials.json").write_text(json.dumps({"username": "local",
                                                           "password": "local-secret"}))
        (data / "credentials.json").chmod(0o600)
        assert await messages(SIMGATE_USERNAME="me", SIMGATE_PASSWORD="my-password") == 4
        assert heard == []  # the user's own credentials went nowhere near it
        await messages()  # the local gateway's own credentials, to its own URL
        await wait_until(lambda: heard, timeout=30)
        assert b"Authorization: Basic" in heard[0] and b"my-password" not in heard[0]
        for name in ("server.json", "credentials.json"):
            os.chown(data / name, 65534, 65534)  # planted by another local user
        # the planted files are not read: the default server, where nobody listens (4,
        # which an unreachable server is with or without credentials), and not the catcher
        assert await messages() == 4
        assert len(heard) == 1
    finally:
        catcher.close()


def test_help_shows_whole_summaries_at_80_columns_and_every_webhook_event():
    from simgate.services.webhooks import WebhookEvent

    top = runner.invoke(app, ["--help"], env={"COLUMNS": "80"})
    commands = top.stdout.split("Commands:")[1]
    assert "..." not in commands and "sims" in commands and "devices" in commands, commands
    doctor = " ".join(runner.invoke(app, ["doctor", "--help"], env={"COLUMNS": "200"})
                      .stdout.split())
    assert "--emulator <int range> Check the built-in emulated modem" in doctor, doctor
    add = " ".join(runner.invoke(app, ["webhooks", "add", "--help"], env={"COLUMNS": "300"})
                   .stdout.split())
    missing = [e.value for e in WebhookEvent if e.value not in add]
    assert not missing, missing
