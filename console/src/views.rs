//! The pages, as maud templates: checked when the console compiles, and
//! every value inserted is HTML-escaped (only the server-drawn SVG charts are
//! inserted as markup). Forms are plain HTML posts: no JavaScript anywhere.
//! A view shows an action only if the role may take it (`Privileges`); the
//! database still decides when it is taken.

use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde_json::Value;

use crate::charts::human_seconds;
use crate::db::{
    Alert, AuditEntry, Away, Correction, Drift, Estimates, Flow, Health, Message, OutboxFilter, OutboxPage, Privileges,
    QuietDay, Recipient, Run, Snooze, MAX_SELECTED, POLICY_FIELDS, SCAN_LIMIT,
};

/// The person a page is for.
pub struct Who<'a> {
    pub role: &'a str,
    pub can: Privileges,
}

/// A link with a query string (values URL-encoded; empty ones left out).
pub fn href(path: &str, params: &[(&str, Option<String>)]) -> String {
    let pairs: Vec<(&str, &str)> =
        params.iter().filter_map(|(k, v)| v.as_deref().filter(|v| !v.is_empty()).map(|v| (*k, v))).collect();
    if pairs.is_empty() {
        return path.to_string();
    }
    format!("{path}?{}", serde_urlencoded::to_string(pairs).unwrap_or_default())
}

/// A path segment, percent-encoded (assignment ids are the app's text).
pub fn segment(value: &str) -> String {
    let encoded = serde_urlencoded::to_string([("", value)]).unwrap_or_default();
    encoded.trim_start_matches('=').replace('+', "%20")
}

