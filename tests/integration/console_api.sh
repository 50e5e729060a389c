#!/usr/bin/env bash
# The console over HTTP (curl), against a private cluster that checks
# passwords (SCRAM), with console/roles.sql and three people: vic
# (followup_viewer), ann (followup_support), ada (followup_admin).
#   0. the console's and pgconn's unit tests (cargo test);
#   1. start-up: a plain-HTTP listener on a non-loopback address is refused with
#      a clear error; HTTPS (--tls-cert/--tls-key) may listen anywhere and sets
#      Secure __Host- cookies; /healthz needs no login: 200 while the server
#      answers (an authentication error counts), 503 when it does not;
#   2. the JSON API: 401 without or with bad credentials, explain for a viewer,
#      201 with the audit row (corrected_by = the person) for support, 400 with
#      the SQLSTATE for bad values, 403 for a viewer's correction with nothing
#      changed, 404 for an unknown assignment, snooze/unsnooze, runs, health;
#   3. logins: one generic message for a wrong password and an unknown role, a
#      new session cookie on every login (HttpOnly, SameSite=Strict), no open
#      redirect, logout ends the session, a cap on sessions answers 503;
#   4. forms: 303 to the page changed, 403 for what the role may not do (and
#      nothing changed), cross-site posts refused; the admin's cancel, requeue,
#      repair, run now, resolve and policy edits audited under their own name;
#  4b. calendars: the grants of roles.sql (support records absences, admins
#      quiet days, a viewer gets 42501), the absence form and explain's
#      held_by in words on an assignment's page, send days from the policy
#      form and in words, quiet days listed, added and removed;
#   5. headers (CSP, frame, referrer, nosniff) and error pages without SQL.
source "$(dirname "$0")/../lib/integration.sh"
source "$REPO/tests/lib/console.sh"
source "$REPO/tests/lib/tls.sh"

echo "# unit tests of followup-console and pgconn"
(cd "$REPO" && cargo test --quiet -p followup-console -p pgconn 2>&1 | grep -E '^test result|FAILED|panicked') \
    | tee "$CLUSTER_ROOT/console-unit.log"
expect "unit tests pass" "$(grep -c 'FAILED\|panicked' "$CLUSTER_ROOT/console-unit.log")" "0"

console_setup console-api
start_console main
MAIN=$BASE

# http METHOD PATH [curl args...]: prints "<status>" and leaves the body in $WORK/body
http() {
    local method=$1 path=$2; shift 2
    curl -s -o "$WORK/body" -D "$WORK/headers" -w '%{http_code}' -X "$method" "$@" "$BASE$path"
}
body() { cat "$WORK/body"; }
json() { python3 -c "import json,sys; d=json.load(open('$WORK/body')); print($1)"; }
header() { tr -d '\r' <"$WORK/headers" | awk -v h="$(echo "$1" | tr 'A-Z' 'a-z')" 'tolower($1) == h":" { $1=""; sub(/^ /, ""); print }'; }
basic() { echo "-u" "$1:$PASSWORD"; }
# login NAME JAR: a session for NAME in cookie jar JAR
login() { curl -s -o /dev/null -c "$2" -X POST --data-urlencode "user=$1" --data-urlencode "password=$PASSWORD" "$BASE/login"; }

# --- 1. start-up and /healthz --------------------------------------------------
STATUS=0
timeout 30 "$CONSOLE" --database-url "host=127.0.0.1 port=$DB_PORT dbname=$DB" --listen 0.0.0.0:0 \
    >"$WORK/refused.out" 2>&1 || STATUS=$?
expect "plain HTTP on a non-loopback address is refused at start (exit 2)" "$STATUS" "2"
expect "... saying why" "$(grep -c 'only on a loopback address' "$WORK/refused.out")" "1"

expect "/healthz needs no login: 200 while the server answers (with an authentication error)" \
    "$(http GET /healthz)" "200"
CONSOLE_DB="host=127.0.0.1 port=$(free_port) dbname=$DB" start_console dead
DEAD=$BASE CONSOLE_DEAD_PID=$CONSOLE_PID BASE=$MAIN
expect "/healthz is 503 when nothing answers" "$(curl -s -o /dev/null -w '%{http_code}' "$DEAD/healthz")" "503"
stop_console "$CONSOLE_DEAD_PID"

