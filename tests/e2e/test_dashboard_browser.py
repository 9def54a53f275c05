"""The dashboard in a real headless Chromium against a real `simgate run`: log in, see a
PIN-locked SIM flagged with its advice, send through SIM 2 with the picker and watch the
message reach Delivered without a reload, redrive a webhook that failed, read the run's
sends per SIM on the overview's charts, make and revoke an API token.

Chromium and its driver are Debian's (`chromium`, `chromium-driver`), which `.ci/run`
installs; a missing one fails the tests under CI=true, and elsewhere skips them saying
what to install. Screenshots go to
test-artifacts/dashboard/ (ignored by git).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from simgate.testing import SimgateProcess
from tests.conftest import required_tool
from tests.e2e.gateway import OUTSIDE, PASSWORD, SIM2, USER

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium: pip install -e .[test]")
from selenium.common.exceptions import (  # noqa: E402
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
SEND_DELAY = "4"  # seconds SIM 2 takes to send: the message page opens before it is sent
WAIT = 60.0


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium driven by Selenium, with a phone-sized window."""
    chromium = required_tool(str(CHROMIUM), "chromium")
    chromedriver = required_tool(str(CHROMEDRIVER), "chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=412,915"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(chromedriver))
    driver.set_page_load_timeout(WAIT)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


@pytest.fixture(autouse=True)
def evidence_of_failure(request, browser) -> Iterator[None]:
    """When a test fails, its page as the browser last showed it: a screenshot and the
    HTML beside the others, named after the test."""
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed > failed_before:
        name = f"failed-{request.node.name}"
        browser.save_screenshot(str(ARTIFACTS / f"{name}.png"))
        (ARTIFACTS / f"{name}.html").write_text(
            f"<!-- {browser.current_url} -->\n{browser.page_source}")


class Hook(ThreadingHTTPServer):
    """A webhook receiver on its own thread: answers `status`, records what arrived."""

    def __init__(self) -> None:
        self.status = 500
        self.received: list[tuple[int, dict]] = []  # (status answered, body)
        super().__init__(("127.0.0.1", 0), _HookHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _HookHandler(BaseHTTPRequestHandler):
    server: Hook

    def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status = self.server.status
        self.server.received.append((status, json.loads(body)))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture(scope="module")
def gateway_run(tmp_path_factory) -> Iterator[SimgateProcess]:
    """`simgate run` with three emulated SIMs: SIM 2 slow to send, SIM 3 locked by a PIN."""
    process = SimgateProcess(
        ["run", "--sims", "3", "--fault", f"2:delay={SEND_DELAY}", "--fault", "3:pin"],
        tmp_path_factory.mktemp("dashboard") / "run",
        env={"SIMGATE_USERNAME": USER, "SIMGATE_PASSWORD": PASSWORD,
             "SIMGATE_ALLOW_PRIVATE_WEBHOOKS": "true",
             "SIMGATE_WEBHOOK_RETRY_BASE": "0.2"}).start()
    with httpx.Client(base_url=f"{process.url}/3rdparty/v1", auth=(USER, PASSWORD),
                      timeout=30) as api:
        _until(lambda: any(len(d["simCards"]) == 3 for d in api.get("/devices").json()),
               "the agent to register its three SIMs")
    yield process
    process.stop()


@pytest.fixture
def api(gateway_run) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{gateway_run.url}/3rdparty/v1", auth=(USER, PASSWORD),
                      timeout=30) as client:
        yield client


def _until(predicate: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    """Wait for a predicate, polling (WebDriverWait takes any callable); an element that
    a live update replaced meanwhile is looked up again."""
    try:
        return WebDriverWait(None, timeout, poll_frequency=0.1, ignored_exceptions=(
            NoSuchElementException, StaleElementReferenceException)).until(
            lambda _: predicate())
    except TimeoutException:
        raise AssertionError(f"waited {timeout} s for {what}") from None


def _shot(driver: Any, name: str) -> None:
    """A screenshot, after checking the console: no script error, nothing the page's
    Content-Security-Policy refused."""
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def _log_in(driver: Any, url: str) -> None:
    driver.delete_all_cookies()
    driver.get(f"{url}/messages")
    assert "/login" in driver.current_url  # a page needs a login first
    driver.find_element(By.NAME, "username").send_keys(USER)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "#login button").click()
    _until(lambda: driver.current_url.endswith("/messages"), "the login to lead back")