fn count(n: i64) -> String {
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn opt(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("—")
}

pub fn layout(title: &str, who: Option<&Who>, body: Markup) -> Markup {
    layout_refreshing(title, who, None, body)
}

pub fn layout_refreshing(title: &str, who: Option<&Who>, refresh: Option<u32>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(seconds) = refresh { meta http-equiv="refresh" content=(seconds); }
                title { (title) " · pg_followup console" }
                link rel="stylesheet" href="/static/console.css";
            }
            body {
                header {
                    a.brand href="/" { "pg_followup" }
                    @if let Some(who) = who {
                        nav {
                            a href="/" { "Overview" }
                            a href="/runs" { "Runs" }
                            a href="/alerts" { "Alerts" }
                            a href="/outbox" { "Outbox" }
                            a href="/drift" { "Drift" }
                            a href="/audit" { "Audit" }
                            a href="/policies" { "Policies" }
                        }
                        form.search method="get" action="/assignments" {
                            input type="search" name="id" placeholder="assignment id" aria-label="assignment id";
                            button type="submit" { "Explain" }
                        }
                        form.logout method="post" action="/logout" {
                            span.who { "logged in as " strong #role { (who.role) } }
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

pub fn login(next: &str, error: Option<&str>) -> Markup {
    layout(
        "Log in",
        None,
        html! {
            p { "Log in with your own PostgreSQL role and password. What you may see and do is what your role is granted." }
            @if let Some(error) = error { p.error #login-error role="alert" { (error) } }
            form.login method="post" action="/login" {
                input type="hidden" name="next" value=(next);
                label { "Role" input type="text" name="user" autocomplete="username" required autofocus; }
                label { "Password" input type="password" name="password" autocomplete="current-password" required; }
                button type="submit" { "Log in" }
            }
        },
    )
}

pub fn error(who: Option<&Who>, status: u16, words: &str, code: &str, detail: Option<&str>) -> Markup {
    layout(
        "Not done",
        who,
        html! {
            p.error #error role="alert" { (words) " (SQLSTATE " code #sqlstate { (code) } ", HTTP " (status) ")." }
            @if let Some(detail) = detail { p #error-detail { (detail) } }
            p { "Nothing was changed. " a href="/" { "Back to the overview" } }
        },
    )
}

pub fn message_page(who: Option<&Who>, title: &str, text: &str) -> Markup {
    layout(title, who, html! { p #message { (text) } p { a href="/login" { "Log in" } } })
}

// ---------------------------------------------------------------------------
// Overview
// ---------------------------------------------------------------------------

pub struct Overview {
    pub health: Health,
    pub last_run: Option<Run>,
    pub oldest_claimable: f64,
    pub estimates: Estimates,
    pub alerts: Vec<Alert>,
    pub durations_svg: String,
    pub flow: Flow,
    pub flow_svg: String,
    pub refresh: Option<u32>,
}

fn status_badge(status: &str) -> Markup {
    html! { span class={ "status status-" (status) } { (status) } }
}

pub fn overview(who: &Who, o: &Overview) -> Markup {
    let h = &o.health;
    let estimate = |v: Option<f64>| match v {
        Some(v) => format!("≈ {}", count(v as i64)),
        None => "unknown".to_string(),
    };
    let stale = match (&o.estimates.analyzed_at, o.estimates.analyzed_ago) {
        (Some(at), Some(ago)) => format!("planner estimates as of the last ANALYZE, {at} ({} ago)", human_seconds(ago)),
        _ => "the table has not been analyzed yet: no estimate".to_string(),
    };
    layout_refreshing(
        "Overview",
        Some(who),
        o.refresh,
        html! {
            div.cards {
            section #health {
                h2 { "Health" }
                dl.grid {
                    dt { "last run" } dd { @if let Some(s) = &h.last_run_status { (status_badge(s)) } @else { "none yet" } }
                    dt { "last success" } dd { (opt(&h.last_success_at)) }
                    dt { "running" } dd {
                        @if let Some(id) = h.running_run_id {
                            a href={ "/runs/" (id) } { "run " (id) } " for " (human_seconds(h.running_for.unwrap_or(0.0)))
                        } @else { "no" }
                    }
                    dt { "overdue" } dd { @if h.overdue { strong.bad { "yes" } } @else { "no" } }
                    dt { "oldest undelivered" } dd { (h.oldest_pending_age.map(human_seconds).unwrap_or_else(|| "—".into())) }
                    dt { "open alerts" } dd { a href="/alerts" { (h.open_alerts) } }
                    dt { "next retry" } dd { (opt(&h.next_retry_at)) }
                }
            }
            section #last-run {
                h2 { "Last run" }
                @if let Some(r) = &o.last_run {
                    p {
                        a href={ "/runs/" (r.run_id) } { "run " (r.run_id) } " as of " (r.as_of) ": " (status_badge(&r.status))
                        " · " (r.trigger) " · started " (r.started_at)
                        " · took " (r.seconds.map(human_seconds).unwrap_or_else(|| "—".into()))
                        " · enqueued " (r.enqueued.map(count).unwrap_or_else(|| "—".into()))
                    }
                } @else { p { "No run yet." } }
            }
            section #messages {
                h2 { "Messages by status" }
                table {
                    thead { tr { th { "status" } th.num { "messages" } th { "how counted" } } }
                    tbody {
                        tr { td { a href="/outbox?status=pending" { "pending or claimed" } } td.num #count-pending { (count(h.outbox_pending)) } td { "exact" } }
                        tr { td { a href="/outbox?status=dead" { "dead" } } td.num #count-dead { (count(h.outbox_dead)) } td { "exact" } }
                        tr { td { "cancelled in the last 24 hours" } td.num { (count(h.outbox_cancelled_24h)) } td { "exact" } }
                        tr { td { a href="/outbox?status=delivered" { "delivered" } } td.num #estimate-delivered { (estimate(o.estimates.delivered)) } td { (stale) } }
                        tr { td { a href="/outbox?status=cancelled" { "cancelled" } } td.num { (estimate(o.estimates.cancelled)) } td { (stale) } }
                    }
                }
                p { "Oldest claimable message waiting: " strong #oldest-claimable { (human_seconds(o.oldest_claimable)) } }
            }
            }
            section #open-alerts {
                h2 { "Open alerts" }
                (alert_table(who, &o.alerts, true))
            }
            div.charts {
            section.chart #chart-runs {
                h2 { "Run duration per day" }
                p.note { "The longest finished run of each day (as_of), over the 30 days up to the latest run; the red line is the long-run alert threshold (followup.alert_after)." }
                figure { (PreEscaped(&o.durations_svg)) }
            }
            section.chart #chart-messages {
                h2 { "Messages per day" }
                p.note {
                    "Enqueued, delivered, cancelled and dead (by the day they were enqueued) over the last 30 days; "
                    @if o.flow.sample_percent >= 100.0 { "exact counts." }
                    @else { "estimated from a " (format!("{:.2}", o.flow.sample_percent)) "% sample of the outbox's blocks." }
                }
                figure { (PreEscaped(&o.flow_svg)) }
            }
            }
            p.note {
                @if let Some(s) = o.refresh { "Refreshing every " (s) " s. " a href="/" { "Stop" } }
                @else { a href="/?refresh=30" { "Refresh every 30 s" } }
            }
        },
    )
}

/// Alerts as a table; `open_only` (the overview's card) leaves out the id
/// and the resolved column.
fn alert_table(who: &Who, alerts: &[Alert], open_only: bool) -> Markup {
    html! {
        @if alerts.is_empty() { p { "None." } } @else { div.scroll {
            table.alerts {
                thead { tr {
                    @if !open_only { th { "id" } }
                    th { "raised" } th { "kind" } th { "run" } th { "message" }
                    @if !open_only { th { "resolved" } }
                    @if who.can.resolve_alert { th {} }
                } }
                tbody {
                    @for a in alerts {
                        tr {
                            @if !open_only { td { (a.alert_id) } }
                            td.ts { (instant(&a.raised_at)) } td { (a.kind) }
                            td { @if let Some(r) = a.run_id { a href={ "/runs/" (r) } { (r) } } }
                            td.wrap { (a.message) }
                            @if !open_only { td.ts { (instant(opt(&a.resolved_at))) } }
                            @if who.can.resolve_alert {
                                td { @if a.resolved_at.is_none() {
                                    form.inline method="post" action={ "/alerts/" (a.alert_id) "/resolve" } {
                                        button type="submit" { "Resolve" }
                                    }
                                } }
                            }
                        }
                    }
                }
            }
        } }
    }
}

// ---------------------------------------------------------------------------
// Runs and alerts
// ---------------------------------------------------------------------------

fn run_rows(runs: &[Run]) -> Markup {
    html! {
        table.runs {
            thead { tr { th { "run" } th { "as of" } th { "trigger" } th { "status" } th { "started" } th.num { "took" } th.num { "scanned" } th.num { "enqueued" } th.num { "duplicates" } th.num { "skipped" } th { "error" } } }
            tbody {
                @for r in runs {
                    tr {
                        td { a href={ "/runs/" (r.run_id) } { (r.run_id) } }
                        td { (r.as_of) } td { (r.trigger) } td { (status_badge(&r.status)) } td { (r.started_at) }
                        td.num { (r.seconds.map(human_seconds).unwrap_or_default()) }
                        td.num { (r.scanned.map(count).unwrap_or_default()) }
                        td.num { (r.enqueued.map(count).unwrap_or_default()) }
                        td.num { (r.duplicates.map(count).unwrap_or_default()) }
                        td.num { (r.skipped.map(count).unwrap_or_default()) }
                        td.wrap { (opt(&r.error)) }
                    }
                }
            }
        }
    }
}

pub fn runs(who: &Who, runs: &[Run], status: Option<&str>, next: Option<i64>) -> Markup {
    layout(
        "Runs",
        Some(who),
        html! {
            @if who.can.run_now { (run_now_form()) }
            form.filters method="get" action="/runs" {
                label { "status "
                    select name="status" {
                        option value="" { "any" }
                        @for s in ["running", "succeeded", "failed", "skipped", "abandoned"] {
                            option value=(s) selected[status == Some(s)] { (s) }
                        }
                    }
                }
                button type="submit" { "Filter" }
            }
            (run_rows(runs))
            @if let Some(next) = next {
                p.pager { a rel="next" href=(href("/runs", &[("status", status.map(str::to_string)), ("before", Some(next.to_string()))])) { "Older runs →" } }
            }
        },
    )
}

fn run_now_form() -> Markup {
    html! {
        form.action method="post" action="/runs" {
            label { "Run now as of " input type="date" name="as_of"; }
            button type="submit" { "Run now" }
            span.note { " (empty: today in followup.timezone)" }
        }
    }
}

pub fn run(who: &Who, run: &Run, alerts: &[Alert], messages: &[Message], next: Option<i64>) -> Markup {
    layout(
        &format!("Run {}", run.run_id),
        Some(who),
        html! {
            (run_rows(std::slice::from_ref(run)))
            @if who.can.run_now { (run_now_form()) }
            h2 { "Alerts" }
            (alert_table(who, alerts, false))
            h2 { "Messages" }
            (message_table(messages, false))
            @if let Some(next) = next {
                p.pager { a rel="next" href=(href(&format!("/runs/{}", run.run_id), &[("after", Some(next.to_string()))])) { "More messages →" } }
            }
        },
    )
}

pub fn alerts(who: &Who, open: &[Alert], recent: &[Alert], next: Option<i64>) -> Markup {
    layout(
        "Alerts",
        Some(who),
        html! {
            h2 { "Open" }
            (alert_table(who, open, false))
            h2 { "All, newest first" }
            (alert_table(who, recent, false))
            @if let Some(next) = next {
                p.pager { a rel="next" href=(href("/alerts", &[("before", Some(next.to_string()))])) { "Older alerts →" } }
            }
        },
    )
}

// ---------------------------------------------------------------------------
// Outbox
// ---------------------------------------------------------------------------

/// "2026-06-15 03:00:00 UTC" with the time and zone kept together: a tight
/// table breaks it between the date and the time only.
fn instant(ts: &str) -> String {
    match ts.rsplit_once(' ') {
        Some((day_time, zone)) => format!("{day_time}\u{a0}{zone}"),
        None => ts.to_string(),
    }
}

fn message_table(messages: &[Message], selectable: bool) -> Markup {
    html! {
        @if messages.is_empty() { p { "No messages." } } @else { div.scroll {
            table.messages {
                thead { tr {
                    @if selectable { th { "select" } }
                    th { "message" } th { "assignment" } th { "kind" } th { "recipient" } th { "organization" }
                    th { "status" } th.num { "attempts" } th { "enqueued" } th { "visible" } th { "delivered / cancelled" } th { "last error / reason" }
                } }
                tbody {
                    @for m in messages {
                        tr {
                            @if selectable { td { input type="checkbox" name="ids" value=(m.message_id) aria-label={ "select " (m.message_id) }; } }
                            td { (m.message_id) @if let Some(r) = m.run_id { " " a.small href={ "/runs/" (r) } { "run " (r) } } }
                            td { a href={ "/assignments/" (segment(&m.assignment_id)) } { (m.assignment_id) } " · " (m.cycle_start) }
                            td { (m.kind) " " (m.sequence) }
                            td { (m.recipient_role) " " (opt(&m.recipient_id)) }
                            td { (opt(&m.organization)) }
                            td { (status_badge(&m.status)) }
                            td.num { (m.attempts) }
                            td.ts { (instant(&m.enqueued_at)) } td.ts { (instant(&m.visible_at)) }
                            td.ts { (instant(m.delivered_at.as_deref().or(m.cancelled_at.as_deref()).unwrap_or("—"))) }
                            td.wrap { (m.last_error.as_deref().or(m.cancel_reason.as_deref()).unwrap_or("")) }
                        }
                    }
                }
            }
        } }
    }
}

fn filter_params(f: &OutboxFilter) -> Vec<(&'static str, Option<String>)> {
    vec![
        ("status", f.status.clone()),
        ("organization", f.organization.clone()),
        ("recipient", f.recipient.clone()),
        ("kind", f.kind.clone()),
        ("date", f.date.clone()),
        ("limit", (f.limit != crate::db::PAGE).then(|| f.limit.to_string())),
    ]
}

/// The outbox page's own URL with its filters (where an action returns to).
pub fn outbox_url(f: &OutboxFilter) -> String {
    href("/outbox", &filter_params(f))
}

pub fn outbox(who: &Who, f: &OutboxFilter, page: &OutboxPage) -> Markup {
    let can_act = who.can.cancel || who.can.requeue;
    html! {
        (layout("Outbox", Some(who), html! {
            form.filters method="get" action="/outbox" {
                label { "status "
                    select name="status" {
                        option value="" { "any" }
                        @for s in ["pending", "claimed", "dead", "delivered", "cancelled"] {
                            option value=(s) selected[f.status.as_deref() == Some(s)] { (s) }
                        }
                    }
                }
                label { "organization " input type="text" name="organization" value=(f.organization.as_deref().unwrap_or("")); }
                label { "recipient id " input type="text" name="recipient" value=(f.recipient.as_deref().unwrap_or("")); }
                label { "kind "
                    select name="kind" {
                        option value="" { "any" }
                        @for k in ["reminder", "escalation"] { option value=(k) selected[f.kind.as_deref() == Some(k)] { (k) } }
                    }
                }
                label { "enqueued on " input type="date" name="date" value=(f.date.as_deref().unwrap_or("")); }
                label { "per page "
                    select name="limit" {
                        @for n in [50i64, 200, 1000] { option value=(n) selected[f.limit == n] { (n) } }
                    }
                }
                button type="submit" { "Filter" }
            }
            @if page.scan_stopped {
                p.note #scan-stopped { "This page looked at " (count(SCAN_LIMIT)) " messages (newest first) and shows the ones that match; older ones are on the next page." }
            }
            @if can_act {
                form method="post" action="/outbox/confirm" {
                    input type="hidden" name="back" value=(outbox_url(f));
                    (message_table(&page.messages, true))
                    p.actions {
                        "Selected messages: "
                        @if who.can.cancel { button type="submit" name="action" value="cancel" { "Cancel…" } " " }
                        @if who.can.requeue { button type="submit" name="action" value="requeue" { "Requeue dead…" } }
                        span.note { " (at most " (count(MAX_SELECTED as i64)) " at once; you confirm next)" }
                    }
                }
            } @else {
                (message_table(&page.messages, false))
            }
            @if let Some(next) = page.next {
                p.pager {
                    a rel="next" href=(href("/outbox", &[filter_params(f), vec![("before", Some(next.to_string()))]].concat())) { "Older messages →" }
                }
            }
        }))
    }
}

pub fn outbox_confirm(who: &Who, action: &str, ids: &[i64], affected: i64, back: &str) -> Markup {
    let (verb, what) = match action {
        "cancel" => ("Cancel", "pending or claimed, so they will be withdrawn"),
        _ => ("Requeue", "dead, so they will be pending again with their attempts reset"),
    };
    layout(
        &format!("{verb} {} messages?", ids.len()),
        Some(who),
        html! {
            p #confirm-count { "You selected " strong { (count(ids.len() as i64)) } " messages; " strong #affected { (count(affected)) } " of them are " (what) "." }
            form.action method="post" action={ "/outbox/" (action) } {
                @for id in ids { input type="hidden" name="ids" value=(id); }
                input type="hidden" name="back" value=(back);
                label { "Reason " input type="text" name="reason" required; }
                button type="submit" { (verb) " " (count(affected)) " messages" }
                " " a href=(back) { "Back" }
            }
        },
    )
}

// ---------------------------------------------------------------------------
// Assignments
// ---------------------------------------------------------------------------

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn json_text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "—".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// explain's verdict, in words.
pub fn verdict_in_words(e: &Value) -> String {
    let next = s(e, "next_due_on")
        .map(|d| format!(" The next reminder is due on {d} if nothing changes."))
        .unwrap_or_default();
    let org = s(e, "organization").unwrap_or("its organization");
    match s(e, "verdict").unwrap_or("") {
        "due" => {
            let n = e.get("due").and_then(Value::as_array).map(Vec::len).unwrap_or(0);
            format!("A reminder is due: a run as of {} would enqueue {n} message(s) for it.", s(e, "as_of").unwrap_or("today"))
        }
        "not_yet_due" => format!("Not due yet: the last contact is recent enough.{next}"),
        "inactive" => "Inactive: the assignment does not match the registration's active_when filter (closed, or deleted), so no reminder is sent.".to_string(),
        "no_cycle_start" => "No reminder: the assignment has neither a last contact nor a creation date to count from.".to_string(),
        "snoozed" => format!("Snoozed until {}: no reminder until then.{next}", s(e, "snoozed_until").unwrap_or("a later date")),
        "policy_disabled" => format!("No reminder: the policy that applies to {org} is disabled."),
        "max_reminders_reached" => "No more reminders this cycle: the policy's maximum number of reminders has been sent.".to_string(),
        "no_recipient" => "No reminder: the assignment has no recipient (no mentor, or no coordinator for an escalation).".to_string(),
        other => format!("Verdict: {other}.{next}"),
    }
}

/// A policy object of explain, in words.
fn policy_in_words(p: Option<&Value>) -> String {
    let Some(p @ Value::Object(_)) = p else { return "—".to_string() };
    format!("{}: {}", s(p, "organization").unwrap_or("?"), rule_in_words(p))
}

/// A policy's rule (a policy row or explain's object), in words.
fn rule_in_words(p: &Value) -> String {
    let n = |k: &str| p.get(k).and_then(Value::as_i64);
    let mut words =
        format!("remind after {} days", n("remind_after_days").map(|d| d.to_string()).unwrap_or_else(|| "?".into()));
    match n("repeat_every_days") {
        Some(d) => words.push_str(&format!(", again every {d} days")),
        None => words.push_str(", once"),
    }
    if let Some(d) = n("escalate_after_days") {
        words.push_str(&format!(", escalate after {d} days"));
    }
    if let Some(m) = n("max_reminders") {
        words.push_str(&format!(", at most {m} reminders"));
    }
    if p.get("enabled") == Some(&Value::Bool(false)) {
        words.push_str(" (disabled)");
    }
    words
}

const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

fn weekday(iso: i64) -> &'static str {
    usize::try_from(iso - 1).ok().and_then(|i| WEEKDAYS.get(i)).copied().unwrap_or("?")
}

/// ISO weekdays (send_days, a JSON array or NULL) in words: runs of three
/// or more as a range, "Mon–Fri, Sun"; NULL is every day.
pub fn weekdays_in_words(days: Option<&Value>) -> String {
    let Some(Value::Array(days)) = days else { return "every day".to_string() };
    let mut days: Vec<i64> = days.iter().filter_map(Value::as_i64).collect();
    days.sort_unstable();
    days.dedup();
    if days.len() == 7 {
        return "every day".to_string();
    }
    let mut parts = Vec::new();
    let mut i = 0;
    while i < days.len() {
        let mut j = i;
        while j + 1 < days.len() && days[j + 1] == days[j] + 1 {
            j += 1;
        }
        match j - i {
            0 => parts.push(weekday(days[i]).to_string()),
            1 => parts.extend([weekday(days[i]).to_string(), weekday(days[j]).to_string()]),
            _ => parts.push(format!("{}–{}", weekday(days[i]), weekday(days[j]))),
        }
        i = j + 1;
    }
    parts.join(", ")
}

/// An instant from explain's JSON ("2026-06-15T03:00:00.12+00:00") to the
/// minute, as "2026-06-15 03:00+00:00".
fn instant_in_words(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(t)) if t.len() >= 16 && t.as_bytes().get(10) == Some(&b'T') => {
            let zone = t[19..].find(['+', '-', 'Z']).map(|i| &t[19 + i..]).unwrap_or("");
            format!("{} {}{zone}", &t[..10], &t[11..16])
        }
        other => json_text(other),
    }
}

/// explain's calendar (window, weekdays, quiet days), in words.
fn window_in_words(w: Option<&Value>) -> String {
    let Some(w @ Value::Object(_)) = w else { return "none: any day, any time".to_string() };
    let hours = match (s(w, "send_from"), s(w, "send_until")) {
        (Some(from), Some(until)) => format!("{}–{}", from.get(..5).unwrap_or(from), until.get(..5).unwrap_or(until)),
        _ => "any time".to_string(),
    };
    let state = if w.get("open_now") == Some(&Value::Bool(true)) {
        "open now".to_string()
    } else {
        format!("closed now, opens {}", instant_in_words(w.get("next_opening")))
    };
    let quiet = if w.get("quiet_today") == Some(&Value::Bool(true)) { "; today is a quiet day" } else { "" };
    format!("{hours}, {} ({}): {state}{quiet}", weekdays_in_words(w.get("send_days")), json_text(w.get("timezone")))
}

/// explain's held_by of a pending message: what holds it back now, in words.
pub fn held_by_in_words(held: Option<&Value>) -> String {
    let Some(h @ Value::Object(_)) = held else { return String::new() };
    let from = instant_in_words(h.get("visible_from"));
    match s(h, "gate").unwrap_or("") {
        "superseded" => "superseded by a newer reminder: withdrawn at the next claim".to_string(),
        "recipient_away" => format!("the recipient is away until {}: held until {from}", json_text(h.get("until"))),
        "quiet_day" => format!("today is a quiet day: held until {from}"),
        "window_closed" => format!("outside the send window: held until {from}"),
        other => format!("held back ({other}) until {from}"),
    }
}

fn last_contact_source(e: &Value) -> String {
    match e.get("last_contact_source") {
        Some(src @ Value::Object(_)) => {
            if let Some(table) = s(src, "table") {
                format!("the latest activity in {table} ({})", instant_in_words(src.get("occurred")))
            } else if src.get("correction_id").is_some() {
                format!("correction {} (\"{}\")", json_text(src.get("correction_id")), json_text(src.get("reason")))
            } else {
                src.to_string()
            }
        }
        _ => "nothing explains the stored value (see Drift)".to_string(),
    }
}

pub struct AssignmentView<'a> {
    pub id: &'a str,
    pub as_of: Option<&'a str>,
    pub explain: &'a Value,
    pub corrections: &'a [Correction],
    pub snoozes: &'a [Snooze],
    /// the recipients of its messages, and their absences
    pub recipients: &'a [Recipient],
    pub absences: &'a [Away],
}

pub fn assignment(who: &Who, a: &AssignmentView) -> Markup {
    let e = a.explain;
    let base = format!("/assignments/{}", segment(a.id));
    layout(
        &format!("Assignment {}", a.id),
        Some(who),
        html! {
            form.filters method="get" action=(base) {
                label { "explain as of " input type="date" name="as_of" value=(a.as_of.unwrap_or("")); }
                button type="submit" { "Explain" }
            }
            p.verdict #verdict data-verdict=(s(e, "verdict").unwrap_or("")) { (verdict_in_words(e)) }
            dl.grid #explain {
                dt { "assignment" } dd #assignment-id { (json_text(e.get("assignment_id"))) }
                dt { "as of" } dd { (json_text(e.get("as_of"))) }
                dt { "organization" } dd { (json_text(e.get("organization"))) }
                dt { "last contact" } dd #last-contact { (json_text(e.get("last_contact"))) }
                dt { "its source" } dd #last-contact-source { (last_contact_source(e)) }
                dt { "cycle start" } dd { (json_text(e.get("cycle_start"))) }
                dt { "days since contact" } dd { (json_text(e.get("age_days"))) }
                dt { "snoozed until" } dd { (json_text(e.get("snoozed_until"))) }
                dt { "next due on" } dd { (json_text(e.get("next_due_on"))) }
                dt { "policy" } dd { (policy_in_words(e.get("policy"))) }
                dt { "send window" } dd { (window_in_words(e.get("window"))) }
            }
            h2 { "This cycle's messages" }
            @match e.get("messages").and_then(Value::as_array) {
                Some(ms) if !ms.is_empty() => {
                    table.messages {
                        thead { tr { th { "message" } th { "kind" } th { "status" } th { "visible" } th { "delivered" } th { "cancel reason" } th { "held back" } } }
                        tbody { @for m in ms { tr {
                            td { (json_text(m.get("message_id"))) }
                            td { (json_text(m.get("kind"))) " " (json_text(m.get("sequence"))) }
                            td { (json_text(m.get("status"))) }
                            td { (instant_in_words(m.get("visible_at"))) }
                            td { (instant_in_words(m.get("delivered_at"))) }
                            td { (json_text(m.get("cancel_reason"))) }
                            td.wrap.held data-gate=(m.get("held_by").and_then(|h| s(h, "gate")).unwrap_or("")) {
                                (held_by_in_words(m.get("held_by")))
                            }
                        } } }
                    }
                }
                _ => { p { "None." } }
            }
            details { summary { "explain's full answer" } pre { (serde_json::to_string_pretty(e).unwrap_or_default()) } }
            @if who.can.set_last_contact {
                h2 { "Correct the last contact" }
                form.action #form-last-contact method="post" action={ (base) "/last-contact" } {
                    label { "Date " input type="date" name="date" required; }
                    label { "Reason " input type="text" name="reason" required; }
                    button type="submit" { "Correct" }
                }
            }
            @if who.can.snooze {
                h2 { "Snooze" }
                form.action #form-snooze method="post" action={ (base) "/snooze" } {
                    label { "Until " input type="date" name="until" required; }
                    label { "Reason " input type="text" name="reason" required; }
                    button type="submit" { "Snooze" }
                }
            }
            @if who.can.unsnooze && a.snoozes.iter().any(|s| s.ended_at.is_none()) {
                form.action #form-unsnooze method="post" action={ (base) "/unsnooze" } {
                    button type="submit" { "End its snoozes" }
                }
            }
            h2 { "Corrections" }
            @if a.corrections.is_empty() { p { "None." } } @else {
                table #corrections {
                    thead { tr { th { "id" } th { "when" } th { "by" } th { "from" } th { "to" } th { "reason" } } }
                    tbody { @for c in a.corrections { tr {
                        td { (c.correction_id) } td { (c.corrected_at) }
                        td.by { (c.corrected_by) @if c.session_role != c.corrected_by { " (session " (c.session_role) ")" } }
                        td { (opt(&c.old_value)) } td { (c.new_value) } td.reason { (c.reason) }
                    } } }
                }
            }
            h2 { "Snoozes" }
            @if a.snoozes.is_empty() { p { "None." } } @else {
                table #snoozes {
                    thead { tr { th { "id" } th { "when" } th { "by" } th { "until" } th { "reason" } th { "ended" } } }
                    tbody { @for z in a.snoozes { tr {
                        td { (z.snooze_id) } td { (z.snoozed_at) } td.by { (z.snoozed_by) } td { (z.until) } td.reason { (z.reason) }
                        td { (opt(&z.ended_at)) @if let Some(by) = &z.ended_by { " by " (by) } }
                    } } }
                }
            }
            h2 { "Recipients away" }
            p.note { "While a recipient is away, their messages wait for the first opening after the absence (followup.set_away, in their organization's local days)." }
            @if a.absences.is_empty() { p { "None recorded for the recipients of its messages." } } @else {
                table #absences {
                    thead { tr { th { "id" } th { "recipient" } th { "from" } th { "until" } th { "reason" } th { "set" } th { "ended" } } }
                    tbody { @for w in a.absences { tr {
                        td { (w.away_id) } td { (w.recipient_role) " " (w.recipient_id) } td { (w.from_day) } td { (w.until_day) }
                        td.reason { (w.reason) } td.by { (w.set_at) " by " (w.set_by) }
                        td {
                            @if let Some(at) = &w.ended_at { (at) @if let Some(by) = &w.ended_by { " by " (by) } }
                            @else if who.can.end_away {
                                form.inline method="post" action={ (base) "/end-away" } {
                                    input type="hidden" name="recipient" value={ (w.recipient_role) ":" (w.recipient_id) };
                                    button type="submit" { "End now" }
                                }
                            } @else { "open" }
                        }
                    } } }
                }
            }
            @if who.can.set_away && !a.recipients.is_empty() {
                form.action #form-away method="post" action={ (base) "/away" } {
                    label { "Recipient "
                        select name="recipient" required {
                            @for (role, id) in a.recipients { option value={ (role) ":" (id) } { (role) " " (id) } }
                        }
                    }
                    label { "Away from " input type="date" name="from_day" required; }
                    label { "until (last day) " input type="date" name="until_day" required; }
                    label { "Reason " input type="text" name="reason" required; }
                    button type="submit" { "Record the absence" }
                }
            }
        },
    )
}

