//! The HTML pages and their forms. Each runs its statements on the
//! person's own connection; a form POST that succeeds answers 303 to the
//! page it changed, one that fails shows why (and changed nothing: each
//! action is one statement, which PostgreSQL runs whole or not at all).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use axum_extra::extract::cookie::{Cookie, CookieJar};
use serde::Deserialize;

use super::{local_path, page_error, AppState, Person};
use crate::charts;
use crate::db::{self, AuditCursor, DbError, OutboxFilter, AUDIT_SOURCES, MAX_SELECTED, PAGE, POLICY_FIELDS};
use crate::session::LoginError;
use crate::views::{self, segment, Who};

type St = State<std::sync::Arc<AppState>>;
type Page = Result<Response, Response>;

/// Empty form fields and query parameters are absent ones.
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn see_other(path: &str) -> Response {
    Redirect::to(path).into_response()
}

fn bad_request(person: &Person, message: &str) -> Response {
    page_error(person, DbError::sql("22023", message))
}

async fn who(person: &Person) -> Result<Who<'_>, Response> {
    person.who().await.map_err(|e| page_error(person, e))
}

// ---------------------------------------------------------------------------
// Login, logout, health, static
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
    lost: Option<String>,
    expired: Option<String>,
}

pub async fn login_form(Query(q): Query<LoginQuery>) -> Response {
    let note = if q.lost.is_some() {
        Some("Your database connection was lost: log in again.")
    } else if q.expired.is_some() {
        Some("Your session ended: log in again.")
    } else {
        None
    };
    views::login(&local_path(q.next.as_deref()), note).into_response()
}

#[derive(Deserialize)]
pub struct LoginForm {
    user: Option<String>,
    password: Option<String>,
    next: Option<String>,
}

pub async fn login(
    State(state): St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    jar: CookieJar,
    Form(form): Form<LoginForm>,
) -> Response {
    // a session the browser brought along is never kept (no fixation)
    if let Some(old) = jar.get(state.cookie_name()) {
        state.sessions.end(old.value());
    }
    let user = form.user.as_deref().unwrap_or("").trim();
    let password = form.password.as_deref().unwrap_or("");
    let next = local_path(form.next.as_deref());
    match state.sessions.login(user, password, peer.ip()).await {
        Ok((token, session)) => {
            tracing::info!(role = %session.role, client = %peer.ip(), "logged in");
            (jar.add(state.session_cookie(token)), Redirect::to(&next)).into_response()
        }
        Err(LoginError::Refused) => (
            StatusCode::UNAUTHORIZED,
            views::login(&next, Some("Login failed: the role or password was not accepted.")),
        )
            .into_response(),
        Err(LoginError::Full) => (
            StatusCode::SERVICE_UNAVAILABLE,
            views::message_page(
                None,
                "Too many sessions",
                "The console has as many sessions open as it may: try again later.",
            ),
        )
            .into_response(),
        Err(LoginError::Unavailable) => (
            StatusCode::SERVICE_UNAVAILABLE,
            views::message_page(None, "Database unavailable", "The database cannot be reached: try again later."),
        )
            .into_response(),
    }
}

pub async fn logout(State(state): St, jar: CookieJar) -> Response {
    if let Some(cookie) = jar.get(state.cookie_name()) {
        state.sessions.end(cookie.value());
    }
    let removal = Cookie::build((state.cookie_name(), "")).path("/").build();
    (jar.remove(removal), Redirect::to("/login")).into_response()
}

/// 200 when the database answers (even with an authentication error), 503
/// otherwise. Needs no login.
pub async fn healthz(State(state): St) -> Response {
    let (database, tls) = state.sessions.database();
    if db::server_answers(database, tls, std::time::Duration::from_secs(5)).await {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "the database does not answer\n").into_response()
    }
}

pub async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=3600")],
        include_str!("../../static/console.css"),
    )
        .into_response()
}

pub async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, views::message_page(None, "Not found", "There is no such page.")).into_response()
}

// ---------------------------------------------------------------------------
// Overview
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
pub struct OverviewQuery {
    refresh: Option<u32>,
}

