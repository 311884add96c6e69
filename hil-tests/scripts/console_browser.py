"""Drives the hub's Control Center in Debian's Chromium with Playwright.

Usage: console_browser.py BASE_URL ADMIN_TOKEN READ_TOKEN SHOTS_DIR CHROMIUM

Logs in, finds the gateway the test's agent made appear, runs a query and
sees its chart, creates and revokes a token, creates an alert whose webhook
is a receiver in this script, pushes data over the threshold and sees the
alert fire in the page and at the receiver; a read-only token sees no
admin pages. Takes a screenshot of each page into SHOTS_DIR. Prints a JSON
report.
"""
import http.server
import json
import sys
import threading
import time
import urllib.request

from playwright.sync_api import sync_playwright

BASE, ADMIN, READER, SHOTS, CHROMIUM = sys.argv[1:6]
report = {"steps": []}
received = []


class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - the stdlib's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
threading.Thread(target=hook.serve_forever, daemon=True).start()
HOOK_URL = f"http://127.0.0.1:{hook.server_address[1]}/hook"


def write_lp(db, body):
    req = urllib.request.Request(
        f"{BASE}/api/v1/write/line-protocol?db={db}", data=body.encode(),
        headers={"Authorization": f"Bearer {ADMIN}"}, method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 204, r.status


def step(name):
    report["steps"].append(name)


def shot(page, name):
    page.screenshot(path=f"{SHOTS}/{name}.png", full_page=True)


requests_seen = []
with sync_playwright() as p:
    browser = p.chromium.launch(
        executable_path=CHROMIUM,
        args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync"])
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("request", lambda r: requests_seen.append(r.url))
    page.on("dialog", lambda d: d.accept())
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    # Log in.
    page.goto(f"{BASE}/ui")
    page.fill("#token", ADMIN)
    shot(page, "login")
    page.click("#login button")
    page.wait_for_selector("#nav a:has-text('Tokens')")
    step("login")

    # Fleet: the test's agent.
    page.wait_for_selector("text=gw-console", timeout=30000)
    report["fleet_health"] = page.inner_text("table tbody tr:first-child td:nth-child(2)")
    shot(page, "fleet")
    page.click("text=gw-console")
    page.wait_for_selector("h2:has-text('Gateway gw-console')")
    page.wait_for_selector("svg.chart polyline[data-series='rows received']", state="attached")
    report["gateway_charts"] = page.locator("svg.chart").count()
    shot(page, "gateway")
    step("fleet")

    # Hub: instance metrics as charts.
    page.goto(f"{BASE}/ui#/hub")
    # A hash change renders the new page in place: wait for this page's own
    # chart, not any chart (the gateway page's are still shown until then).
    page.wait_for_selector("h2:has-text('Hub')")
    page.wait_for_selector("svg.chart[aria-label='ingest rows/s']", state="attached")
    report["hub_charts"] = page.locator("svg.chart").count()
    shot(page, "hub")
    step("hub")

    # Query: a table and a chart; the tables listed.
    page.goto(f"{BASE}/ui#/query")
    page.wait_for_selector("aside li:has-text('plant.boiler')")
    page.fill("#sql", "SELECT time, value FROM plant.boiler ORDER BY time")
    page.click("#run")
    page.wait_for_selector("#result svg.chart polyline")
    report["query_rows"] = page.locator("#result table tbody tr").count()
    report["chart_series"] = page.locator("#result svg.chart polyline").count()
    with page.expect_download() as dl:
        page.click("#csv")
    report["csv_first_line"] = open(dl.value.path()).readline().strip()
    shot(page, "query")
    step("query")

    # Tokens: create (secret shown once), then revoke.
    page.goto(f"{BASE}/ui#/tokens")
    page.wait_for_selector("#token-list table")
    page.fill("#token-name", "ui-made")
    page.select_option("#token-role", "read")
    page.click("#create-token button")
    page.wait_for_selector("#secret-value")
    report["secret_prefix"] = page.inner_text("#secret-value")[:6]
    shot(page, "tokens")
    page.click("button[data-revoke='ui-made']")
    page.wait_for_selector("#token-list tr:has-text('ui-made') .bad")
    report["revoked_status"] = page.inner_text("#token-list tr:has-text('ui-made') .bad")
    step("tokens")

    # Data: set a retention policy, create a last-value cache, delete the policy.
    page.goto(f"{BASE}/ui#/data")
    page.wait_for_selector("#create-retention")
    page.fill("#ret-db", "plant")
    page.fill("#ret-days", "30")
    page.click("#create-retention button")
    page.wait_for_selector("#retention-list td:has-text('plant')")
    page.fill("#lvc-db", "plant")
    page.fill("#lvc-measurement", "boiler")
    page.click("#create-lvc button")
    page.wait_for_selector("#lvc-list td:has-text('boiler')")
    report["lvc_listed"] = True
    shot(page, "data")
    page.click("#retention-list button[data-delete]")
    page.wait_for_selector("#retention-list:has-text('none')")
    report["retention_deleted"] = True
    step("data")

    # Alerts: a rule over the data, fired by new data; the webhook hears it.
    page.goto(f"{BASE}/ui#/alerts")
    page.wait_for_selector("#create-alert")
    page.fill("#alert-name", "boiler-hot")
    page.fill("#alert-sql", "SELECT max(value) FROM plant.boiler")
    page.select_option("#alert-op", ">")
    page.fill("#alert-threshold", "100")
    page.fill("#alert-interval", "1s")
    page.fill("#alert-webhook", HOOK_URL)
    page.click("#create-alert button")
    page.wait_for_selector("[data-state='boiler-hot']")
    report["alert_initial"] = page.inner_text("[data-state='boiler-hot']")
    write_lp("plant", f"boiler,device=d1 value=250 {time.time_ns()}\n")
    state = ""
    for _ in range(60):
        page.reload()
        page.wait_for_selector("[data-state='boiler-hot']")
        state = page.inner_text("[data-state='boiler-hot']")
        if state == "firing" and received:
            break
        time.sleep(0.5)
    report["alert_state"] = state
    report["webhook"] = received[:1]
    shot(page, "alerts")
    page.click("text=boiler-hot")
    page.wait_for_selector("h3:has-text('History')")
    shot(page, "alert")
    step("alerts")

    # Log out; a read-only token sees no admin pages.
    page.click("#logout")
    page.wait_for_selector("#token")
    page.fill("#token", READER)
    page.click("#login button")
    page.wait_for_selector("#nav a:has-text('Query')")
    report["reader_nav"] = page.inner_text("#nav")
    page.goto(f"{BASE}/ui#/tokens")
    page.wait_for_selector("[role=alert]")
    report["reader_tokens_page"] = page.inner_text("[role=alert]")
    # A wrong token is refused at login.
    page.click("#logout")
    page.fill("#token", "ferry_wrong")
    page.click("#login button")
    page.wait_for_selector("[role=alert]")
    report["bad_login"] = page.inner_text("[role=alert]")
    step("roles")

    report["page_errors"] = errors
    report["foreign_requests"] = sorted({u for u in requests_seen if not u.startswith(BASE) and not u.startswith("blob:")})
    browser.close()

print(json.dumps(report))
