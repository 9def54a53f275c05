"""A fake Android phone for the Termux backend: termux-* commands that answer as the real
ones do, read from termux-api 0.53 (SmsSendAPI, SmsInboxAPI, TelephonyAPI, ResultReturner,
TermuxApiPermissionActivity) and termux-api-package (termux-sms-send, termux-sms-list,
termux-api). They exit 0 whatever happened, print JSON indented by two spaces with the real
keys, print `{"error": "Please grant ..."}` when a permission is missing; `termux-sms-send`
reads the text on stdin when no text argument is given, prints nothing, and sends nothing
for a slot without an active SIM; `received` is the phone's local time as
yyyy-MM-dd HH:mm:ss. The phone's state is a JSON file beside the commands.
"""

from __future__ import annotations

import json
import sys

PHONE = f'''#!{sys.executable}
"""A fake Termux:API command; which one is the file name. State: phone.json beside it."""
import json, os, pathlib, sys, time
here = pathlib.Path(__file__).parent
phone = json.loads((here / "phone.json").read_text())
name = pathlib.Path(sys.argv[0]).name
if phone.get("hang"):  # the Termux:API app missing or stopped: termux-api blocks in accept()
    time.sleep(3600)
NEEDS = {{"termux-telephony-deviceinfo": ["READ_PHONE_STATE"],
         "termux-sms-send": ["READ_PHONE_STATE", "SEND_SMS"],
         "termux-sms-list": ["READ_SMS", "READ_CONTACTS"]}}


def dump(value):  # android.util.JsonWriter with setIndent("  "), then println()
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\\n")


def args(spec):
    import getopt
    return getopt.getopt(sys.argv[1:], spec)


if name == "termux-sms-send":  # scripts/termux-sms-send.in: getopts :hn:s:
    opts, rest = args("hn:s:")
    opts = dict(opts)
    if "-n" not in opts:
        print("termux-sms-send: no recipient number given"); sys.exit(1)
    text = sys.stdin.read() if not rest else " ".join(rest) + "\\n"  # echo "$@" | termux-api
missing = ["android.permission." + p for p in NEEDS[name] if p not in phone["granted"]]
if missing:  # TermuxApiPermissionActivity.checkAndRequestPermissions
    dump({{"error": "Please grant the following permission" + ("s" if len(missing) > 1 else "")
          + " to use this command: " + " ,".join(missing)}})
    sys.exit(0)
if name == "termux-telephony-deviceinfo":
    dump({{"data_enabled": "true", "data_activity": "none", "data_state": "connected",
          "device_id": None, "device_software_version": "01",
          "phone_count": phone["phone_count"], "phone_type": "gsm",
          "network_operator": "310260", "network_operator_name": phone["operator"],
          "network_country_iso": "us", "network_type": "lte", "network_roaming": False,
          "sim_country_iso": "us", "sim_operator": "310260",
          "sim_operator_name": phone["operator"], "sim_serial_number": None,
          "sim_subscriber_id": None, "sim_state": phone["sim_state"]}})
elif name == "termux-sms-send":  # SmsSendAPI: prints nothing, whatever happens
    slot = int(opts.get("-s", -1))
    if slot == -1 or slot in phone["active_slots"]:  # else "Sim slot N not found", logged only
        with (here / "sent.jsonl").open("a") as sent:
            sent.write(json.dumps({{"argv": sys.argv[1:], "recipients": opts["-n"].split(","),
                                   "slot": slot, "text": text.strip()}}) + "\\n")
elif name == "termux-sms-list":  # SmsInboxAPI.getAllSms: latest `limit`, oldest first
    opts, _ = args("hqvcdf:l:no:t:")
    limit = int(dict(opts).get("-l", 10))
    inbox = sorted(phone["inbox"], key=lambda m: m["date"])[-limit:]
    dump([{{"threadid": 1, "type": "inbox", "read": False,
           **({{"sender": m["contact"]}} if m.get("contact") else {{}}),
           "address": m["address"], "number": m["address"],
           "received": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(m["date"] / 1000)),
           "body": m["body"], "_id": m["id"]}} for m in inbox])
sys.exit(0)
'''

ALL_PERMISSIONS = ["READ_PHONE_STATE", "SEND_SMS", "READ_SMS", "READ_CONTACTS"]


class FakePhone:
    """The fake commands in `bin_dir` and the phone state they read."""

    def __init__(self, bin_dir):
        self.bin_dir = bin_dir
        self.state = {"granted": list(ALL_PERMISSIONS), "phone_count": 2, "active_slots": [0, 1],
                      "sim_state": "ready", "operator": "Carrier A", "inbox": [], "hang": False}
        for name in ("termux-telephony-deviceinfo", "termux-sms-send", "termux-sms-list"):
            (bin_dir / name).write_text(PHONE)
            (bin_dir / name).chmod(0o755)
        self.save()

    def set(self, **changes):
        self.state.update(changes)
        self.save()

    def save(self):
        (self.bin_dir / "phone.json").write_text(json.dumps(self.state))

    def receive(self, id, address, body, at, contact=None):
        self.state["inbox"].append({"id": id, "address": address, "body": body,
                                    "date": int(at.timestamp() * 1000), "contact": contact})
        self.save()

    @property
    def sent(self):
        path = self.bin_dir / "sent.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