mkdir -p "$WORK/certs"
tls_ca "$WORK/certs" ca && tls_cert "$WORK/certs" ca web "DNS:localhost,IP:127.0.0.1"
start_console tls --tls-cert "$WORK/certs/web.crt" --tls-key "$WORK/certs/web.key"
TLS_BASE=$BASE BASE=$MAIN
expect "with a certificate it serves HTTPS" "$(curl -s --cacert "$WORK/certs/ca.crt" -o /dev/null -w '%{http_code}' "$TLS_BASE/healthz")" "200"
cookie=$(curl -s --cacert "$WORK/certs/ca.crt" -D - -o /dev/null -X POST --data-urlencode "user=vic" \
             --data-urlencode "password=$PASSWORD" "$TLS_BASE/login" | tr -d '\r' | grep -i '^set-cookie:')
expect "over HTTPS the session cookie is __Host-, Secure, HttpOnly, SameSite=Strict" \
    "$(echo "$cookie" | grep -c '__Host-followup_session=.*HttpOnly.*SameSite=Strict.*Secure\|__Host-followup_session=.*Secure.*HttpOnly')" "1"
expect "... and Strict-Transport-Security is sent" \
    "$(curl -s --cacert "$WORK/certs/ca.crt" -D - -o /dev/null "$TLS_BASE/login" | grep -ci '^strict-transport-security')" "1"
stop_console

# --- 2. the JSON API -------------------------------------------------------------
expect "no credentials: 401" "$(http GET /api/assignments/1)" "401"
expect "... with the SQLSTATE in the body" "$(json 'd["error"]["sqlstate"]')" "28000"
expect "... and a Basic challenge" "$(header www-authenticate | grep -c '^Basic realm')" "1"
expect "a wrong password: 401" "$(http GET /api/assignments/1 -u "vic:wrong")" "401"
expect "... 28P01" "$(json 'd["error"]["sqlstate"]')" "28P01"
expect "a viewer reads explain: 200" "$(http GET "/api/assignments/1?as_of=$AS_OF" $(basic vic))" "200"
expect "... explain's jsonb (assignment, verdict)" "$(json 'd["assignment_id"], d["as_of"], bool(d["verdict"])')" "1 $AS_OF True"
expect "an unknown assignment: 404 P0002" \
    "$(http GET /api/assignments/999999 $(basic vic)):$(json 'd["error"]["sqlstate"]')" "404:P0002"

before=$(last_contact 1):$(q "SELECT count(*) FROM followup.contact_corrections")
expect "a viewer may not correct: 403 42501" \
    "$(http POST /api/assignments/1/last-contact $(basic vic) -H 'Content-Type: application/json' \
          -d "{\"date\": \"$(day -2)\", \"reason\": \"phone call\"}"):$(json 'd["error"]["sqlstate"]')" "403:42501"
expect "... and nothing changed" "$(last_contact 1):$(q "SELECT count(*) FROM followup.contact_corrections")" "$before"

expect "support corrects a last contact: 201" \
    "$(http POST /api/assignments/1/last-contact $(basic ann) -H 'Content-Type: application/json' \
          -d "{\"date\": \"$(day -2)\", \"reason\": \"phone call\"}")" "201"
expect "... with the audit row, naming the person" "$(json 'd["assignment_id"], d["new_value"], d["corrected_by"]')" \
    "1 $(day -2) ann"
expect "... and the last contact is set" "$(last_contact 1)" "$(day -2)"
expect "a date that is not one: 400 22007" \
    "$(http POST /api/assignments/1/last-contact $(basic ann) -d '{"date": "soon", "reason": "x"}'):$(json 'd["error"]["sqlstate"]')" \
    "400:22007"
expect "an empty reason: 400 22023" \
    "$(http POST /api/assignments/1/last-contact $(basic ann) -d "{\"date\": \"$(day -1)\", \"reason\": \" \"}"):$(json 'd["error"]["sqlstate"]')" \
    "400:22023"
expect "no reason: 400 22004" \
    "$(http POST /api/assignments/1/last-contact $(basic ann) -d "{\"date\": \"$(day -1)\"}"):$(json 'd["error"]["sqlstate"]')" \
    "400:22004"