pub fn assignment_search(who: &Who) -> Markup {
    layout(
        "Explain an assignment",
        Some(who),
        html! {
            form.filters method="get" action="/assignments" {
                label { "Assignment id " input type="text" name="id" required; }
                button type="submit" { "Explain" }
            }
        },
    )
}

// ---------------------------------------------------------------------------
// Drift, audit, policies
// ---------------------------------------------------------------------------

pub fn drift(who: &Who, findings: Option<&[Drift]>, max_rows: i32) -> Markup {
    layout(
        "Drift",
        Some(who),
        html! {
            p { "followup.verify lists the assignments whose stored last contact is not what the tracking triggers keep. It reads every assignment and activity: at a million assignments it takes seconds, so it runs when you ask." }
            @if who.can.verify {
                form.filters method="get" action="/drift" {
                    input type="hidden" name="check" value="1";
                    button type="submit" { "Verify now" }
                    span.note { " (shows up to " (max_rows) ")" }
                }
            } @else { p.note { "Your role may not run followup.verify." } }
            @if let Some(findings) = findings {
                p #drift-count { strong { (findings.len()) } @if findings.len() as i32 >= max_rows { " or more" } " assignment(s) drifted." }
                @if !findings.is_empty() {
                    table #drift {
                        thead { tr { th { "assignment" } th { "stored" } th { "expected" } } }
                        tbody { @for d in findings { tr {
                            td { a href={ "/assignments/" (segment(&d.assignment_id)) } { (d.assignment_id) } }
                            td { (opt(&d.stored)) } td { (opt(&d.expected)) }
                        } } }
                    }
                    @if who.can.repair {
                        form.action method="post" action="/drift/confirm" {
                            button type="submit" { "Repair…" }
                            span.note { " (you confirm next)" }
                        }
                    }
                }
            }
        },
    )
}