pub async fn overview(person: Person, Query(q): Query<OverviewQuery>) -> Page {
    let c = person.client();
    let fail = |e| page_error(&person, e);
    // independent statements, pipelined on the one connection
    let (health, last_run, oldest, estimates, alerts, durations, can) = tokio::try_join!(
        db::health(c),
        db::last_run(c),
        db::oldest_claimable_age(c),
        db::outbox_estimates(c),
        db::open_alerts(c, 10),
        db::run_durations(c),
        db::privileges(c),
    )
    .map_err(fail)?;
    let flow = db::message_flow(c, estimates.rows).await.map_err(fail)?;
    let (days, points, threshold) = durations;
    let points: Vec<(String, f64)> = points.into_iter().map(|p| (p.day, p.seconds)).collect();
    let chart_failed = |e: String| {
        tracing::error!("chart: {e}");
        String::new()
    };
    let durations_svg = charts::run_durations(&days, &points, threshold).unwrap_or_else(chart_failed);
    let flow_svg = charts::message_flow(&flow.days, &flow.series).unwrap_or_else(chart_failed);
    let overview = views::Overview {
        health,
        last_run,
        oldest_claimable: oldest,
        estimates,
        alerts,
        durations_svg,
        flow,
        flow_svg,
        refresh: q.refresh.map(|s| s.clamp(5, 3600)),
    };
    let who = Who { role: &person.session.role, can };
    Ok(views::overview(&who, &overview).into_response())
}

// ---------------------------------------------------------------------------
// Runs and alerts
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
pub struct RunsQuery {
    status: Option<String>,
    before: Option<i64>,
}

pub async fn runs(person: Person, Query(q): Query<RunsQuery>) -> Page {
    let who = who(&person).await?;
    let status = given(&q.status);
    let mut runs = db::runs(person.client(), q.before, status, PAGE + 1).await.map_err(|e| page_error(&person, e))?;
    let next = (runs.len() as i64 > PAGE).then(|| {
        runs.truncate(PAGE as usize);
        runs.last().map(|r| r.run_id)
    });
    Ok(views::runs(&who, &runs, status, next.flatten()).into_response())
}

#[derive(Deserialize)]
pub struct RunQuery {
    after: Option<i64>,
}

pub async fn run(person: Person, Path(id): Path<i64>, Query(q): Query<RunQuery>) -> Page {
    let who = who(&person).await?;
    let c = person.client();
    let fail = |e| page_error(&person, e);
    let Some(run) = db::run(c, id).await.map_err(fail)? else {
        return Err(fail(DbError::sql("P0002", format!("no run with id {id}"))));
    };
    let (alerts, mut messages) =
        tokio::try_join!(db::run_alerts(c, id), db::run_messages(c, &run, q.after)).map_err(fail)?;
    let next = (messages.len() as i64 > PAGE).then(|| {
        messages.truncate(PAGE as usize);
        messages.last().map(|m| m.message_id)
    });
    Ok(views::run(&who, &run, &alerts, &messages, next.flatten()).into_response())
}

#[derive(Deserialize)]
pub struct RunNowForm {
    as_of: Option<String>,
}

pub async fn run_now(person: Person, Form(form): Form<RunNowForm>) -> Page {
    let run_id = db::run_now(person.client(), given(&form.as_of)).await.map_err(|e| page_error(&person, e))?;
    tracing::info!(role = %person.session.role, run_id, "run now");
    Ok(see_other(&format!("/runs/{run_id}")))
}

#[derive(Deserialize)]
pub struct AlertsQuery {
    before: Option<i64>,
}

pub async fn alerts(person: Person, Query(q): Query<AlertsQuery>) -> Page {
    let who = who(&person).await?;
    let c = person.client();
    let (open, mut recent) = tokio::try_join!(db::open_alerts(c, 100), db::alerts(c, q.before, PAGE + 1))
        .map_err(|e| page_error(&person, e))?;
    let next = (recent.len() as i64 > PAGE).then(|| {
        recent.truncate(PAGE as usize);
        recent.last().map(|a| a.alert_id)
    });
    Ok(views::alerts(&who, &open, &recent, next.flatten()).into_response())
}