expect "a body that is not JSON: 400" "$(http POST /api/assignments/1/last-contact $(basic ann) -d 'date=x')" "400"
expect "correcting an unknown assignment: 404 P0002" \
    "$(http POST /api/assignments/999999/last-contact $(basic ann) -d "{\"date\": \"$(day -1)\", \"reason\": \"x\"}"):$(json 'd["error"]["sqlstate"]')" \
    "404:P0002"

expect "support snoozes: 201 with the snooze row" \
    "$(http POST /api/assignments/2/snooze $(basic ann) -d '{"until": "2099-01-01", "reason": "mentor on leave"}'):$(json 'd["until"], d["snoozed_by"]')" \
    "201:2099-01-01 ann"
expect "a snooze in the past: 400 22023" \
    "$(http POST /api/assignments/2/snooze $(basic ann) -d '{"until": "2000-01-01", "reason": "x"}'):$(json 'd["error"]["sqlstate"]')" \
    "400:22023"
expect "a viewer may not unsnooze: 403" "$(http DELETE /api/assignments/2/snooze $(basic vic))" "403"
expect "support unsnoozes: 200, one snooze ended" \
    "$(http DELETE /api/assignments/2/snooze $(basic ann)):$(json 'd["snoozes_ended"]')" "200:1"
expect "... ended by ann" "$(q "SELECT ended_by FROM followup.snoozes WHERE assignment_id = '2'")" "ann"

expect "runs: 200, as many as asked" "$(http GET '/api/runs?limit=1' $(basic vic)):$(json 'len(d), d[0]["status"]')" \
    "200:1 succeeded"
expect "a bad limit: 400 22023" "$(http GET '/api/runs?limit=0' $(basic vic)):$(json 'd["error"]["sqlstate"]')" "400:22023"
expect "health: 200, the health row" "$(http GET /api/health $(basic vic)):$(json 'd["last_run_status"]')" "200:succeeded"
login vic "$WORK/vic.jar"
expect "the API also takes the session cookie" "$(http GET /api/health -b "$WORK/vic.jar")" "200"
expect "a cross-site API call is refused: 403" \
    "$(http POST /api/assignments/1/last-contact $(basic ann) -H 'Origin: http://evil.example' \
          -d "{\"date\": \"$(day -3)\", \"reason\": \"forged\"}")" "403"
expect "... and changed nothing" "$(last_contact 1)" "$(day -2)"

# --- 3. logins -------------------------------------------------------------------
start=$(date +%s%N)
expect "a wrong password: 401 and the login page" \
    "$(http POST /login --data-urlencode user=ann --data-urlencode password=nope)" "401"
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
wrong=$(grep -o 'id="login-error"[^<]*' "$WORK/body")
http POST /login --data-urlencode user=nobody --data-urlencode password=nope >/dev/null
expect "an unknown role gets the very same message (no enumeration)" "$(grep -o 'id="login-error"[^<]*' "$WORK/body")" "$wrong"
expect "a failed login takes at least a second (slowed down)" "$([ "$elapsed_ms" -ge 950 ] && echo yes)" "yes"

expect "login: 303" \
    "$(http POST /login --data-urlencode user=ann --data-urlencode "password=$PASSWORD" --data-urlencode next=/outbox -b 'followup_session=planted')" "303"
expect "... to the page asked for" "$(header location)" "/outbox"
set_cookie=$(header set-cookie)
expect "... with a new session cookie: HttpOnly, SameSite=Strict, no Secure on loopback HTTP" \
    "$(echo "$set_cookie" | grep -c '^followup_session=[0-9a-f]\{64\}; HttpOnly; SameSite=Strict; Path=/$')" "1"
token=$(echo "$set_cookie" | sed 's/^followup_session=\([0-9a-f]*\);.*/\1/')
expect "the planted cookie is not the session's (no fixation)" "$([ "$token" != planted ] && echo new)" "new"
expect "a second login gets another token" \
    "$(http POST /login --data-urlencode user=ann --data-urlencode "password=$PASSWORD" -b "followup_session=$token" >/dev/null
       header set-cookie | grep -c "followup_session=$token")" "0"