pub fn drift_confirm(who: &Who, n: usize, more: bool) -> Markup {
    layout(
        &format!("Repair {n}{} drifted assignments?", if more { "+" } else { "" }),
        Some(who),
        html! {
            p #confirm-count { "followup.repair will set " strong { (n) @if more { " or more" } } " assignment(s) to what tracking keeps, in one statement, with one audit row each (followup.repairs)." }
            form.action method="post" action="/drift/repair" {
                label { "Reason " input type="text" name="reason" required; }
                button type="submit" { "Repair" }
                " " a href="/drift" { "Back" }
            }
        },
    )
}

pub fn audit(who: &Who, entries: &[AuditEntry], source: Option<&str>, next: Option<String>) -> Markup {
    layout(
        "Audit",
        Some(who),
        html! {
            p { "Who changed what, when and why: corrections of last contacts, snoozes, repairs, and the audit log (cancels, requeues, unsnoozes, policy edits, manual runs, resolved alerts). \"Who\" is the acting role (PostgreSQL's outer user); the session role is shown when it differs." }
            form.filters method="get" action="/audit" {
                label { "show "
                    select name="source" {
                        option value="" { "everything" }
                        @for (v, label) in [("log", "audit log"), ("corrections", "corrections"), ("snoozes", "snoozes"), ("repairs", "repairs")] {
                            option value=(v) selected[source == Some(v)] { (label) }
                        }
                    }
                }
                button type="submit" { "Show" }
            }
            @if entries.is_empty() { p { "Nothing recorded." } } @else {
                table #audit {
                    thead { tr { th { "when" } th { "who" } th { "what" } th { "subject" } th { "why" } th { "details" } } }
                    tbody { @for e in entries { tr {
                        td { (e.at) }
                        td.by { (e.who) @if e.session_role != e.who { " (session " (e.session_role) ")" } }
                        td { (e.action) }
                        td { @if e.source != "log" { a href={ "/assignments/" (segment(&e.subject)) } { (e.subject) } } @else { (e.subject) } }
                        td.reason { (e.reason.as_deref().unwrap_or("")) }
                        td.details { (e.details) }
                    } } }
                }
            }
            @if let Some(next) = next {
                p.pager { a rel="next" href=(href("/audit", &[("source", source.map(str::to_string)), ("before", Some(next))])) { "Older entries →" } }
            }
        },
    )
}