pub async fn resolve_alert(person: Person, Path(id): Path<i64>) -> Page {
    db::resolve_alert(person.client(), id).await.map_err(|e| page_error(&person, e))?;
    tracing::info!(role = %person.session.role, alert_id = id, "alert resolved");
    Ok(see_other("/alerts"))
}

// ---------------------------------------------------------------------------
// Outbox
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
pub struct OutboxQuery {
    status: Option<String>,
    organization: Option<String>,
    recipient: Option<String>,
    kind: Option<String>,
    date: Option<String>,
    before: Option<i64>,
    limit: Option<i64>,
}

pub async fn outbox(person: Person, Query(q): Query<OutboxQuery>) -> Page {
    let who = who(&person).await?;
    let own = |v: &Option<String>| given(v).map(str::to_string);
    let status = own(&q.status);
    if status.as_deref().is_some_and(|s| !["pending", "claimed", "dead", "delivered", "cancelled"].contains(&s)) {
        return Err(bad_request(&person, "status must be pending, claimed, dead, delivered or cancelled"));
    }
    let filter = OutboxFilter {
        status,
        organization: own(&q.organization),
        recipient: own(&q.recipient),
        kind: own(&q.kind),
        date: own(&q.date),
        before: q.before,
        limit: q.limit.unwrap_or(PAGE).clamp(1, MAX_SELECTED as i64),
    };
    let page = db::outbox(person.client(), &filter).await.map_err(|e| page_error(&person, e))?;
    Ok(views::outbox(&who, &filter, &page).into_response())
}

#[derive(Deserialize)]
pub struct Selection {
    #[serde(default)]
    ids: Vec<i64>,
    action: Option<String>,
    reason: Option<String>,
    back: Option<String>,
}

fn checked_selection(person: &Person, ids: &[i64]) -> Result<(), Response> {
    if ids.is_empty() {
        return Err(bad_request(person, "select at least one message"));
    }
    if ids.len() > MAX_SELECTED {
        return Err(bad_request(person, &format!("at most {MAX_SELECTED} messages at once, not {}", ids.len())));
    }
    Ok(())
}

/// The confirmation: how many are selected, and how many the action changes.
/// Changes nothing.
pub async fn outbox_confirm(
    person: Person,
    axum_extra::extract::Form(form): axum_extra::extract::Form<Selection>,
) -> Page {
    checked_selection(&person, &form.ids)?;
    let action = match form.action.as_deref() {
        Some(a @ ("cancel" | "requeue")) => a,
        _ => return Err(bad_request(&person, "choose cancel or requeue")),
    };
    let who = who(&person).await?;
    let (cancellable, dead) =
        db::selected_counts(person.client(), &form.ids).await.map_err(|e| page_error(&person, e))?;
    let affected = if action == "cancel" { cancellable } else { dead };
    let back = local_path(form.back.as_deref().or(Some("/outbox")));
    Ok(views::outbox_confirm(&who, action, &form.ids, affected, &back).into_response())
}

pub async fn outbox_cancel(
    person: Person,
    axum_extra::extract::Form(form): axum_extra::extract::Form<Selection>,
) -> Page {
    checked_selection(&person, &form.ids)?;
    let reason = form.reason.as_deref().unwrap_or("");
    let n = db::cancel(person.client(), &form.ids, reason).await.map_err(|e| page_error(&person, e))?;
    tracing::info!(role = %person.session.role, cancelled = n, "messages cancelled");
    Ok(see_other(&local_path(form.back.as_deref().or(Some("/outbox")))))
}

pub async fn outbox_requeue(
    person: Person,
    axum_extra::extract::Form(form): axum_extra::extract::Form<Selection>,
) -> Page {
    checked_selection(&person, &form.ids)?;
    let reason = form.reason.as_deref().unwrap_or("");
    let n = db::requeue_dead(person.client(), &form.ids, reason).await.map_err(|e| page_error(&person, e))?;
    tracing::info!(role = %person.session.role, requeued = n, "dead messages requeued");
    Ok(see_other(&local_path(form.back.as_deref().or(Some("/outbox")))))
}

// ---------------------------------------------------------------------------
// Assignments
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
pub struct SearchQuery {
    id: Option<String>,
}