expect "... and the session it replaced is over" "$(http GET / -b "followup_session=$token")" "303"
for next in //evil.example/x '/\evil.example' https://evil.example/ 'javascript:alert(1)'; do
    http POST /login --data-urlencode user=ann --data-urlencode "password=$PASSWORD" --data-urlencode "next=$next" >/dev/null
    expect "no open redirect after login ($next)" "$(header location)" "/"
done
login ann "$WORK/ann.jar"
login ada "$WORK/ada.jar"
expect "a page without a session goes to the login page, and back after" \
    "$(http GET '/outbox?status=dead'):$(header location)" "303:/login?next=%2Foutbox%3Fstatus%3Ddead"
expect "logout: 303 to the login page" "$(http POST /logout -b "$WORK/vic.jar")" "303"
expect "... the session is over" "$(http GET / -b "$WORK/vic.jar")" "303"

start_console capped --max-sessions 1
CAPPED=$BASE BASE=$MAIN
first=$(curl -s -o /dev/null -w '%{http_code}' -X POST --data-urlencode user=vic --data-urlencode "password=$PASSWORD" "$CAPPED/login")
second=$(curl -s -o /dev/null -w '%{http_code}' -X POST --data-urlencode user=ann --data-urlencode "password=$PASSWORD" "$CAPPED/login")
expect "past --max-sessions a login is answered 503" "$first $second" "303 503"
stop_console

# --- 4. forms --------------------------------------------------------------------
expect "support's correction form: 303 to the assignment" \
    "$(http POST /assignments/3/last-contact -b "$WORK/ann.jar" --data-urlencode "date=$(day -1)" \
          --data-urlencode "reason=visit logged on paper"):$(header location)" "303:/assignments/3"
expect "... set, audited as ann" \
    "$(last_contact 3):$(q "SELECT corrected_by || '/' || session_role FROM followup.contact_corrections WHERE assignment_id = '3'")" \
    "$(day -1):ann/ann"
login vic "$WORK/vic.jar"
before=$(last_contact 4):$(q "SELECT count(*) FROM followup.contact_corrections")
expect "a viewer's forged correction: 403" \
    "$(http POST /assignments/4/last-contact -b "$WORK/vic.jar" --data-urlencode "date=$(day -1)" --data-urlencode "reason=forged")" "403"
expect "... the page names the refusal by its class, no SQL" \
    "$(grep -c 'your role is not allowed to do this' "$WORK/body"):$(grep -ci 'permission denied\|select \|followup\.' "$WORK/body")" "1:0"
expect "... and nothing changed" "$(last_contact 4):$(q "SELECT count(*) FROM followup.contact_corrections")" "$before"
expect "a bad date on a form: 400, the SQLSTATE class in words" \
    "$(http POST /assignments/4/last-contact -b "$WORK/ann.jar" --data-urlencode "date=someday" --data-urlencode "reason=x"):$(grep -c 'the value given is not valid' "$WORK/body")" "400:1"
expect "a cross-site form post (Sec-Fetch-Site) is refused" \
    "$(http POST /assignments/4/last-contact -b "$WORK/ann.jar" -H 'Sec-Fetch-Site: cross-site' \
          --data-urlencode "date=$(day -1)" --data-urlencode "reason=csrf")" "403"
expect "a cross-site form post (Origin) is refused" \
    "$(http POST /assignments/4/last-contact -b "$WORK/ann.jar" -H 'Origin: http://evil.example' \
          --data-urlencode "date=$(day -1)" --data-urlencode "reason=csrf")" "403"
expect "a cross-site logout is refused too" "$(http POST /logout -b "$WORK/ann.jar" -H 'Sec-Fetch-Site: same-site')" "403"
expect "... and nothing changed" "$(last_contact 4):$(q "SELECT count(*) FROM followup.contact_corrections")" "$before"
expect "a same-origin post passes the guard" \
    "$(http POST /assignments/4/snooze -b "$WORK/ann.jar" -H 'Sec-Fetch-Site: same-origin' -H "Origin: null" \
          --data-urlencode "until=2099-01-01" --data-urlencode "reason=on leave")" "303"