def test_login_and_a_pin_locked_sim_flagged_with_advice(browser, gateway_run):
    _log_in(browser, gateway_run.url)
    browser.get(gateway_run.url + "/devices")
    locked = browser.find_element(By.CSS_SELECTOR, 'section.sim[data-status="PinRequired"]')
    assert locked.find_element(By.TAG_NAME, "h3").text.startswith("SIM 3")
    advice = locked.find_element(By.CSS_SELECTOR, ".advice").text
    assert "PIN" in advice and "AT+CPIN" in advice, advice
    ready = browser.find_elements(By.CSS_SELECTOR, 'section.sim[data-status="Ready"]')
    assert len(ready) == 2 and not ready[0].find_elements(By.CSS_SELECTOR, ".advice")
    _shot(browser, "devices-phone")


def test_send_through_sim_2_and_watch_it_reach_delivered(browser, gateway_run, api):
    _log_in(browser, gateway_run.url)
    browser.get(gateway_run.url + "/send")
    text = "Hello from the dashboard, through SIM 2"
    browser.find_element(By.NAME, "recipients").send_keys(OUTSIDE)
    browser.find_element(By.NAME, "text").send_keys(text)
    _until(lambda: browser.find_element(By.ID, "chars").text == str(len(text)),
           "the live counter to count the text")
    _until(lambda: browser.find_element(By.ID, "encoding").text == "GSM-7",
           "the counter to say GSM-7")
    browser.find_element(By.NAME, "text").send_keys(" ж")  # not GSM-7: UCS-2 from here
    _until(lambda: browser.find_element(By.ID, "encoding").text == "UCS-2",
           "the counter to switch to UCS-2")
    picker = Select(browser.find_element(By.ID, "sim"))
    picker.select_by_visible_text(next(o.text for o in picker.options
                                       if o.text.startswith("SIM 2 ")))
    _shot(browser, "send-form")
    browser.find_element(By.CSS_SELECTOR, "#send button").click()
    _until(lambda: "/messages/" in browser.current_url, "the message page")
    message_id = browser.current_url.rsplit("/", 1)[1]
    browser.execute_script("window.stayed = true")  # gone if the page reloads
    first = browser.execute_script("return document.getElementById('state').textContent")
    assert first != "Delivered", "SIM 2 takes seconds to send: the page opens before"
    _until(lambda: browser.find_element(By.ID, "state").text == "Delivered",
           "the page to show Delivered")
    assert browser.execute_script("return window.stayed === true")
    assert browser.find_element(By.ID, "sim-used").text == "2"
    assert "Delivered" in browser.find_element(By.CSS_SELECTOR, "ol.timeline").text
    _shot(browser, "message-delivered")
    state = api.get(f"/messages/{message_id}").json()
    assert state["state"] == "Delivered" and state["simNumber"] == 2
    browser.get(gateway_run.url + "/messages")
    row = browser.find_element(By.ID, f"message-{message_id}")
    assert row.get_attribute("data-state") == "Delivered"
    assert row.find_element(By.CSS_SELECTOR, ".sim-used").text == "2"
    browser.get(gateway_run.url + "/devices")  # SIM 2's sends today count it
    usage = browser.find_element(By.CSS_SELECTOR, 'section.sim[id$="-2"] .usage').text
    assert usage.startswith("today 1/") or usage.startswith("today 1,"), usage


def test_the_message_list_follows_states_without_reload(browser, gateway_run, api):
    _log_in(browser, gateway_run.url)
    _until(lambda: browser.execute_script("return document.body.dataset.live") == "on",
           "the list's event stream to open")
    browser.execute_script("window.stayed = true")
    sent = api.post("/messages", json={"textMessage": {"text": "watch the list"},
                                       "phoneNumbers": [OUTSIDE], "simNumber": 1})
    assert sent.status_code == 202, sent.text
    row = f"message-{sent.json()['id']}"
    _until(lambda: browser.find_element(By.ID, row).get_attribute("data-state") == "Delivered",
           "the new message's row to show Delivered")
    assert browser.execute_script("return window.stayed === true")
    assert browser.find_element(By.CSS_SELECTOR, f"#{row} .sim-used").text == "1"
    _shot(browser, "messages-live")
    browser.set_window_size(1280, 900)
    try:
        _shot(browser, "messages-desktop")
    finally:
        browser.set_window_size(412, 915)