pub async fn assignment_search(person: Person, Query(q): Query<SearchQuery>) -> Page {
    match given(&q.id) {
        Some(id) => Ok(see_other(&format!("/assignments/{}", segment(id)))),
        None => Ok(views::assignment_search(&who(&person).await?).into_response()),
    }
}

#[derive(Deserialize)]
pub struct AsOfQuery {
    as_of: Option<String>,
}

pub async fn assignment(person: Person, Path(id): Path<String>, Query(q): Query<AsOfQuery>) -> Page {
    let c = person.client();
    let as_of = given(&q.as_of);
    let (explain, corrections, snoozes, recipients, can) = tokio::try_join!(
        db::explain(c, &id, as_of),
        db::corrections(c, &id),
        db::snoozes(c, &id),
        db::recipients(c, &id),
        db::privileges(c)
    )
    .map_err(|e| page_error(&person, e))?;
    let absences = db::absences(c, &recipients).await.map_err(|e| page_error(&person, e))?;
    let who = Who { role: &person.session.role, can };
    let view = views::AssignmentView {
        id: &id,
        as_of,
        explain: &explain,
        corrections: &corrections,
        snoozes: &snoozes,
        recipients: &recipients,
        absences: &absences,
    };
    Ok(views::assignment(&who, &view).into_response())
}

#[derive(Deserialize)]
pub struct DatedReason {
    date: Option<String>,
    until: Option<String>,
    reason: Option<String>,
}

pub async fn set_last_contact(person: Person, Path(id): Path<String>, Form(form): Form<DatedReason>) -> Page {
    db::set_last_contact(person.client(), &id, given(&form.date), form.reason.as_deref())
        .await
        .map_err(|e| page_error(&person, e))?;
    tracing::info!(role = %person.session.role, assignment = %id, "last contact corrected");
    Ok(see_other(&format!("/assignments/{}", segment(&id))))
}

pub async fn snooze(person: Person, Path(id): Path<String>, Form(form): Form<DatedReason>) -> Page {
    db::snooze(person.client(), &id, given(&form.until), form.reason.as_deref())
        .await
        .map_err(|e| page_error(&person, e))?;
    tracing::info!(role = %person.session.role, assignment = %id, "snoozed");
    Ok(see_other(&format!("/assignments/{}", segment(&id))))
}

pub async fn unsnooze(person: Person, Path(id): Path<String>) -> Page {
    db::unsnooze(person.client(), &id).await.map_err(|e| page_error(&person, e))?;
    tracing::info!(role = %person.session.role, assignment = %id, "unsnoozed");
    Ok(see_other(&format!("/assignments/{}", segment(&id))))
}

// ---------------------------------------------------------------------------
// Drift
// ---------------------------------------------------------------------------

const DRIFT_SHOWN: i32 = 100;
const DRIFT_COUNTED: i32 = 100_000;

#[derive(Deserialize)]
pub struct DriftQuery {
    check: Option<String>,
}

pub async fn drift(person: Person, Query(q): Query<DriftQuery>) -> Page {
    let who = who(&person).await?;
    let findings = match given(&q.check) {
        Some(_) => Some(db::verify(person.client(), DRIFT_SHOWN).await.map_err(|e| page_error(&person, e))?),
        None => None,
    };
    Ok(views::drift(&who, findings.as_deref(), DRIFT_SHOWN).into_response())
}

pub async fn drift_confirm(person: Person) -> Page {
    let who = who(&person).await?;
    let found = db::verify(person.client(), DRIFT_COUNTED).await.map_err(|e| page_error(&person, e))?;
    Ok(views::drift_confirm(&who, found.len(), found.len() as i32 >= DRIFT_COUNTED).into_response())
}

#[derive(Deserialize)]
pub struct ReasonForm {
    reason: Option<String>,
}

pub async fn drift_repair(person: Person, Form(form): Form<ReasonForm>) -> Page {
    let n = db::repair(person.client(), form.reason.as_deref()).await.map_err(|e| page_error(&person, e))?;
    tracing::info!(role = %person.session.role, repaired = n, "repair");
    Ok(see_other("/drift"))
}

// ---------------------------------------------------------------------------
// Audit
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
pub struct AuditQuery {
    source: Option<String>,
    before: Option<String>,
}