runs_before=$(q "SELECT count(*) FROM followup.runs")
expect "support may not run: 403" "$(http POST /runs -b "$WORK/ann.jar" --data-urlencode "as_of=$(day 1)")" "403"
expect "... no run happened" "$(q "SELECT count(*) FROM followup.runs")" "$runs_before"
expect "the admin runs now: 303 to the run" \
    "$(http POST /runs -b "$WORK/ada.jar" --data-urlencode "as_of=$(day 1)"):$(header location)" \
    "303:/runs/$(q "SELECT max(run_id) FROM followup.runs")"
expect "... audited as ada" "$(q "SELECT acting_role FROM followup.audit_log WHERE action = 'run_now' ORDER BY audit_id DESC LIMIT 1")" "ada"

ids=$(q "SELECT string_agg(message_id::text, ' ') FROM (SELECT message_id FROM followup.outbox WHERE status = 'pending'
                                                        ORDER BY message_id LIMIT 3) m")
set -- $ids
expect "cancel: the confirmation says how many" \
    "$(http POST /outbox/confirm -b "$WORK/ada.jar" -d action=cancel -d "ids=$1" -d "ids=$2" -d "ids=$3" -d "back=/outbox?status=pending"):$(grep -o 'id="affected">[0-9]*' "$WORK/body")" \
    '200:id="affected">3'
expect "... and changes nothing" "$(q "SELECT count(*) FROM followup.outbox WHERE message_id IN ($1, $2, $3) AND status = 'cancelled'")" "0"
expect "support may not cancel: 403" \
    "$(http POST /outbox/cancel -b "$WORK/ann.jar" -d "ids=$1" -d "reason=nope")" "403"
expect "the admin cancels: 303 back to the list" \
    "$(http POST /outbox/cancel -b "$WORK/ada.jar" -d "ids=$1" -d "ids=$2" -d "ids=$3" -d "reason=sent by phone" \
          --data-urlencode "back=/outbox?status=pending"):$(header location)" "303:/outbox?status=pending"
expect "... withdrawn with the reason, audited as ada" \
    "$(q "SELECT count(*) FROM followup.outbox WHERE message_id IN ($1, $2, $3) AND cancel_reason = 'manual: sent by phone'"):$(q "SELECT acting_role || ':' || reason FROM followup.audit_log WHERE action = 'cancel'")" \
    "3:ada:sent by phone"
many=$(for i in $(seq 1 1001); do printf -- '-d ids=%d ' "$i"; done)
# shellcheck disable=SC2086
expect "more than 1,000 at once: 400" "$(http POST /outbox/confirm -b "$WORK/ada.jar" -d action=cancel $many)" "400"
q "UPDATE followup.outbox SET status = 'dead', last_error = 'HTTP 500' WHERE message_id = $(q "SELECT max(message_id) FROM followup.outbox WHERE status = 'pending'")"
dead=$(q "SELECT message_id FROM followup.outbox WHERE status = 'dead'")
expect "the dead letters list shows the last error" \
    "$(http GET '/outbox?status=dead' -b "$WORK/ada.jar"):$(grep -c 'HTTP 500' "$WORK/body")" "200:1"
expect "the admin requeues it with a reason: 303" \
    "$(http POST /outbox/requeue -b "$WORK/ada.jar" -d "ids=$dead" -d "reason=webhook fixed")" "303"
expect "... pending again, audited as ada with the reason" \
    "$(q "SELECT status FROM followup.outbox WHERE message_id = $dead"):$(q "SELECT acting_role || ':' || coalesce(reason, 'NULL') FROM followup.audit_log WHERE action = 'requeue_dead'")" \
    "pending:ada:webhook fixed"

q "UPDATE app.assignments SET last_contact_date = '2000-01-01' WHERE id IN (5, 6)"
expect "drift: verify's findings" \
    "$(http GET '/drift?check=1' -b "$WORK/vic.jar"):$(grep -o 'id="drift-count"><strong>[0-9]*' "$WORK/body")" \
    '200:id="drift-count"><strong>2'
expect "... a viewer is offered no repair" "$(grep -c 'action="/drift/confirm"' "$WORK/body")" "0"
expect "repair: the confirmation has the count" \
    "$(http POST /drift/confirm -b "$WORK/ada.jar"):$(grep -o 'id="confirm-count">[^<]*<strong>[0-9]*' "$WORK/body" | grep -o '[0-9]*$')" "200:2"
