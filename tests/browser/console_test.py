"""The console in a real browser: Debian's chromium driven over WebDriver
(Selenium, driver download off), against a console started by
tests/integration/console_browser.sh, which passes what it set up in the
environment:

  CONSOLE_URL     the console (idle expiry 30 min)
  SHORT_URL       a second console whose sessions expire after IDLE_SECONDS idle
  EVIL_URL        a page of another site with a form posting to the console
  PASSWORD        the password of vic (viewer), ann (support), ada (admin)
  AS_OF, DAY_M1   the tests' day and the day before
  AWAY_ASSIGNMENT an assignment whose pending reminder's recipient is away
  RUN_DAYS        run days on the overview's chart (one point each)
  HOSTILE_ID      an assignment id in the outbox that holds <script>
  SCREENSHOTS     where every page's screenshot goes
  PGHOST, PGPORT, PGDATABASE   the database, for checks (psql as postgres)

Prints "ok - ..." / "FAIL - ..." per check and exits non-zero on a failure.
"""

import os
import subprocess
import sys
import time

os.environ["SE_OFFLINE"] = "true"  # never let Selenium Manager fetch a driver

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

URL = os.environ["CONSOLE_URL"]
SHORT_URL = os.environ["SHORT_URL"]
EVIL_URL = os.environ["EVIL_URL"]
PASSWORD = os.environ["PASSWORD"]
AS_OF = os.environ["AS_OF"]
DAY_M1 = os.environ["DAY_M1"]
AWAY_ASSIGNMENT = os.environ["AWAY_ASSIGNMENT"]
RUN_DAYS = int(os.environ["RUN_DAYS"])
HOSTILE_ID = os.environ["HOSTILE_ID"]
IDLE_SECONDS = int(os.environ["IDLE_SECONDS"])
SHOTS = os.environ["SCREENSHOTS"]
REASON = "<script>alert('reason')</script> phoned, logged on paper"

failed = 0


def check(description, condition, detail=""):
    global failed
    if condition:
        print(f"ok - {description}")
    else:
        failed += 1
        print(f"FAIL - {description} {detail}")