fn field_value(p: &serde_json::Map<String, Value>, key: &str) -> String {
    match p.get(key) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

/// The quiet days shown on /policies: from a day on, and how many are
/// before it.
pub struct QuietDays<'a> {
    pub days: &'a [QuietDay],
    pub from: Option<&'a str>,
    pub past: i64,
}

pub fn policies(who: &Who, policies: &[serde_json::Map<String, Value>], quiet: &QuietDays) -> Markup {
    let mut extra: Vec<&String> = Vec::new();
    for p in policies {
        for k in p.keys() {
            // the columns shown in words are the form's; others (a newer
            // extension's) as they are
            if k != "organization" && !POLICY_FIELDS.contains(&k.as_str()) && !extra.contains(&k) {
                extra.push(k);
            }
        }
    }
    let editable = who.can.policy_update || who.can.policy_delete;
    layout(
        "Policies",
        Some(who),
        html! {
            p { "Each organization's reminder rule and calendar: its time zone, the hours and weekdays its window opens on, and its quiet days. '*' applies to organizations without a row of their own; quiet days of '*' apply to every organization." }
            table #policies {
                thead { tr {
                    th { "organization" } th { "rule" } th { "time zone" } th { "window" } th { "send days" }
                    @for c in &extra { th { (c) } }
                    @if editable { th {} }
                } }
                tbody { @for p in policies {
                    @let row = Value::Object(p.clone());
                    @let org = field_value(p, "organization");
                    tr data-organization=(org) {
                        td { strong { (org) } }
                        td.wrap { (rule_in_words(&row)) }
                        td { @match given_value(p, "timezone") {
                            Some(zone) => { (zone) }
                            None => { span.note { "followup.timezone" } }
                        } }
                        td { @match (s(&row, "send_from"), s(&row, "send_until")) {
                            (Some(from), Some(until)) => { (from.get(..5).unwrap_or(from)) "–" (until.get(..5).unwrap_or(until)) }
                            _ => { "any time" }
                        } }
                        td.send-days { (weekdays_in_words(p.get("send_days"))) }
                        @for c in &extra { td { (field_value(p, c)) } }
                        @if editable { td {
                            a href=(href("/policies/edit", &[("organization", Some(org.clone()))])) { "Edit" }
                        } }
                    }
                } }
            }
            @if who.can.policy_insert {
                p { a #new-policy href="/policies/edit" { "New policy…" } }
            }
            h2 { "Quiet days" }
            p.note { "No message of the organization is handed out on these local days; each waits for the next opening after it. The organization's time zone decides the day." }
            form.filters method="get" action="/policies" {
                label { "from " input type="date" name="from" value=(quiet.from.unwrap_or("")); }
                button type="submit" { "Show" }
                @if quiet.past > 0 {
                    span.note #quiet-past { (quiet.past) " earlier quiet day(s) not shown" }
                }
            }
            @if quiet.days.is_empty() { p #no-quiet-days { "None from " (quiet.from.unwrap_or("today")) " on." } } @else {
                table #quiet-days {
                    thead { tr { th { "day" } th { "weekday" } th { "organization" } th { "reason" } @if who.can.quiet_day_delete { th {} } } }
                    tbody { @for d in quiet.days { tr {
                        td { (d.day) } td { (weekday(i64::from(d.weekday))) }
                        td { @if d.organization == "*" { "* (every organization)" } @else { (d.organization) } }
                        td.reason { (d.reason) }
                        @if who.can.quiet_day_delete { td {
                            form.inline method="post" action="/policies/quiet-days/delete" {
                                input type="hidden" name="organization" value=(d.organization);
                                input type="hidden" name="day" value=(d.day);
                                button.danger type="submit" { "Remove" }
                            }
                        } }
                    } } }
                }
            }
            @if who.can.quiet_day_insert {
                form.action #form-quiet-day method="post" action="/policies/quiet-days" {
                    label { "Organization " input type="text" name="organization" value="*" required; }
                    label { "Day " input type="date" name="day" required; }
                    label { "Reason " input type="text" name="reason" required placeholder="e.g. Christmas Day"; }
                    button type="submit" { "Add a quiet day" }
                }
            }
        },
    )
}

