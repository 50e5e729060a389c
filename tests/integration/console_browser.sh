#!/usr/bin/env bash
# The console in a real browser (tests/browser/console_test.py: Debian's
# chromium over WebDriver, Selenium from the venv tests/setup.sh makes):
# login, a wrong password, logout, idle expiry; support corrects a last
# contact and sees it in explain and in the audit under their own name; a
# viewer sees no action and a forged post is 403 with nothing changed; a
# cross-site post is refused; an assignment id and a reason holding <script>
# show as text; the overview's chart holds the seeded runs (one point per run
# day) and the long-run threshold line; a message held back by an absence says
# so, and /policies shows send days and quiet days in words. Screenshots of every page go to
# target/console-screenshots/ (SCREENSHOTS=DIR for elsewhere).
source "$(dirname "$0")/../lib/integration.sh"
source "$REPO/tests/lib/console.sh"

PYTHON="$REPO/target/browser-venv/bin/python"
[ -x "$PYTHON" ] || abort "no Selenium venv at $PYTHON (tests/setup.sh makes it)"
console_setup console-browser

# runs of the 8 days before $AS_OF (the setup ran $AS_OF itself), 10 to 80 s each
q "INSERT INTO followup.runs (trigger, status, as_of, started_at, finished_at, assignments_scanned, reminders_enqueued)
   SELECT 'schedule', 'succeeded', d::date, (d::date + time '03:00') AT TIME ZONE 'UTC',
          (d::date + time '03:00') AT TIME ZONE 'UTC' + make_interval(secs => 10 * (1 + extract(day FROM d)::int % 8)), 200, 12
     FROM generate_series(date '$AS_OF' - 8, date '$AS_OF' - 1, interval '1 day') AS d"
RUN_DAYS=$(q "SELECT count(DISTINCT as_of) FROM followup.runs, (SELECT max(as_of) AS last FROM followup.runs) l
               WHERE finished_at IS NOT NULL AND status <> 'skipped' AND as_of > l.last - 30")
# an alert resolved and one open, for the alerts page
q "INSERT INTO followup.alerts (raised_at, kind, run_id, message, resolved_at)
   SELECT started_at + interval '31 minutes', 'long_run', run_id, 'run ' || run_id || ' took longer than followup.alert_after',
          started_at + interval '2 hours' FROM followup.runs WHERE as_of = date '$AS_OF' - 8"
q "INSERT INTO followup.alerts (raised_at, kind, message) VALUES ('$(day -1) 03:10+00', 'missed_schedule', 'no run for $(day -1)')"
HOSTILE_ID='<script>alert("id")</script>'
q "INSERT INTO followup.outbox (assignment_id, cycle_start, kind, sequence, recipient_role, recipient_id,
                                days_since_contact, organization)
   VALUES ('$HOSTILE_ID', '$AS_OF', 'reminder', 1, 'mentor', 'm-1', 30, 'org-hostile')"

# a calendar to show: weekdays and a window for org-02, quiet days after $AS_OF,
# and the recipient of a pending reminder away (from today: set_away takes no
# past days), which holds it back
q "INSERT INTO followup.policies (organization, remind_after_days, repeat_every_days, timezone, send_from, send_until, send_days)
   VALUES ('org-02', 10, 5, 'Europe/Oslo', '08:00', '18:00', '{1,2,3,4,5}')"
q "INSERT INTO followup.quiet_days VALUES ('*', '$(day 9)', 'Midsummer'), ('org-02', '$(day 20)', 'Staff day'),
                                          ('org-01', '$(day -30)', 'earlier')"
read -r AWAY_ASSIGNMENT AWAY_ROLE AWAY_ID < <(q "SELECT assignment_id || ' ' || recipient_role || ' ' || recipient_id
    FROM followup.outbox AS o WHERE status = 'pending' AND recipient_id IS NOT NULL AND assignment_id NOT IN ('1', '2')
     AND NOT EXISTS (SELECT 1 FROM followup.outbox AS n WHERE n.assignment_id = o.assignment_id AND n.cycle_start = o.cycle_start
                                                         AND n.kind = o.kind AND n.sequence > o.sequence)
   ORDER BY message_id LIMIT 1")
q "SELECT followup.set_away('$AWAY_ROLE', '$AWAY_ID', current_date, current_date + 14, 'hiking in the mountains')" >/dev/null

start_console main
MAIN=$BASE
IDLE_SECONDS=5
start_console short --session-idle "${IDLE_SECONDS}s" --session-max 1h
SHORT=$BASE

# another site (localhost, not 127.0.0.1) with a form that posts to the console
mkdir -p "$WORK/evil"
cat >"$WORK/evil/index.html" <<HTML
<!doctype html><title>win a prize</title>
<form method="post" action="$MAIN/assignments/1/last-contact">
<input name="date" value="$(day -5)"><input name="reason" value="cross-site"><button type="submit">Claim</button>
</form>
HTML
EVIL_PORT=$(free_port)
python3 -m http.server "$EVIL_PORT" --bind 127.0.0.1 --directory "$WORK/evil" >"$WORK/evil.log" 2>&1 &
# (stopped at exit with the consoles, as a job of this shell)
wait_until "the other site serves" 10 curl -sf -o /dev/null "http://127.0.0.1:$EVIL_PORT/"

SCREENSHOTS=${SCREENSHOTS:-$REPO/target/console-screenshots}
rm -rf "$SCREENSHOTS" && mkdir -p "$SCREENSHOTS"
CONSOLE_URL=$MAIN SHORT_URL=$SHORT EVIL_URL="http://localhost:$EVIL_PORT/" PASSWORD=$PASSWORD AS_OF=$AS_OF \
    DAY_M1=$(day -1) AWAY_ASSIGNMENT=$AWAY_ASSIGNMENT RUN_DAYS=$RUN_DAYS HOSTILE_ID=$HOSTILE_ID IDLE_SECONDS=$IDLE_SECONDS SCREENSHOTS=$SCREENSHOTS \
    PGDATABASE=$DB timeout 300 "$PYTHON" "$REPO/tests/browser/console_test.py" || FAILED=1
echo "# screenshots: $SCREENSHOTS"
finish