expect "a viewer's repair: 403, nothing repaired" \
    "$(http POST /drift/repair -b "$WORK/vic.jar" -d "reason=forged"):$(last_contact 5)" "403:2000-01-01"
expect "the admin repairs: 303 to /drift" \
    "$(http POST /drift/repair -b "$WORK/ada.jar" -d "reason=import ran with triggers off"):$(header location)" "303:/drift"
expect "... audited as ada" "$(q "SELECT count(*) || ':' || min(repaired_by) FROM followup.repairs")" "2:ada"

q "INSERT INTO followup.alerts (kind, message) VALUES ('missed_schedule', 'test alert')"
alert=$(q "SELECT max(alert_id) FROM followup.alerts")
expect "support may not resolve an alert: 403" "$(http POST "/alerts/$alert/resolve" -b "$WORK/ann.jar")" "403"
expect "the admin resolves it: 303 to /alerts" "$(http POST "/alerts/$alert/resolve" -b "$WORK/ada.jar"):$(header location)" "303:/alerts"
expect "... resolved" "$(q "SELECT resolved_at IS NOT NULL FROM followup.alerts WHERE alert_id = $alert")" "t"

expect "a viewer may not add a policy: 403" \
    "$(http POST /policies -b "$WORK/vic.jar" -d mode=insert -d organization=org-x -d remind_after_days=7)" "403"
expect "the admin adds one: 303 to /policies" \
    "$(http POST /policies -b "$WORK/ada.jar" -d mode=insert -d organization=org-x -d remind_after_days=7 \
          -d repeat_every_days=3 -d enabled=true -d timezone=Europe/Oslo -d send_from=08:00 -d send_until=20:00):$(header location)" \
    "303:/policies"
expect "... saved, the edit audited as ada" \
    "$(q "SELECT remind_after_days || ' ' || timezone || ' ' || send_from FROM followup.policies WHERE organization = 'org-x'"):$(q "SELECT acting_role FROM followup.audit_log WHERE action = 'policy_insert' AND subject = 'org-x'")" \
    "7 Europe/Oslo 08:00:00:ada"
expect "a time zone the server does not know: 400" \
    "$(http POST /policies -b "$WORK/ada.jar" -d mode=update -d organization=org-x -d remind_after_days=7 -d timezone=Mars/Base)" "400"
expect "the admin deletes it: 303" "$(http POST /policies/delete -b "$WORK/ada.jar" -d organization=org-x)" "303"
expect "... gone" "$(q "SELECT count(*) FROM followup.policies WHERE organization = 'org-x'")" "0"

# --- 4b. calendars: send days, quiet days, absences ----------------------------
# as_person NAME SQL: the statement as NAME over TCP (SCRAM), "ERROR: <SQLSTATE>" on failure
as_person() {
    PGPASSWORD=$PASSWORD psql -X -At -q -h 127.0.0.1 -p "$DB_PORT" -U "$1" -d "$DB" -v VERBOSITY=sqlstate -c "$2" 2>&1 \
        | sed 's/^ERROR: */ERROR: /'
}
read -r away_assignment away_role away_id < <(q "SELECT assignment_id || ' ' || recipient_role || ' ' || recipient_id
    FROM followup.outbox AS o WHERE status = 'pending' AND recipient_id IS NOT NULL AND assignment_id NOT IN ('1','2','3','4','5','6')
     AND NOT EXISTS (SELECT 1 FROM followup.outbox AS n WHERE n.assignment_id = o.assignment_id AND n.cycle_start = o.cycle_start
                                                         AND n.kind = o.kind AND n.sequence > o.sequence)
   ORDER BY message_id DESC LIMIT 1" | tr '|' ' ')
set_away_sql="SELECT (followup.set_away('$away_role', '$away_id', current_date, current_date + 7, 'holiday')).set_by"
expect "a viewer may not record an absence (SQL): 42501" "$(as_person vic "$set_away_sql")" "ERROR: 42501"
expect "a viewer may not add a quiet day (SQL): 42501" \
    "$(as_person vic "INSERT INTO followup.quiet_days VALUES ('*', '2099-12-24', 'forged')")" "ERROR: 42501"
expect "... but reads them and the absences" \
    "$(as_person vic "SELECT (SELECT count(*) FROM followup.quiet_days) + (SELECT count(*) FROM followup.away)")" "0"
expect "support may not add a quiet day (SQL): 42501" \
    "$(as_person ann "INSERT INTO followup.quiet_days VALUES ('*', '2099-12-24', 'forged')")" "ERROR: 42501"
expect "support records an absence (SQL), under their own name" "$(as_person ann "$set_away_sql")" "ann"
expect "the admin ends it (SQL): one ended" \
    "$(as_person ada "SELECT followup.end_away('$away_role', '$away_id')")" "1"

before=$(q "SELECT count(*) FROM followup.away")
expect "a viewer's forged absence form: 403, nothing recorded" \
    "$(http POST "/assignments/$away_assignment/away" -b "$WORK/vic.jar" -d "recipient=$away_role:$away_id" \
          -d "from_day=$(q 'SELECT current_date')" -d "until_day=$(q 'SELECT current_date + 7')" -d "reason=forged"):$(q "SELECT count(*) FROM followup.away")" \
    "403:$before"
http GET "/assignments/$away_assignment" -b "$WORK/ann.jar" >/dev/null
expect "support is offered the absence form, with the recipient of its messages" \
    "$(grep -c "id=\"form-away\"" "$WORK/body"):$(grep -c "option value=\"$away_role:$away_id\"" "$WORK/body")" "1:1"