/// "<instant>|<source>|<id>" of the last entry shown.
fn audit_cursor(text: &str) -> Option<AuditCursor> {
    let mut parts = text.rsplitn(3, '|');
    let id = parts.next()?.parse().ok()?;
    let name = parts.next()?;
    let source = AUDIT_SOURCES.iter().position(|s| *s == name)?;
    Some(AuditCursor { at: parts.next()?.to_string(), source, id })
}

pub async fn audit(person: Person, Query(q): Query<AuditQuery>) -> Page {
    let who = who(&person).await?;
    let source = given(&q.source);
    let only = match source {
        Some(s) => match AUDIT_SOURCES.iter().position(|x| *x == s) {
            Some(i) => Some(i),
            None => return Err(bad_request(&person, "source must be log, corrections, snoozes or repairs")),
        },
        None => None,
    };
    let cursor = match given(&q.before) {
        Some(text) => Some(audit_cursor(text).ok_or_else(|| bad_request(&person, "not a page of the audit"))?),
        None => None,
    };
    let mut entries =
        db::audit(person.client(), only, cursor.as_ref(), PAGE + 1).await.map_err(|e| page_error(&person, e))?;
    let next = if entries.len() as i64 > PAGE {
        entries.truncate(PAGE as usize);
        entries.last().map(|e| format!("{}|{}|{}", e.at_exact, e.source, e.id))
    } else {
        None
    };
    Ok(views::audit(&who, &entries, source, next).into_response())
}

// ---------------------------------------------------------------------------
// Policies
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
pub struct PoliciesQuery {
    /// quiet days from this day on (default: today)
    from: Option<String>,
}

pub async fn policies(person: Person, Query(q): Query<PoliciesQuery>) -> Page {
    let c = person.client();
    let from = given(&q.from);
    let (policies, (quiet_days, past), can) =
        tokio::try_join!(db::policies(c), db::quiet_days(c, from), db::privileges(c))
            .map_err(|e| page_error(&person, e))?;
    let who = Who { role: &person.session.role, can };
    Ok(views::policies(&who, &policies, &views::QuietDays { days: &quiet_days, from, past }).into_response())
}

#[derive(Deserialize)]
pub struct OrganizationQuery {
    organization: Option<String>,
}

pub async fn edit_policy(person: Person, Query(q): Query<OrganizationQuery>) -> Page {
    let who = who(&person).await?;
    let policy = match given(&q.organization) {
        None => None,
        Some(org) => {
            let all = db::policies(person.client()).await.map_err(|e| page_error(&person, e))?;
            match all.into_iter().find(|p| p.get("organization").and_then(|v| v.as_str()) == Some(org)) {
                Some(p) => Some(p),
                None => return Err(page_error(&person, DbError::sql("P0002", format!("no policy for \"{org}\"")))),
            }
        }
    };
    Ok(views::policy_edit(&who, policy.as_ref()).into_response())
}

#[derive(Deserialize)]
pub struct PolicyForm {
    organization: Option<String>,
    mode: Option<String>,
    remind_after_days: Option<String>,
    repeat_every_days: Option<String>,
    escalate_after_days: Option<String>,
    max_reminders: Option<String>,
    enabled: Option<String>,
    timezone: Option<String>,
    send_from: Option<String>,
    send_until: Option<String>,
    /// the ticked weekdays (1 = Monday); none ticked: every day
    #[serde(default)]
    send_days: Vec<String>,
}

pub async fn save_policy(
    person: Person,
    axum_extra::extract::Form(form): axum_extra::extract::Form<PolicyForm>,
) -> Page {
    let Some(organization) = given(&form.organization) else {
        return Err(bad_request(&person, "an organization is needed"));
    };
    let v = |f: &Option<String>| given(f).map(str::to_string);
    let values = [
        v(&form.remind_after_days),
        v(&form.repeat_every_days),
        v(&form.escalate_after_days),
        v(&form.max_reminders),
        // an unchecked box sends nothing: disabled
        Some(if given(&form.enabled).is_some() { "true" } else { "false" }.to_string()),
        v(&form.timezone),
        v(&form.send_from),
        v(&form.send_until),
        send_days_literal(&form.send_days),
    ];
    debug_assert_eq!(values.len(), POLICY_FIELDS.len());
    let insert = form.mode.as_deref() == Some("insert");
    db::save_policy(person.client(), organization, &values, insert).await.map_err(|e| page_error(&person, e))?;
    tracing::info!(role = %person.session.role, organization, insert, "policy saved");
    Ok(see_other("/policies"))
}