def sql(query):
    out = subprocess.run(["psql", "-X", "-At", "-U", "postgres", "-c", query], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1400,1000"]:
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


d = browser()


def shot(name):
    """A full-page screenshot of what the browser shows now."""
    height = d.execute_script("return document.documentElement.scrollHeight")
    chrome = d.execute_script("return window.outerHeight - window.innerHeight")  # the window's own bars
    d.set_window_size(1400, min(max(height, 700), 4000) + chrome)
    d.save_screenshot(os.path.join(SHOTS, f"{name}.png"))
    d.set_window_size(1400, 1000)


def text(css):
    found = d.find_elements(By.CSS_SELECTOR, css)
    return found[0].text if found else None


def present(css):
    return len(d.find_elements(By.CSS_SELECTOR, css)) > 0


def no_alert():
    try:
        d.switch_to.alert
        return False
    except NoAlertPresentException:
        return True


def login(user, password=PASSWORD, base=URL):
    d.delete_all_cookies()
    d.get(base + "/login")
    d.find_element(By.NAME, "user").send_keys(user)
    d.find_element(By.NAME, "password").send_keys(password)
    d.find_element(By.CSS_SELECTOR, "form.login button").click()
    settle("#role, #login-error")


def set_value(name, value, form_css):
    """Fills a field (date inputs take their value in the page's format)."""
    field = d.find_element(By.CSS_SELECTOR, f"{form_css} [name={name}]")
    d.execute_script("arguments[0].value = arguments[1]", field, value)


def settle(css, seconds=15):
    """Waits until the page shows `css` (after a click that navigates: the
    click may return before the next page is there). The seconds are only a
    safety net against a hang; nothing depends on how fast it is."""
    deadline = time.time() + seconds
    while not present(css) and time.time() < deadline:
        time.sleep(0.05)


def path():
    return d.current_url.split("://", 1)[1].split("/", 1)[1]


try:
    # --- login, wrong password ------------------------------------------------
    d.get(URL + "/")
    check("a page without a session shows the login page", d.current_url.startswith(URL + "/login"))
    shot("login")
    login("ann", "wrong password")
    check("a wrong password: one generic message, still on the login page",
          text("#login-error") == "Login failed: the role or password was not accepted."
          and d.current_url.startswith(URL + "/login"), text("#login-error"))
    shot("login-failed")

    # --- support: the overview, the charts ---------------------------------------
    login("ann")
    check("support logs in and lands on the overview", path() == "" and text("#role") == "ann", d.current_url)
    circles = d.find_elements(By.CSS_SELECTOR, "#chart-runs svg circle")
    check(f"the run chart holds the seeded runs: one point per run day ({RUN_DAYS})", len(circles) == RUN_DAYS,
          f"got {len(circles)}")
    threshold = [p for p in d.find_elements(By.CSS_SELECTOR, "#chart-runs svg polyline")
                 if p.get_attribute("stroke").upper() == "#D62728"]
    flat = [p for p in threshold
            if len({pt.split(",")[1] for pt in p.get_attribute("points").split()}) == 1]
    check("the long-run threshold is drawn as a horizontal line", len(flat) >= 1)
    check("the message chart is drawn", present("#chart-messages svg polyline"))
    check("the threshold's legend names followup.alert_after (30 min)",
          "long-run alert (30 min)" in d.find_element(By.CSS_SELECTOR, "#chart-runs svg").get_attribute("innerHTML"))
    shot("overview")

    # --- support corrects a last contact -----------------------------------------
    d.get(f"{URL}/assignments/1?as_of={AS_OF}")
    check("support is offered the correction and snooze forms",
          present("#form-last-contact") and present("#form-snooze"))
    set_value("date", DAY_M1, "#form-last-contact")
    d.find_element(By.CSS_SELECTOR, "#form-last-contact [name=reason]").send_keys(REASON)
    d.find_element(By.CSS_SELECTOR, "#form-last-contact button").click()
    settle("#corrections")
    check("the form answers with the assignment's page", path() == "assignments/1", d.current_url)
    check("explain shows the new last contact", text("#last-contact") == DAY_M1, text("#last-contact"))
    check("... from the correction", "correction" in (text("#last-contact-source") or ""), text("#last-contact-source"))
    rows = d.find_elements(By.CSS_SELECTOR, "#corrections tbody tr")
    check("the correction is listed under ann's name, the <script> reason as text",
          rows and rows[0].find_element(By.CSS_SELECTOR, "td.by").text == "ann"
          and rows[0].find_element(By.CSS_SELECTOR, "td.reason").text == REASON)
    check("... and nothing ran: no alert, no script element", no_alert() and not present("script"))
    check("the database has it, corrected_by = ann",
          sql("SELECT corrected_by || '|' || new_value FROM followup.contact_corrections "
              "WHERE assignment_id = '1' ORDER BY correction_id DESC LIMIT 1") == f"ann|{DAY_M1}")
    d.get(f"{URL}/assignments/1?as_of={AS_OF}")
    shot("assignment")
    d.get(f"{URL}/assignments/{AWAY_ASSIGNMENT}")
    held = [c.text for c in d.find_elements(By.CSS_SELECTOR, "td.held[data-gate=recipient_away]")]
    check("a reminder held back by the recipient's absence says so, with its end",
          len(held) == 1 and held[0].startswith("the recipient is away until "), str(held))
    check("... the absence is listed, with the form to record another",
          "hiking in the mountains" in (text("#absences") or "") and present("#form-away"))
    shot("assignment-away")
    d.get(URL + "/audit")
    audit_rows = [r for r in d.find_elements(By.CSS_SELECTOR, "#audit tbody tr")
                  if r.find_element(By.CSS_SELECTOR, "td.reason").text == REASON]
    check("the audit shows it under ann's own role name",
          len(audit_rows) == 1 and audit_rows[0].find_element(By.CSS_SELECTOR, "td.by").text == "ann")
    shot("audit")

    # --- a cross-site post is refused ----------------------------------------------
    before = sql("SELECT count(*) FROM followup.contact_corrections")
    d.get(EVIL_URL)
    d.find_element(By.CSS_SELECTOR, "button").click()
    settle("#sqlstate")
    check("a post from another site is refused (403 page)", text("#sqlstate") == "42501" and "another site" in
          (text("#error") or ""), f"{text('#error')!r} {text('#sqlstate')!r}")
    check("... and changed nothing", sql("SELECT count(*) FROM followup.contact_corrections") == before)

    # --- logout ------------------------------------------------------------------------
    d.get(URL + "/")
    d.find_element(By.CSS_SELECTOR, "form.logout button").click()
    settle("form.login")
    check("logout shows the login page", d.current_url.startswith(URL + "/login"))
    d.get(URL + "/outbox")
    check("... and the session is over", d.current_url.startswith(URL + "/login"))

    # --- a viewer: no actions, a forged post is 403 ---------------------------------
    login("vic")
    d.get(f"{URL}/assignments/1?as_of={AS_OF}")
    check("a viewer is offered no correction, snooze or unsnooze",
          not present("#form-last-contact") and not present("#form-snooze") and not present("#form-unsnooze"))
    d.get(URL + "/outbox")
    check("... no cancel or requeue on the outbox", not present("input[name=ids]") and not present("button[value=cancel]"))
    d.get(URL + "/runs")
    check("... no Run now", "Run now" not in d.page_source)
    before = sql("SELECT count(*) || '|' || max(correction_id) FROM followup.contact_corrections")
    last = sql("SELECT last_contact_date FROM app.assignments WHERE id = 2")
    d.get(f"{URL}/assignments/2")
    d.execute_script("""
        const f = document.createElement('form');
        f.method = 'post'; f.action = '/assignments/2/last-contact';
        for (const [k, v] of [['date', arguments[0]], ['reason', 'forged by the viewer']]) {
            const i = document.createElement('input'); i.name = k; i.value = v; f.appendChild(i);
        }
        document.body.appendChild(f); f.submit();""", DAY_M1)
    settle("#sqlstate")
    check("the viewer's forged correction is refused: 403, 42501", text("#sqlstate") == "42501", d.page_source[:300])
    shot("forbidden")
    check("... and nothing changed",
          sql("SELECT count(*) || '|' || max(correction_id) FROM followup.contact_corrections") == before
          and sql("SELECT last_contact_date FROM app.assignments WHERE id = 2") == last)

    # --- hostile values show as text ----------------------------------------------------
    d.get(URL + "/outbox?organization=org-hostile")
    cells = [a.text for a in d.find_elements(By.CSS_SELECTOR, "table.messages td a")]
    check("an assignment id holding <script> shows as text in the outbox", HOSTILE_ID in cells, str(cells))
    check("... nothing ran", no_alert() and not present("script"))
    d.get(URL + "/")
    search = d.find_element(By.CSS_SELECTOR, "form.search input[name=id]")
    search.send_keys(HOSTILE_ID)
    d.find_element(By.CSS_SELECTOR, "form.search button").click()
    settle("#sqlstate")
    check("searching for it: not found, the id as text", text("#sqlstate") == "P0002" and HOSTILE_ID in
          (text("#error-detail") or ""), text("#error-detail"))
    check("... nothing ran", no_alert() and not present("script"))

    # --- the admin's pages, each one's screenshot ---------------------------------------
    login("ada")
    for name, page in [("runs", "/runs"), ("run", "/runs/1"), ("alerts", "/alerts"), ("outbox", "/outbox"),
                       ("outbox-dead", "/outbox?status=dead"), ("outbox-filtered", "/outbox?organization=org-02&kind=reminder"),
                       ("drift", "/drift?check=1"), ("policies", "/policies"),
                       ("policy-edit", "/policies/edit?organization=*"), ("overview-admin", "/")]:
        d.get(URL + page)
        check(f"the admin's {page} page shows", d.title.endswith("pg_followup console") and not present("#sqlstate"),
              d.title)
        shot(name)
    d.get(f"{URL}/policies?from={AS_OF}")
    org02 = d.find_element(By.CSS_SELECTOR, "#policies tr[data-organization=org-02]").text
    check("/policies shows org-02's window and weekdays in words", "08:00–18:00" in org02 and "Mon–Fri" in org02, org02)
    quiet = [r.text for r in d.find_elements(By.CSS_SELECTOR, "#quiet-days tbody tr")]
    check("... and the quiet days from a day on, each with its weekday and reason",
          len(quiet) == 2 and "Midsummer" in quiet[0] and "Staff day" in quiet[1] and text("#quiet-past").startswith("1 "),
          str(quiet))
    check("... with the admin's forms", present("#form-quiet-day") and present("#quiet-days button.danger"))
    shot("policies-calendar")
    d.get(URL + "/outbox")
    check("the admin is offered cancel and requeue", present("button[value=cancel]") and present("button[value=requeue]"))
    boxes = d.find_elements(By.CSS_SELECTOR, "input[name=ids]")[:2]
    for box in boxes:
        box.click()
    d.find_element(By.CSS_SELECTOR, "button[value=cancel]").click()
    settle("#affected")
    check("cancelling asks first, saying how many", text("#affected") == "2", text("#confirm-count"))
    shot("outbox-confirm")

    # --- idle expiry --------------------------------------------------------------------
    login("vic", base=SHORT_URL)
    check("on the short console the viewer is logged in", text("#role") == "vic")
    time.sleep(IDLE_SECONDS + 2)
    d.get(SHORT_URL + "/runs")
    check(f"after {IDLE_SECONDS + 2} s idle the session has expired: the login page",
          d.current_url.startswith(SHORT_URL + "/login"), d.current_url)
finally:
    d.quit()

print("all checks passed" if failed == 0 else f"{failed} check(s) FAILED")
sys.exit(1 if failed else 0)