expect "support's absence form: 303 to the assignment" \
    "$(http POST "/assignments/$away_assignment/away" -b "$WORK/ann.jar" -d "recipient=$away_role:$away_id" \
          -d "from_day=$(q 'SELECT current_date')" -d "until_day=$(q 'SELECT current_date + 7')" \
          --data-urlencode "reason=<script>alert(1)</script> hiking"):$(header location)" "303:/assignments/$away_assignment"
expect "... recorded, set by ann" \
    "$(q "SELECT set_by || ':' || (until_day - current_date) FROM followup.away WHERE ended_at IS NULL")" "ann:7"
http GET "/assignments/$away_assignment" -b "$WORK/vic.jar" >/dev/null
expect "the assignment's page says the message is held back: the recipient is away, until when" \
    "$(grep -c "data-gate=\"recipient_away\">the recipient is away until $(q 'SELECT current_date + 7'): held until" "$WORK/body")" "1"
expect "... the absence's reason shows as text" \
    "$(grep -c '&lt;script&gt;alert(1)&lt;/script&gt; hiking' "$WORK/body"):$(grep -c '<script>' "$WORK/body")" "1:0"
expect "... and a viewer is offered neither the form nor an end" \
    "$(grep -c 'id="form-away"\|/end-away' "$WORK/body")" "0"
expect "support ends the absence from the page: 303" \
    "$(http POST "/assignments/$away_assignment/end-away" -b "$WORK/ann.jar" -d "recipient=$away_role:$away_id")" "303"
expect "... ended by ann" "$(q "SELECT count(*) || ':' || max(ended_by) FROM followup.away WHERE ended_at IS NOT NULL AND set_by = 'ann'")" "2:ann"

expect "the admin sets a policy's send days from the form (Mon-Fri)" \
    "$(http POST /policies -b "$WORK/ada.jar" -d mode=insert -d organization=org-days -d remind_after_days=7 -d enabled=true \
          -d timezone=Europe/Oslo -d send_from=08:00 -d send_until=18:00 $(for d in 1 2 3 4 5; do printf -- '-d send_days=%d ' $d; done)):$(q "SELECT send_days FROM followup.policies WHERE organization = 'org-days'")" \
    "303:{1,2,3,4,5}"
expect "... /policies names them" \
    "$(http GET /policies -b "$WORK/vic.jar"):$(grep -o '<tr data-organization="org-days">.*' "$WORK/body" | grep -o '<td class="send-days">[^<]*')" \
    '200:<td class="send-days">Mon–Fri'
expect "... the edit form has them ticked" \
    "$(http GET '/policies/edit?organization=org-days' -b "$WORK/ada.jar"):$(grep -o 'name="send_days" value="[0-9]" checked' "$WORK/body" | wc -l)" "200:5"