/// The ticked weekdays as an array literal for PostgreSQL to check, or
/// NULL (every day) when none is ticked.
fn send_days_literal(days: &[String]) -> Option<String> {
    let days: Vec<&str> = days.iter().map(|d| d.trim()).filter(|d| !d.is_empty()).collect();
    (!days.is_empty()).then(|| format!("{{{}}}", days.join(",")))
}

pub async fn delete_policy(person: Person, Form(form): Form<OrganizationQuery>) -> Page {
    let Some(organization) = given(&form.organization) else {
        return Err(bad_request(&person, "an organization is needed"));
    };
    db::delete_policy(person.client(), organization).await.map_err(|e| page_error(&person, e))?;
    tracing::info!(role = %person.session.role, organization, "policy deleted");
    Ok(see_other("/policies"))
}

#[derive(Deserialize)]
pub struct QuietDayForm {
    organization: Option<String>,
    day: Option<String>,
    reason: Option<String>,
}

pub async fn add_quiet_day(person: Person, Form(form): Form<QuietDayForm>) -> Page {
    let Some(organization) = given(&form.organization) else {
        return Err(bad_request(&person, "an organization is needed ('*' for every one)"));
    };
    db::add_quiet_day(person.client(), organization, given(&form.day), form.reason.as_deref())
        .await
        .map_err(|e| page_error(&person, e))?;
    tracing::info!(role = %person.session.role, organization, day = ?form.day, "quiet day added");
    Ok(see_other("/policies"))
}

pub async fn delete_quiet_day(person: Person, Form(form): Form<QuietDayForm>) -> Page {
    let Some(organization) = given(&form.organization) else {
        return Err(bad_request(&person, "an organization is needed"));
    };
    db::delete_quiet_day(person.client(), organization, given(&form.day)).await.map_err(|e| page_error(&person, e))?;
    tracing::info!(role = %person.session.role, organization, day = ?form.day, "quiet day deleted");
    Ok(see_other("/policies"))
}

#[derive(Deserialize)]
pub struct AwayForm {
    /// "mentor:101"
    recipient: Option<String>,
    from_day: Option<String>,
    until_day: Option<String>,
    reason: Option<String>,
}

/// "mentor:101" as (role, id); PostgreSQL checks the role.
fn recipient_of(person: &Person, value: &Option<String>) -> Result<db::Recipient, Response> {
    given(value)
        .and_then(|v| v.split_once(':'))
        .map(|(role, id)| (role.to_string(), id.to_string()))
        .ok_or_else(|| bad_request(person, "a recipient is needed"))
}

pub async fn set_away(person: Person, Path(id): Path<String>, Form(form): Form<AwayForm>) -> Page {
    let recipient = recipient_of(&person, &form.recipient)?;
    db::set_away(person.client(), &recipient, given(&form.from_day), given(&form.until_day), form.reason.as_deref())
        .await
        .map_err(|e| page_error(&person, e))?;
    tracing::info!(role = %person.session.role, assignment = %id, recipient = ?recipient, "recipient away");
    Ok(see_other(&format!("/assignments/{}", segment(&id))))
}

pub async fn end_away(person: Person, Path(id): Path<String>, Form(form): Form<AwayForm>) -> Page {
    let recipient = recipient_of(&person, &form.recipient)?;
    db::end_away(person.client(), &recipient).await.map_err(|e| page_error(&person, e))?;
    tracing::info!(role = %person.session.role, assignment = %id, recipient = ?recipient, "absence ended");
    Ok(see_other(&format!("/assignments/{}", segment(&id))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_cursors() {
        let c = audit_cursor("2026-06-15 10:00:00.5+00|corrections|42").unwrap();
        assert_eq!((c.at.as_str(), c.source, c.id), ("2026-06-15 10:00:00.5+00", 1, 42));
        assert!(audit_cursor("x|nope|1").is_none());
        assert!(audit_cursor("garbage").is_none());
    }
}