def test_the_inbox_shows_an_sms_as_it_arrives(browser, gateway_run, api):
    _log_in(browser, gateway_run.url)
    browser.get(gateway_run.url + "/inbox")
    _until(lambda: browser.execute_script("return document.body.dataset.live") == "on",
           "the inbox's event stream to open")
    browser.execute_script("window.stayed = true")
    text = "from SIM 1 to SIM 2, seen in the inbox"
    sent = api.post("/messages", json={"textMessage": {"text": text},
                                       "phoneNumbers": [SIM2], "simNumber": 1})
    assert sent.status_code == 202, sent.text
    _until(lambda: text in browser.find_element(By.ID, "inbox").text,
           "the SMS to appear in the inbox")
    assert browser.execute_script("return window.stayed === true")
    _shot(browser, "inbox-live")


def test_redrive_a_failed_webhook(browser, gateway_run, api):
    hook = Hook()
    try:
        # the fewest retries the settings take (the Android app refuses 0): one
        response = api.patch("/settings", json={"webhooks": {"retry_count": 1}})
        assert response.status_code == 200, response.text
        _log_in(browser, gateway_run.url)
        browser.get(gateway_run.url + "/webhooks")
        browser.find_element(By.NAME, "url").send_keys(hook.url)
        Select(browser.find_element(By.NAME, "event")).select_by_visible_text("sms:sent")
        browser.find_element(By.CSS_SELECTOR, "#add-webhook button").click()
        _until(lambda: hook.url in browser.find_element(By.ID, "webhooks").text,
               "the webhook in the list")
        # no delivery report asked: Sent is its last state, and its sms:sent event sure
        sent = api.post("/messages", json={"textMessage": {"text": "webhook me"},
                                           "phoneNumbers": [OUTSIDE], "simNumber": 1,
                                           "withDeliveryReport": False})
        assert sent.status_code == 202, sent.text
        _until(lambda: api.get("/webhooks/deliveries", params={"state": "failed"}).json(),
               "the delivery to fail (the receiver answers 500, one retry)")
        assert [status for status, _ in hook.received] == [500, 500]
        browser.get(gateway_run.url + "/webhooks")
        failed = browser.find_element(By.CSS_SELECTOR, '#deliveries tr[data-status="failed"]')
        assert "500" in failed.text
        _shot(browser, "webhook-failed")
        hook.status = 200
        browser.find_element(By.CSS_SELECTOR, "#webhooks button.redrive").click()
        notice = _until(lambda: browser.find_element(By.CSS_SELECTOR, ".notice").text,
                        "the page the redrive leads to")
        assert notice == "1 failed delivery queued to be sent again.", notice
        _until(lambda: [s for s, _ in hook.received] == [500, 500, 200],
               "the redriven delivery")
        assert hook.received[2][1]["payload"]["messageId"] == sent.json()["id"]

        def delivered() -> bool:
            browser.refresh()
            return bool(browser.find_elements(
                By.CSS_SELECTOR, '#deliveries tr[data-status="delivered"]'))

        _until(delivered, "the webhooks page to show it delivered")
        _shot(browser, "webhook-redriven")
    finally:
        hook.shutdown()
        hook.server_close()


def _sends_per_sim(api: httpx.Client) -> dict[str, int]:
    """The run's messages sent through each SIM, as the API lists them."""
    counts: dict[str, int] = {}
    for message in api.get("/messages", params={"limit": 100}).json():
        if message.get("simNumber") and message["state"] != "Pending":
            label = f"SIM {message['simNumber']}"
            counts[label] = counts.get(label, 0) + 1
    return counts


def _legend(driver: Any, chart: str) -> dict[str, int]:
    return {item.get_attribute("data-series"): int(item.get_attribute("data-total"))
            for item in driver.find_elements(By.CSS_SELECTOR, f"#{chart}-legend li")}