fn given_value(p: &serde_json::Map<String, Value>, key: &str) -> Option<String> {
    Some(field_value(p, key)).filter(|v| !v.is_empty())
}

pub fn policy_edit(who: &Who, policy: Option<&serde_json::Map<String, Value>>) -> Markup {
    let title = match policy {
        Some(p) => format!("Policy {}", field_value(p, "organization")),
        None => "New policy".to_string(),
    };
    let v = |k: &str| policy.map(|p| field_value(p, k)).unwrap_or_default();
    let send_days: Vec<i64> = policy
        .and_then(|p| p.get("send_days"))
        .and_then(Value::as_array)
        .map(|days| days.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    layout(
        &title,
        Some(who),
        html! {
            form.action.stacked method="post" action="/policies" {
                @if let Some(p) = policy {
                    input type="hidden" name="organization" value=(field_value(p, "organization"));
                    input type="hidden" name="mode" value="update";
                } @else {
                    label { "organization " input type="text" name="organization" required; }
                    input type="hidden" name="mode" value="insert";
                }
                label { "remind after (days) " input type="number" name="remind_after_days" min="0" required value=(v("remind_after_days")); }
                label { "repeat every (days) " input type="number" name="repeat_every_days" min="1" value=(v("repeat_every_days")); }
                label { "escalate after (days) " input type="number" name="escalate_after_days" min="0" value=(v("escalate_after_days")); }
                label { "max reminders " input type="number" name="max_reminders" min="1" value=(v("max_reminders")); }
                label { "enabled " input type="checkbox" name="enabled" value="true" checked[policy.is_none() || v("enabled") == "true"]; }
                label { "time zone " input type="text" name="timezone" placeholder="empty: followup.timezone" value=(v("timezone")); }
                label { "send from " input type="time" name="send_from" value=(v("send_from").get(..5).unwrap_or("")); }
                label { "send until " input type="time" name="send_until" value=(v("send_until").get(..5).unwrap_or("")); }
                fieldset.weekdays {
                    legend { "send days (none ticked: every day)" }
                    @for (i, name) in WEEKDAYS.iter().enumerate() {
                        @let day = i as i64 + 1;
                        label.check {
                            input type="checkbox" name="send_days" value=(day) checked[send_days.contains(&day)];
                            (name)
                        }
                    }
                }
                button type="submit" { "Save" }
                " " a href="/policies" { "Back" }
            }
            @if let Some(p) = policy {
                @if who.can.policy_delete && field_value(p, "organization") != "*" {
                    form.action method="post" action="/policies/delete" {
                        input type="hidden" name="organization" value=(field_value(p, "organization"));
                        button.danger type="submit" { "Delete this policy" }
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let who = Who { role: "<b>ann</b>", can: Privileges::default() };
        let page = message_page(Some(&who), "t", "<script>alert(1)</script>").into_string();
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!page.contains("<script>"));
        assert!(page.contains("&lt;b&gt;ann&lt;/b&gt;"));
    }

    #[test]
    fn links_are_encoded() {
        assert_eq!(href("/outbox", &[("status", Some("dead".into())), ("kind", None)]), "/outbox?status=dead");
        assert_eq!(href("/x", &[("q", Some("a b&c".into()))]), "/x?q=a+b%26c");
        assert_eq!(segment("<script>/x y"), "%3Cscript%3E%2Fx%20y");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(count(12), "12");
    }

    #[test]
    fn verdicts_in_words() {
        let e: Value =
            serde_json::json!({"verdict": "snoozed", "snoozed_until": "2026-07-01", "next_due_on": "2026-07-02"});
        assert!(verdict_in_words(&e).starts_with("Snoozed until 2026-07-01"));
        let e: Value = serde_json::json!({"verdict": "due", "as_of": "2026-06-15", "due": [{}, {}]});
        assert!(verdict_in_words(&e).contains("2 message(s)"));
    }

    #[test]
    fn calendars_in_words() {
        let days = |v: Value| weekdays_in_words(Some(&v));
        assert_eq!(days(serde_json::json!([1, 2, 3, 4, 5])), "Mon–Fri");
        assert_eq!(days(serde_json::json!([7, 1, 2])), "Mon, Tue, Sun");
        assert_eq!(days(serde_json::json!([1, 3, 4, 5, 6, 7])), "Mon, Wed–Sun");
        assert_eq!(days(serde_json::json!([1, 2, 3, 4, 5, 6, 7])), "every day");
        assert_eq!(days(Value::Null), "every day");
        let held = serde_json::json!({"gate": "recipient_away", "until": "2026-07-14",
                                      "visible_from": "2026-07-15T07:00:00.5+00:00"});
        assert_eq!(
            held_by_in_words(Some(&held)),
            "the recipient is away until 2026-07-14: held until 2026-07-15 07:00+00:00"
        );
        assert!(held_by_in_words(Some(&serde_json::json!({"gate": "superseded"}))).starts_with("superseded"));
        assert_eq!(held_by_in_words(Some(&Value::Null)), "");
        let w = serde_json::json!({"timezone": "Europe/Oslo", "send_from": "08:00:00", "send_until": "20:00:00",
                                   "send_days": [1, 2, 3, 4, 5], "quiet_today": true, "open_now": false,
                                   "next_opening": "2026-12-28T07:00:00+00:00"});
        assert_eq!(
            window_in_words(Some(&w)),
            "08:00–20:00, Mon–Fri (Europe/Oslo): closed now, opens 2026-12-28 07:00+00:00; today is a quiet day"
        );
    }
}