expect "no day ticked: every day (NULL)" \
    "$(http POST /policies -b "$WORK/ada.jar" -d mode=update -d organization=org-days -d remind_after_days=7 -d enabled=true):$(q "SELECT coalesce(send_days::text, 'NULL') FROM followup.policies WHERE organization = 'org-days'")" \
    "303:NULL"
expect "a day that is not a weekday: 400, nothing changed" \
    "$(http POST /policies -b "$WORK/ada.jar" -d mode=update -d organization=org-days -d remind_after_days=9 -d send_days=9):$(q "SELECT remind_after_days FROM followup.policies WHERE organization = 'org-days'")" \
    "400:7"
q "DELETE FROM followup.policies WHERE organization = 'org-days'"

expect "a viewer's forged quiet day: 403" \
    "$(http POST /policies/quiet-days -b "$WORK/vic.jar" -d 'organization=*' -d day=2099-12-25 -d reason=forged)" "403"
expect "support's too" \
    "$(http POST /policies/quiet-days -b "$WORK/ann.jar" -d 'organization=*' -d day=2099-12-25 -d reason=forged)" "403"
expect "... nothing added" "$(q "SELECT count(*) FROM followup.quiet_days")" "0"
expect "the admin adds a quiet day: 303 to /policies" \
    "$(http POST /policies/quiet-days -b "$WORK/ada.jar" -d 'organization=*' -d day=2099-12-25 \
          --data-urlencode 'reason=Christmas <script>x</script>'):$(header location)" "303:/policies"
expect "... audited as ada" "$(q "SELECT acting_role FROM followup.audit_log WHERE action = 'quiet_day_insert'")" "ada"
q "INSERT INTO followup.quiet_days VALUES ('org-01', '2000-01-01', 'long ago')"
http GET '/policies?from=2099-01-01' -b "$WORK/vic.jar" >/dev/null
expect "/policies lists the quiet days from a day on, with the weekday, the reason as text" \
    "$(grep -o '<td>2099-12-25</td><td>Fri</td><td>\* (every organization)</td><td class="reason">Christmas &lt;script&gt;x&lt;/script&gt;' "$WORK/body" | wc -l)" "1"
expect "... and how many are earlier; a viewer gets no forms" \
    "$(grep -o 'id="quiet-past">[0-9]*' "$WORK/body"):$(grep -c 'form-quiet-day\|quiet-days/delete' "$WORK/body")" 'id="quiet-past">1:0'
expect "the admin removes it: 303, gone" \
    "$(http POST /policies/quiet-days/delete -b "$WORK/ada.jar" -d 'organization=*' -d day=2099-12-25):$(q "SELECT count(*) FROM followup.quiet_days WHERE day = '2099-12-25'")" \
    "303:0"
expect "removing one that is not there: 404" \
    "$(http POST /policies/quiet-days/delete -b "$WORK/ada.jar" -d 'organization=*' -d day=2099-12-25)" "404"

# --- 5. every page answers, with the headers --------------------------------------
for page in / /runs "/runs/1" /alerts /outbox '/outbox?status=delivered&organization=org-01&kind=reminder' \
            "/outbox?date=$AS_OF" "/assignments/1?as_of=$AS_OF" /drift /audit '/audit?source=corrections' /policies \
            /policies/edit '/policies/edit?organization=*' '/policies?from=2000-01-01'; do
    expect "GET $page: 200" "$(http GET "$page" -b "$WORK/ada.jar")" "200"
done
http GET / -b "$WORK/ada.jar" >/dev/null
expect "Content-Security-Policy without inline script, no framing" \
    "$(header content-security-policy | grep -c "default-src 'none'.*frame-ancestors 'none'")" "1"
expect "X-Frame-Options, Referrer-Policy, X-Content-Type-Options" \
    "$(header x-frame-options) $(header referrer-policy) $(header x-content-type-options)" "DENY no-referrer nosniff"
expect "the overview has no script at all" "$(grep -ci '<script' "$WORK/body")" "0"
expect "an unknown assignment's page: 404" "$(http GET '/assignments/999999' -b "$WORK/ada.jar")" "404"
expect "the audit shows ann's correction under her name" \
    "$(http GET '/audit?source=corrections' -b "$WORK/vic.jar"):$(grep -o '<td class="by">ann' "$WORK/body" | wc -l)" "200:2"

finish