def test_the_overview_charts_the_sends_of_this_run_per_sim_and_follows_them(
        browser, gateway_run, api):
    """Each chart is drawn (an SVG with marks of a real size), its legend counts the
    run's sends through each SIM, and a new send shows up without a reload."""
    sent = api.post("/messages", json={"textMessage": {"text": "for the overview"},
                                       "phoneNumbers": [OUTSIDE], "simNumber": 1})
    assert sent.status_code == 202, sent.text
    _until(lambda: api.get(f"/messages/{sent.json()['id']}").json()["state"] == "Delivered",
           "the message to be delivered")
    _log_in(browser, gateway_run.url)
    browser.get(gateway_run.url + "/")
    expected = _sends_per_sim(api)
    assert expected.get("SIM 1"), expected
    for chart in ("chart-hours", "chart-days"):
        assert _legend(browser, chart) == expected, chart
        svg = browser.find_element(By.ID, chart)
        assert svg.size["width"] > 200 and svg.size["height"] > 50, svg.size
        marks = svg.find_elements(By.CSS_SELECTOR, "rect[data-count]")
        assert sum(int(m.get_attribute("data-count")) for m in marks) == sum(expected.values())
        assert all(m.size["height"] > 0 for m in marks)
    delivery = browser.find_element(By.ID, "chart-delivery")
    assert delivery.size["width"] > 100
    assert browser.find_element(By.ID, "delivery-rate").text.startswith("100%")
    assert int(browser.find_element(By.ID, "tile-online").text.split()[0]) == 1
    _shot(browser, "overview-phone")
    _until(lambda: browser.execute_script("return document.body.dataset.live") == "on",
           "the overview's event stream to open")
    browser.execute_script("window.stayed = true")
    again = api.post("/messages", json={"textMessage": {"text": "one more for the chart"},
                                        "phoneNumbers": [OUTSIDE], "simNumber": 1})
    assert again.status_code == 202, again.text
    _until(lambda: _legend(browser, "chart-hours").get("SIM 1") == expected["SIM 1"] + 1,
           "the chart to count the new send")
    assert browser.execute_script("return window.stayed === true")
    browser.set_window_size(1280, 900)
    try:
        _shot(browser, "overview-desktop")
    finally:
        browser.set_window_size(412, 915)


def test_a_token_made_on_the_token_page_works_until_it_is_revoked(browser, gateway_run):
    _log_in(browser, gateway_run.url)
    browser.get(gateway_run.url + "/tokens")
    for scope in ("messages:send", "messages:read"):
        browser.find_element(By.CSS_SELECTOR, f'input[name="scope"][value="{scope}"]').click()
    Select(browser.find_element(By.NAME, "ttl")).select_by_visible_text("1 day")
    browser.find_element(By.CSS_SELECTOR, "#new-token button").click()
    token = _until(lambda: browser.find_element(By.ID, "access-token").text,
                   "the new token, shown once")
    _shot(browser, "token-made")
    body = {"textMessage": {"text": "sent with a dashboard token"}, "phoneNumbers": [OUTSIDE]}
    bearer = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=f"{gateway_run.url}/3rdparty/v1", timeout=30) as client:
        sent = client.post("/messages", json=body, headers=bearer)
        assert sent.status_code == 202, sent.text
        assert client.get(f"/messages/{sent.json()['id']}", headers=bearer).status_code == 200
        assert client.get("/webhooks", headers=bearer).status_code == 403  # not its scope
        browser.get(gateway_run.url + "/tokens")
        assert token not in browser.page_source  # shown once only
        rows = browser.find_elements(By.CSS_SELECTOR, "#tokens tbody tr")
        assert len(rows) == 1 and "messages:read, messages:send" in rows[0].text
        rows[0].find_element(By.CSS_SELECTOR, "button.danger").click()
        _until(lambda: browser.find_element(By.CSS_SELECTOR, ".notice").text,
               "the page the revocation leads to")
        assert browser.find_elements(By.ID, "no-tokens")
        _shot(browser, "token-revoked")
        refused = client.post("/messages", json=body, headers=bearer)
        assert refused.status_code == 401 and "revoked" in refused.json()["message"]
