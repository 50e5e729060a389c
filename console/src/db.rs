//! The database: connecting as a person, the SQL of every page and action,
//! and errors as SQLSTATEs.
//!
//! Every statement here runs on the connection of the person who asked, so
//! PostgreSQL checks their privileges; nothing here decides who may do what.
//! Statements are static text with parameters (never a value spliced in).
//! Lists are keyset-paginated through an index: runs, alerts and audit tables
//! by their keys, messages by `message_id` (backwards), the undelivered ones
//! through the claim index `outbox_undelivered`; where a filter has no index
//! (organization, kind, recipient of delivered messages) a page examines at
//! most `SCAN_LIMIT` messages and says where it stopped.

use std::time::Duration;

use pgconn::conninfo::Database;
use pgconn::tls::MakeRustlsConnect;
use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

/// Rows on one page of a list.
pub const PAGE: i64 = 50;
/// At most this many messages are examined for one page of a filter that no
/// index serves.
pub const SCAN_LIMIT: i64 = 20_000;
/// At most this many messages are cancelled or requeued at once.
pub const MAX_SELECTED: usize = 1_000;

/// Timestamps as people read them, in the session's time zone.
macro_rules! ts {
    ($col:literal) => {
        concat!("to_char(", $col, ", 'YYYY-MM-DD HH24:MI:SS TZ')")
    };
}

/// What went wrong with a statement or a login.
#[derive(Debug, Clone)]
pub enum DbError {
    /// The server refused it: its SQLSTATE and primary message.
    Sql { code: String, message: String },
    /// The server cannot be reached, or the connection is gone.
    Unavailable(String),
}

impl DbError {
    pub fn sql(code: &str, message: impl Into<String>) -> DbError {
        DbError::Sql { code: code.to_string(), message: message.into() }
    }

    pub fn code(&self) -> &str {
        match self {
            DbError::Sql { code, .. } => code,
            DbError::Unavailable(_) => "08006",
        }
    }
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> DbError {
        if let Some(db) = e.as_db_error() {
            return DbError::Sql { code: db.code().code().to_string(), message: db.message().to_string() };
        }
        if e.is_closed() {
            return DbError::Unavailable("the database connection is closed".to_string());
        }
        // a row that does not convert, or the connection failing mid-way
        DbError::Unavailable(error_chain(&e))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The SQLSTATE's class in words, for pages that must not show internals.
pub fn class_in_words(code: &str) -> &'static str {
    match code.get(..2).unwrap_or("") {
        "22" => "the value given is not valid",
        "23" => "the change would break a rule of the data",
        "28" => "the role or password was not accepted",
        "42" if code == "42501" => "your role is not allowed to do this",
        "42" => "the request does not match the database's schema",
        "55" => "the database is not in a state that allows this",
        "P0" if code == "P0002" => "nothing was found",
        "P0" => "the database refused the request",
        "08" | "57" => "the database connection was lost",
        "53" => "the database is short of resources",
        "40" => "the request conflicted with another one; try again",
        "0A" => "this is not supported",
        _ => "the database could not do this",
    }
}

/// Connects as a person. The password is used for this handshake only.
pub async fn connect(
    database: &Database,
    tls: &MakeRustlsConnect,
    user: &str,
    password: Option<&str>,
) -> Result<Client, DbError> {
    let mut config = database.config.clone();
    config.user(user);
    if let Some(password) = password {
        config.password(password);
    }
    let (client, connection) = config.connect(tls.clone()).await.map_err(login_error)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::info!("a session's database connection ended: {}", error_chain(&e));
        }
    });
    Ok(client)
}

/// A failed login: any refusal of the server's (bad password, no such role,
/// pg_hba, VALID UNTIL) is "credentials not accepted" (class 28); tokio-postgres
/// refusing to go on without a password the server asked for is too.
fn login_error(e: tokio_postgres::Error) -> DbError {
    match e.as_db_error() {
        Some(db) if db.code().code().starts_with("28") => DbError::sql("28P01", "credentials not accepted"),
        Some(db) => DbError::Sql { code: db.code().code().to_string(), message: db.message().to_string() },
        None if error_chain(&e).contains("password missing") => DbError::sql("28P01", "credentials not accepted"),
        None => DbError::Unavailable(error_chain(&e)),
    }
}

/// Whether the server answers at all (for /healthz): a connection attempt
/// that the server answers, even with an authentication error, counts.
pub async fn server_answers(database: &Database, tls: &MakeRustlsConnect, timeout: Duration) -> bool {
    let mut config = database.config.clone();
    if config.get_user().is_none() {
        config.user("followup-console");
    }
    config.connect_timeout(timeout);
    match tokio::time::timeout(timeout, config.connect(tls.clone())).await {
        Ok(Ok((client, connection))) => {
            drop(client);
            let _ = connection.await;
            true
        }
        Ok(Err(e)) => e.as_db_error().is_some() || error_chain(&e).contains("password missing"),
        Err(_) => false,
    }
}

// ---------------------------------------------------------------------------
// Reading rows
// ---------------------------------------------------------------------------

fn text(row: &Row, col: &str) -> String {
    row.try_get::<_, Option<String>>(col).ok().flatten().unwrap_or_default()
}
fn opt_text(row: &Row, col: &str) -> Option<String> {
    row.try_get::<_, Option<String>>(col).ok().flatten()
}
fn int(row: &Row, col: &str) -> i64 {
    row.try_get::<_, Option<i64>>(col).ok().flatten().unwrap_or(0)
}
fn opt_int(row: &Row, col: &str) -> Option<i64> {
    row.try_get::<_, Option<i64>>(col).ok().flatten()
}
fn opt_f64(row: &Row, col: &str) -> Option<f64> {
    row.try_get::<_, Option<f64>>(col).ok().flatten()
}
fn boolean(row: &Row, col: &str) -> bool {
    row.try_get::<_, Option<bool>>(col).ok().flatten().unwrap_or(false)
}

// ---------------------------------------------------------------------------
// Who may do what (asked of PostgreSQL; only used to decide what to offer)
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Default)]
pub struct Privileges {
    pub set_last_contact: bool,
    pub snooze: bool,
    pub unsnooze: bool,
    pub run_now: bool,
    pub cancel: bool,
    pub requeue: bool,
    pub repair: bool,
    pub verify: bool,
    pub resolve_alert: bool,
    pub policy_insert: bool,
    pub policy_update: bool,
    pub policy_delete: bool,
    pub set_away: bool,
    pub end_away: bool,
    pub quiet_day_insert: bool,
    pub quiet_day_delete: bool,
}

pub async fn privileges(client: &Client) -> Result<Privileges, DbError> {
    let f = |sig: &str| format!("coalesce(has_function_privilege(to_regprocedure('{sig}'), 'EXECUTE'), false)");
    let sql = format!(
        "SELECT {} AS set_last_contact, {} AS snooze, {} AS unsnooze, {} AS run_now, {} AS cancel,
                {} AS requeue, {} AS repair, {} AS verify,
                {} OR has_column_privilege('followup.alerts', 'resolved_at', 'UPDATE') AS resolve_alert,
                has_table_privilege('followup.policies', 'INSERT') AS policy_insert,
                has_table_privilege('followup.policies', 'UPDATE') AS policy_update,
                has_table_privilege('followup.policies', 'DELETE') AS policy_delete,
                {} AS set_away, {} AS end_away,
                has_table_privilege('followup.quiet_days', 'INSERT') AS quiet_day_insert,
                has_table_privilege('followup.quiet_days', 'DELETE') AS quiet_day_delete",
        f("followup.set_last_contact(text, date, text)"),
        f("followup.snooze(text, date, text)"),
        f("followup.unsnooze(text)"),
        f("followup.run_now(date)"),
        f("followup.cancel(bigint[], text)"),
        f("followup.requeue_dead(bigint[], text)"),
        f("followup.repair(text)"),
        f("followup.verify(int)"),
        f("followup.resolve_alert(bigint)"),
        f("followup.set_away(followup.recipient_role, text, date, date, text)"),
        f("followup.end_away(followup.recipient_role, text)"),
    );
    let row = client.query_one(&sql, &[]).await?;
    Ok(Privileges {
        set_last_contact: boolean(&row, "set_last_contact"),
        snooze: boolean(&row, "snooze"),
        unsnooze: boolean(&row, "unsnooze"),
        run_now: boolean(&row, "run_now"),
        cancel: boolean(&row, "cancel"),
        requeue: boolean(&row, "requeue"),
        repair: boolean(&row, "repair"),
        verify: boolean(&row, "verify"),
        resolve_alert: boolean(&row, "resolve_alert"),
        policy_insert: boolean(&row, "policy_insert"),
        policy_update: boolean(&row, "policy_update"),
        policy_delete: boolean(&row, "policy_delete"),
        set_away: boolean(&row, "set_away"),
        end_away: boolean(&row, "end_away"),
        quiet_day_insert: boolean(&row, "quiet_day_insert"),
        quiet_day_delete: boolean(&row, "quiet_day_delete"),
    })
}

// ---------------------------------------------------------------------------
// Overview
// ---------------------------------------------------------------------------

#[derive(Debug, Default)]
pub struct Health {
    pub last_run_status: Option<String>,
    pub last_success_at: Option<String>,
    pub running_run_id: Option<i64>,
    pub running_for: Option<f64>,
    pub overdue: bool,
    pub open_alerts: i64,
    pub outbox_pending: i64,
    pub oldest_pending_age: Option<f64>,
    pub outbox_dead: i64,
    pub outbox_cancelled_24h: i64,
    pub next_retry_at: Option<String>,
}

pub async fn health(client: &Client) -> Result<Health, DbError> {
    let sql = concat!(
        "SELECT last_run_status::text, ",
        ts!("last_success_at"),
        " AS last_success_at, running_run_id,
                extract(epoch FROM running_for)::float8 AS running_for, overdue, open_alerts, outbox_pending,
                extract(epoch FROM oldest_pending_age)::float8 AS oldest_pending_age, outbox_dead,
                outbox_cancelled_24h, ",
        ts!("next_retry_at"),
        " AS next_retry_at FROM followup.health"
    );
    let row = client.query_one(sql, &[]).await?;
    Ok(Health {
        last_run_status: opt_text(&row, "last_run_status"),
        last_success_at: opt_text(&row, "last_success_at"),
        running_run_id: opt_int(&row, "running_run_id"),
        running_for: opt_f64(&row, "running_for"),
        overdue: boolean(&row, "overdue"),
        open_alerts: int(&row, "open_alerts"),
        outbox_pending: int(&row, "outbox_pending"),
        oldest_pending_age: opt_f64(&row, "oldest_pending_age"),
        outbox_dead: int(&row, "outbox_dead"),
        outbox_cancelled_24h: int(&row, "outbox_cancelled_24h"),
        next_retry_at: opt_text(&row, "next_retry_at"),
    })
}

pub async fn health_json(client: &Client) -> Result<Value, DbError> {
    Ok(client.query_one("SELECT to_jsonb(h) FROM followup.health AS h", &[]).await?.get(0))
}

/// The oldest claimable message's wait, in seconds (0 when none).
pub async fn oldest_claimable_age(client: &Client) -> Result<f64, DbError> {
    let row = client.query_one("SELECT extract(epoch FROM followup.oldest_claimable_age())::float8", &[]).await?;
    Ok(row.get::<_, Option<f64>>(0).unwrap_or(0.0))
}

/// Delivered and cancelled messages, estimated from the planner's
/// statistics: the table's row estimate (pg_class.reltuples) times the
/// frequency of each status among the most common values (pg_stats), as of
/// the last ANALYZE. Counting them would read the whole table.
#[derive(Debug, Default)]
pub struct Estimates {
    pub rows: Option<f64>,
    pub delivered: Option<f64>,
    pub cancelled: Option<f64>,
    pub analyzed_at: Option<String>,
    pub analyzed_ago: Option<f64>,
}

pub async fn outbox_estimates(client: &Client) -> Result<Estimates, DbError> {
    let sql = concat!(
        "SELECT c.reltuples::float8 AS rows, s.most_common_vals::text::text[] AS vals,
                s.most_common_freqs::float8[] AS freqs, ",
        ts!("greatest(t.last_analyze, t.last_autoanalyze)"),
        " AS analyzed_at,
                extract(epoch FROM now() - greatest(t.last_analyze, t.last_autoanalyze))::float8 AS analyzed_ago
           FROM pg_catalog.pg_class AS c
           LEFT JOIN pg_catalog.pg_stats AS s
                  ON s.schemaname = 'followup' AND s.tablename = 'outbox' AND s.attname = 'status'
           LEFT JOIN pg_catalog.pg_stat_all_tables AS t ON t.relid = c.oid
          WHERE c.oid = 'followup.outbox'::regclass"
    );
    let row = client.query_one(sql, &[]).await?;
    let rows = opt_f64(&row, "rows").filter(|r| *r >= 0.0);
    let vals: Option<Vec<String>> = row.try_get("vals").ok().flatten();
    let freqs: Option<Vec<f64>> = row.try_get("freqs").ok().flatten();
    let freq_of = |status: &str| -> Option<f64> {
        let (vals, freqs) = (vals.as_ref()?, freqs.as_ref()?);
        Some(vals.iter().position(|v| v == status).map(|i| freqs[i]).unwrap_or(0.0))
    };
    Ok(Estimates {
        rows,
        delivered: rows.and_then(|r| freq_of("delivered").map(|f| (r * f).round())),
        cancelled: rows.and_then(|r| freq_of("cancelled").map(|f| (r * f).round())),
        analyzed_at: opt_text(&row, "analyzed_at"),
        analyzed_ago: opt_f64(&row, "analyzed_ago"),
    })
}

/// One point of the run-duration chart.
pub struct RunDay {
    pub day: String,
    pub seconds: f64,
}

/// The longest finished run of each day (as_of) in the 30 days ending with
/// the latest run's day, the days themselves, and the long-run threshold
/// (followup.alert_after) in seconds.
pub async fn run_durations(client: &Client) -> Result<(Vec<String>, Vec<RunDay>, f64), DbError> {
    let days = client
        .query(
            "SELECT d::date::text FROM (SELECT max(as_of) AS last FROM followup.runs) AS l,
                    generate_series(l.last - 29, l.last, interval '1 day') AS d",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    let points = client
        .query(
            "SELECT r.as_of::text AS day, max(extract(epoch FROM r.finished_at - r.started_at))::float8 AS seconds
               FROM followup.runs AS r, (SELECT max(as_of) AS last FROM followup.runs) AS l
              WHERE r.as_of > l.last - 30 AND r.finished_at IS NOT NULL AND r.status <> 'skipped'
              GROUP BY r.as_of ORDER BY r.as_of",
            &[],
        )
        .await?
        .iter()
        .map(|r| RunDay { day: text(r, "day"), seconds: opt_f64(r, "seconds").unwrap_or(0.0) })
        .collect();
    let threshold: i32 = client.query_one("SELECT alert_after FROM followup._settings()", &[]).await?.get(0);
    Ok((days, points, f64::from(threshold) * 60.0))
}

/// Messages enqueued, delivered, cancelled and dead per day over the last 30
/// days (dead ones by the day they were enqueued: the outbox keeps no time of
/// death). Read from a sample of the table's blocks (TABLESAMPLE SYSTEM) of
/// about `SAMPLE_ROWS` rows, scaled up; exact (every block) for a table
/// smaller than that.
pub struct Flow {
    pub days: Vec<String>,
    /// per series (enqueued, delivered, cancelled, dead), one value per day
    pub series: [Vec<f64>; 4],
    /// percentage of the table's blocks read
    pub sample_percent: f64,
}

const SAMPLE_ROWS: f64 = 10_000.0;

pub async fn message_flow(client: &Client, table_rows: Option<f64>) -> Result<Flow, DbError> {
    let percent = match table_rows {
        Some(rows) if rows > SAMPLE_ROWS => (100.0 * SAMPLE_ROWS / rows).max(0.01),
        _ => 100.0,
    };
    let rows = client
        .query(
            // one pass over the sample for each series, grouped by day, then
            // the 30 days (a join per event row would cost more than the read);
            // the same blocks all day long (REPEATABLE, seeded by the day), so
            // the chart holds still between refreshes and stays in the cache
            "WITH s AS MATERIALIZED (
                      SELECT o.enqueued_at::date AS enq, o.delivered_at::date AS del, o.cancelled_at::date AS can,
                             o.status = 'dead' AS dead
                        FROM followup.outbox AS o
                             TABLESAMPLE SYSTEM ($1::float8) REPEATABLE (pg_catalog.date_part('doy', current_date))),
                  counts AS (
                      SELECT enq AS day, count(*) AS enqueued, 0::bigint AS delivered, 0::bigint AS cancelled,
                             count(*) FILTER (WHERE dead) AS dead
                        FROM s GROUP BY 1
                      UNION ALL SELECT del, 0, count(*), 0, 0 FROM s WHERE del IS NOT NULL GROUP BY 1
                      UNION ALL SELECT can, 0, 0, count(*), 0 FROM s WHERE can IS NOT NULL GROUP BY 1)
             SELECT d::date::text AS day, coalesce(sum(c.enqueued), 0)::int8 AS enqueued,
                    coalesce(sum(c.delivered), 0)::int8 AS delivered, coalesce(sum(c.cancelled), 0)::int8 AS cancelled,
                    coalesce(sum(c.dead), 0)::int8 AS dead
               FROM generate_series(current_date - 29, current_date, interval '1 day') AS d
               LEFT JOIN counts AS c ON c.day = d::date
              GROUP BY d ORDER BY d",
            &[&percent],
        )
        .await?;
    let scale = 100.0 / percent;
    let mut flow = Flow { days: Vec::new(), series: Default::default(), sample_percent: percent };
    for row in &rows {
        flow.days.push(text(row, "day"));
        for (i, col) in ["enqueued", "delivered", "cancelled", "dead"].iter().enumerate() {
            flow.series[i].push((int(row, col) as f64 * scale).round());
        }
    }
    Ok(flow)
}

// ---------------------------------------------------------------------------
// Runs
// ---------------------------------------------------------------------------

#[derive(Debug)]
pub struct Run {
    pub run_id: i64,
    pub trigger: String,
    pub status: String,
    pub as_of: String,
    pub started_at: String,
    pub started_at_exact: String,
    pub finished_at_exact: Option<String>,
    pub seconds: Option<f64>,
    pub scanned: Option<i64>,
    pub enqueued: Option<i64>,
    pub duplicates: Option<i64>,
    pub skipped: Option<i64>,
    pub error: Option<String>,
}

const RUN_COLUMNS: &str = concat!(
    "run_id, trigger::text AS trigger, status::text AS status, as_of::text AS as_of, ",
    ts!("started_at"),
    " AS started_at, started_at::text AS started_at_exact, finished_at::text AS finished_at_exact,
     extract(epoch FROM coalesce(finished_at, CASE WHEN status = 'running' THEN clock_timestamp() END)
                        - started_at)::float8 AS seconds,
     assignments_scanned, reminders_enqueued, duplicates_suppressed, assignments_skipped, error"
);

fn run_of(row: &Row) -> Run {
    Run {
        run_id: int(row, "run_id"),
        trigger: text(row, "trigger"),
        status: text(row, "status"),
        as_of: text(row, "as_of"),
        started_at: text(row, "started_at"),
        started_at_exact: text(row, "started_at_exact"),
        finished_at_exact: opt_text(row, "finished_at_exact"),
        seconds: opt_f64(row, "seconds"),
        scanned: opt_int(row, "assignments_scanned"),
        enqueued: opt_int(row, "reminders_enqueued"),
        duplicates: opt_int(row, "duplicates_suppressed"),
        skipped: opt_int(row, "assignments_skipped"),
        error: opt_text(row, "error"),
    }
}

/// The latest run that was not skipped (as followup.health has it).
pub async fn last_run(client: &Client) -> Result<Option<Run>, DbError> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM followup.runs WHERE status <> 'skipped'
          ORDER BY started_at DESC, run_id DESC LIMIT 1"
    );
    Ok(client.query_opt(&sql, &[]).await?.as_ref().map(run_of))
}

/// A page of the run log, newest first, before the run `before`, of one
/// status if given.
pub async fn runs(client: &Client, before: Option<i64>, status: Option<&str>, limit: i64) -> Result<Vec<Run>, DbError> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM followup.runs
          WHERE ($1::bigint IS NULL OR run_id < $1) AND ($2::text IS NULL OR status::text = $2)
          ORDER BY run_id DESC LIMIT $3"
    );
    Ok(client.query(&sql, &[&before, &status, &limit]).await?.iter().map(run_of).collect())
}

pub async fn runs_json(client: &Client, limit: i64) -> Result<Value, DbError> {
    let row = client
        .query_one(
            "SELECT coalesce(jsonb_agg(to_jsonb(r) ORDER BY r.run_id DESC), '[]')
               FROM (SELECT * FROM followup.runs ORDER BY run_id DESC LIMIT $1) AS r",
            &[&limit],
        )
        .await?;
    Ok(row.get(0))
}

pub async fn run(client: &Client, run_id: i64) -> Result<Option<Run>, DbError> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM followup.runs WHERE run_id = $1");
    Ok(client.query_opt(&sql, &[&run_id]).await?.as_ref().map(run_of))
}

pub async fn run_now(client: &Client, as_of: Option<&str>) -> Result<i64, DbError> {
    let row = client.query_one("SELECT run_id FROM followup.run_now($1::text::date)", &[&as_of]).await?;
    Ok(row.get(0))
}

// ---------------------------------------------------------------------------
// Alerts
// ---------------------------------------------------------------------------

#[derive(Debug)]
pub struct Alert {
    pub alert_id: i64,
    pub raised_at: String,
    pub kind: String,
    pub run_id: Option<i64>,
    pub message: String,
    pub resolved_at: Option<String>,
}

const ALERT_COLUMNS: &str = concat!(
    "alert_id, ",
    ts!("raised_at"),
    " AS raised_at, kind::text AS kind, run_id, message, ",
    ts!("resolved_at"),
    " AS resolved_at"
);

fn alert_of(row: &Row) -> Alert {
    Alert {
        alert_id: int(row, "alert_id"),
        raised_at: text(row, "raised_at"),
        kind: text(row, "kind"),
        run_id: opt_int(row, "run_id"),
        message: text(row, "message"),
        resolved_at: opt_text(row, "resolved_at"),
    }
}

/// Open alerts, newest first (through alerts_open_idx).
pub async fn open_alerts(client: &Client, limit: i64) -> Result<Vec<Alert>, DbError> {
    let sql = format!(
        "SELECT {ALERT_COLUMNS} FROM followup.alerts WHERE resolved_at IS NULL ORDER BY raised_at DESC LIMIT $1"
    );
    Ok(client.query(&sql, &[&limit]).await?.iter().map(alert_of).collect())
}

/// All alerts, newest first, before `before`.
pub async fn alerts(client: &Client, before: Option<i64>, limit: i64) -> Result<Vec<Alert>, DbError> {
    let sql = format!(
        "SELECT {ALERT_COLUMNS} FROM followup.alerts WHERE ($1::bigint IS NULL OR alert_id < $1)
          ORDER BY alert_id DESC LIMIT $2"
    );
    Ok(client.query(&sql, &[&before, &limit]).await?.iter().map(alert_of).collect())
}

pub async fn run_alerts(client: &Client, run_id: i64) -> Result<Vec<Alert>, DbError> {
    let sql = format!("SELECT {ALERT_COLUMNS} FROM followup.alerts WHERE run_id = $1 ORDER BY alert_id");
    Ok(client.query(&sql, &[&run_id]).await?.iter().map(alert_of).collect())
}

/// Resolves an alert: with followup.resolve_alert (audited) where the
/// extension has it, else by setting resolved_at.
pub async fn resolve_alert(client: &Client, alert_id: i64) -> Result<(), DbError> {
    let has_function: bool =
        client.query_one("SELECT to_regprocedure('followup.resolve_alert(bigint)') IS NOT NULL", &[]).await?.get(0);
    if has_function {
        client.execute("SELECT followup.resolve_alert($1)", &[&alert_id]).await?;
    } else {
        let n = client
            .execute(
                "UPDATE followup.alerts SET resolved_at = now() WHERE alert_id = $1 AND resolved_at IS NULL",
                &[&alert_id],
            )
            .await?;
        if n == 0 {
            let exists = client.query_opt("SELECT 1 FROM followup.alerts WHERE alert_id = $1", &[&alert_id]).await?;
            if exists.is_none() {
                return Err(DbError::sql("P0002", format!("no alert with id {alert_id}")));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Outbox
// ---------------------------------------------------------------------------

#[derive(Debug)]
pub struct Message {
    pub message_id: i64,
    pub run_id: Option<i64>,
    pub assignment_id: String,
    pub cycle_start: String,
    pub kind: String,
    pub sequence: i64,
    pub recipient_role: String,
    pub recipient_id: Option<String>,
    pub organization: Option<String>,
    pub status: String,
    pub attempts: i64,
    pub enqueued_at: String,
    pub visible_at: String,
    pub delivered_at: Option<String>,
    pub cancelled_at: Option<String>,
    pub cancel_reason: Option<String>,
    pub last_error: Option<String>,
}

const MESSAGE_COLUMNS: &str = concat!(
    "o.message_id, o.run_id, o.assignment_id, o.cycle_start::text AS cycle_start, o.kind::text AS kind,
     o.sequence::bigint AS sequence, o.recipient_role::text AS recipient_role, o.recipient_id, o.organization,
     o.status::text AS status, o.attempts::bigint AS attempts, ",
    ts!("o.enqueued_at"),
    " AS enqueued_at, ",
    ts!("o.visible_at"),
    " AS visible_at, ",
    ts!("o.delivered_at"),
    " AS delivered_at, ",
    ts!("o.cancelled_at"),
    " AS cancelled_at, o.cancel_reason, o.last_error"
);

fn message_of(row: &Row) -> Message {
    Message {
        message_id: int(row, "message_id"),
        run_id: opt_int(row, "run_id"),
        assignment_id: text(row, "assignment_id"),
        cycle_start: text(row, "cycle_start"),
        kind: text(row, "kind"),
        sequence: int(row, "sequence"),
        recipient_role: text(row, "recipient_role"),
        recipient_id: opt_text(row, "recipient_id"),
        organization: opt_text(row, "organization"),
        status: text(row, "status"),
        attempts: int(row, "attempts"),
        enqueued_at: text(row, "enqueued_at"),
        visible_at: text(row, "visible_at"),
        delivered_at: opt_text(row, "delivered_at"),
        cancelled_at: opt_text(row, "cancelled_at"),
        cancel_reason: opt_text(row, "cancel_reason"),
        last_error: opt_text(row, "last_error"),
    }
}

/// The first message enqueued at or after `instant` (a timestamptz as text),
/// found through the primary key: a binary search over message_id, since
/// message ids and enqueue times grow together. None: the outbox is empty.
pub async fn first_message_at_or_after(client: &Client, instant: &str) -> Result<Option<i64>, DbError> {
    let row = client
        .query_one(
            "WITH RECURSIVE search(lo, hi) AS (
                 SELECT (SELECT min(message_id) FROM followup.outbox), (SELECT max(message_id) FROM followup.outbox) + 1
               UNION ALL
                 SELECT CASE WHEN p.later THEN s.lo ELSE m.mid + 1 END, CASE WHEN p.later THEN m.mid ELSE s.hi END
                   FROM search AS s
                  CROSS JOIN LATERAL (SELECT s.lo + (s.hi - s.lo) / 2 AS mid) AS m
                  CROSS JOIN LATERAL (SELECT coalesce((SELECT o.enqueued_at >= $1::text::timestamptz
                                                         FROM followup.outbox AS o WHERE o.message_id >= m.mid
                                                        ORDER BY o.message_id LIMIT 1), true) AS later) AS p
                  WHERE s.lo < s.hi)
             SELECT max(lo) FROM search WHERE lo = hi",
            &[&instant],
        )
        .await?;
    Ok(row.get(0))
}

/// A page of a run's messages (from `after`, by message id): its messages
/// lie between the first enqueued when it started and the first enqueued
/// after it finished.
pub async fn run_messages(client: &Client, run: &Run, after: Option<i64>) -> Result<Vec<Message>, DbError> {
    let Some(from) = first_message_at_or_after(client, &run.started_at_exact).await? else { return Ok(Vec::new()) };
    let until = match &run.finished_at_exact {
        Some(finished) => first_message_at_or_after(client, finished).await?.unwrap_or(i64::MAX),
        None => i64::MAX,
    };
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM followup.outbox AS o
          WHERE o.message_id >= greatest($1::bigint, coalesce($3::bigint + 1, 0)) AND o.message_id < $2
            AND o.run_id = $4
          ORDER BY o.message_id LIMIT $5"
    );
    let until = until.saturating_add(1); // a message enqueued in the same instant it finished
    Ok(client.query(&sql, &[&from, &until, &after, &run.run_id, &(PAGE + 1)]).await?.iter().map(message_of).collect())
}

/// What the outbox page lists.
#[derive(Debug, Default, Clone)]
pub struct OutboxFilter {
    pub status: Option<String>,
    pub organization: Option<String>,
    pub recipient: Option<String>,
    pub kind: Option<String>,
    /// enqueued on this day (YYYY-MM-DD, in the session's time zone)
    pub date: Option<String>,
    /// messages older than this one (the keyset cursor)
    pub before: Option<i64>,
    pub limit: i64,
}

pub struct OutboxPage {
    pub messages: Vec<Message>,
    /// where the next page starts (exclusive), if there may be more
    pub next: Option<i64>,
    /// the page stopped at SCAN_LIMIT examined messages with fewer matches
    pub scan_stopped: bool,
}

pub async fn outbox(client: &Client, f: &OutboxFilter) -> Result<OutboxPage, DbError> {
    // message id bounds from the date, through the primary key
    let (mut lo, mut hi) = (None::<i64>, None::<i64>);
    if let Some(date) = &f.date {
        let row = client
            .query_one("SELECT $1::text::date::timestamptz::text, ($1::text::date + 1)::timestamptz::text", &[date])
            .await?;
        let (start, end): (String, String) = (row.get(0), row.get(1));
        lo = Some(first_message_at_or_after(client, &start).await?.unwrap_or(i64::MAX));
        hi = first_message_at_or_after(client, &end).await?;
    }
    let undelivered = matches!(f.status.as_deref(), Some("pending" | "claimed" | "dead"));
    // conditions an index serves (they decide the order of the walk) ...
    let walk = format!(
        "($1::bigint IS NULL OR o.message_id < $1) AND ($2::bigint IS NULL OR o.message_id >= $2)
         AND ($3::bigint IS NULL OR o.message_id < $3){}",
        if undelivered { " AND o.delivered_at IS NULL AND o.cancelled_at IS NULL" } else { "" }
    );
    // ... and those checked on each row walked
    let filter = "($4::text IS NULL OR o.status::text = $4) AND ($5::text IS NULL OR o.organization = $5)
                  AND ($6::text IS NULL OR o.recipient_id = $6) AND ($7::text IS NULL OR o.kind::text = $7)";
    let selective = f.status.is_some() || f.organization.is_some() || f.recipient.is_some() || f.kind.is_some();
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM (SELECT * FROM followup.outbox AS o WHERE {walk}
                                          ORDER BY o.message_id DESC LIMIT $8) AS o
          WHERE {filter} ORDER BY o.message_id DESC LIMIT $9"
    );
    let scan = if selective { SCAN_LIMIT } else { f.limit + 1 };
    let params: [&(dyn ToSql + Sync); 9] =
        [&f.before, &lo, &hi, &f.status, &f.organization, &f.recipient, &f.kind, &scan, &(f.limit + 1)];
    let mut messages: Vec<Message> = client.query(&sql, &params).await?.iter().map(message_of).collect();
    if messages.len() as i64 > f.limit {
        messages.truncate(f.limit as usize);
        let next = messages.last().map(|m| m.message_id);
        return Ok(OutboxPage { messages, next, scan_stopped: false });
    }
    if !selective {
        return Ok(OutboxPage { messages, next: None, scan_stopped: false });
    }
    // fewer matches than a page: did the walk end, or stop at SCAN_LIMIT?
    let sql = format!(
        "SELECT count(*) AS walked, min(message_id) AS last FROM (SELECT o.message_id FROM followup.outbox AS o
          WHERE {walk} ORDER BY o.message_id DESC LIMIT $4) AS w"
    );
    let row = client.query_one(&sql, &[&f.before, &lo, &hi, &SCAN_LIMIT]).await?;
    if int(&row, "walked") >= SCAN_LIMIT {
        return Ok(OutboxPage { messages, next: opt_int(&row, "last"), scan_stopped: true });
    }
    Ok(OutboxPage { messages, next: None, scan_stopped: false })
}

/// Of the selected messages, how many an action would change: pending or
/// claimed ones (cancel), dead ones (requeue).
pub async fn selected_counts(client: &Client, ids: &[i64]) -> Result<(i64, i64), DbError> {
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE delivered_at IS NULL AND cancelled_at IS NULL
                                       AND status IN ('pending', 'claimed')) AS cancellable,
                    count(*) FILTER (WHERE status = 'dead') AS dead
               FROM followup.outbox WHERE message_id = ANY ($1)",
            &[&ids],
        )
        .await?;
    Ok((int(&row, "cancellable"), int(&row, "dead")))
}

pub async fn cancel(client: &Client, ids: &[i64], reason: &str) -> Result<i64, DbError> {
    Ok(client.query_one("SELECT followup.cancel($1, $2)", &[&ids, &reason]).await?.get(0))
}

pub async fn requeue_dead(client: &Client, ids: &[i64], reason: &str) -> Result<i64, DbError> {
    Ok(client.query_one("SELECT followup.requeue_dead($1, $2)", &[&ids, &reason]).await?.get(0))
}

// ---------------------------------------------------------------------------
// Assignments
// ---------------------------------------------------------------------------

pub async fn explain(client: &Client, assignment_id: &str, as_of: Option<&str>) -> Result<Value, DbError> {
    let row = client.query_one("SELECT followup.explain($1, $2::text::date)", &[&assignment_id, &as_of]).await?;
    Ok(row.get(0))
}

#[derive(Debug)]
pub struct Correction {
    pub correction_id: i64,
    pub old_value: Option<String>,
    pub new_value: String,
    pub reason: String,
    pub corrected_by: String,
    pub session_role: String,
    pub corrected_at: String,
}

pub async fn corrections(client: &Client, assignment_id: &str) -> Result<Vec<Correction>, DbError> {
    let sql = concat!(
        "SELECT correction_id, old_value, new_value::text AS new_value, reason, corrected_by::text AS corrected_by,
                session_role::text AS session_role, ",
        ts!("corrected_at"),
        " AS corrected_at FROM followup.contact_corrections WHERE assignment_id = $1
          ORDER BY corrected_at DESC, correction_id DESC LIMIT 100"
    );
    Ok(client
        .query(sql, &[&assignment_id])
        .await?
        .iter()
        .map(|r| Correction {
            correction_id: int(r, "correction_id"),
            old_value: opt_text(r, "old_value"),
            new_value: text(r, "new_value"),
            reason: text(r, "reason"),
            corrected_by: text(r, "corrected_by"),
            session_role: text(r, "session_role"),
            corrected_at: text(r, "corrected_at"),
        })
        .collect())
}

#[derive(Debug)]
pub struct Snooze {
    pub snooze_id: i64,
    pub until: String,
    pub reason: String,
    pub snoozed_by: String,
    pub snoozed_at: String,
    pub ended_at: Option<String>,
    pub ended_by: Option<String>,
}

pub async fn snoozes(client: &Client, assignment_id: &str) -> Result<Vec<Snooze>, DbError> {
    let sql = concat!(
        "SELECT snooze_id, until::text AS until, reason, snoozed_by::text AS snoozed_by, ",
        ts!("snoozed_at"),
        " AS snoozed_at, ",
        ts!("ended_at"),
        " AS ended_at, ended_by::text AS ended_by
           FROM followup.snoozes WHERE assignment_id = $1 ORDER BY snooze_id DESC LIMIT 100"
    );
    Ok(client
        .query(sql, &[&assignment_id])
        .await?
        .iter()
        .map(|r| Snooze {
            snooze_id: int(r, "snooze_id"),
            until: text(r, "until"),
            reason: text(r, "reason"),
            snoozed_by: text(r, "snoozed_by"),
            snoozed_at: text(r, "snoozed_at"),
            ended_at: opt_text(r, "ended_at"),
            ended_by: opt_text(r, "ended_by"),
        })
        .collect())
}

/// followup.set_last_contact: the audit row (contact_corrections) as JSON.
pub async fn set_last_contact(
    client: &Client,
    assignment_id: &str,
    date: Option<&str>,
    reason: Option<&str>,
) -> Result<Value, DbError> {
    let row = client
        .query_one(
            "SELECT to_jsonb(c) FROM followup.set_last_contact($1, $2::text::date, $3) AS c",
            &[&assignment_id, &date, &reason],
        )
        .await?;
    Ok(row.get(0))
}

/// followup.snooze: the snooze row as JSON.
pub async fn snooze(
    client: &Client,
    assignment_id: &str,
    until: Option<&str>,
    reason: Option<&str>,
) -> Result<Value, DbError> {
    let row = client
        .query_one(
            "SELECT to_jsonb(s) FROM followup.snooze($1, $2::text::date, $3) AS s",
            &[&assignment_id, &until, &reason],
        )
        .await?;
    Ok(row.get(0))
}

/// followup.unsnooze: how many open snoozes it ended.
pub async fn unsnooze(client: &Client, assignment_id: &str) -> Result<i64, DbError> {
    let row = client.query_one("SELECT followup.unsnooze($1)", &[&assignment_id]).await?;
    Ok(row.get(0))
}

/// A recipient of an assignment's messages: "mentor" or "coordinator", and
/// the id.
pub type Recipient = (String, String);

/// The recipients of the assignment's messages (any cycle), for the away
/// form; through the outbox's idempotency key (assignment_id first).
pub async fn recipients(client: &Client, assignment_id: &str) -> Result<Vec<Recipient>, DbError> {
    Ok(client
        .query(
            "SELECT DISTINCT recipient_role::text AS role, recipient_id AS id FROM followup.outbox
              WHERE assignment_id = $1 AND recipient_id IS NOT NULL ORDER BY 1, 2 LIMIT 20",
            &[&assignment_id],
        )
        .await?
        .iter()
        .map(|r| (text(r, "role"), text(r, "id")))
        .collect())
}

#[derive(Debug)]
pub struct Away {
    pub away_id: i64,
    pub recipient_role: String,
    pub recipient_id: String,
    pub from_day: String,
    pub until_day: String,
    pub reason: String,
    pub set_by: String,
    pub set_at: String,
    pub ended_at: Option<String>,
    pub ended_by: Option<String>,
}

/// The absences of these recipients, newest first.
pub async fn absences(client: &Client, recipients: &[Recipient]) -> Result<Vec<Away>, DbError> {
    if recipients.is_empty() {
        return Ok(Vec::new());
    }
    let roles: Vec<&str> = recipients.iter().map(|r| r.0.as_str()).collect();
    let ids: Vec<&str> = recipients.iter().map(|r| r.1.as_str()).collect();
    let sql = concat!(
        "SELECT away_id, recipient_role::text AS recipient_role, recipient_id, from_day::text AS from_day,
                until_day::text AS until_day, reason, set_by::text AS set_by, ",
        ts!("set_at"),
        " AS set_at, ",
        ts!("ended_at"),
        " AS ended_at, ended_by::text AS ended_by
           FROM followup.away
          WHERE (recipient_role::text, recipient_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
          ORDER BY away_id DESC LIMIT 50"
    );
    Ok(client
        .query(sql, &[&roles, &ids])
        .await?
        .iter()
        .map(|r| Away {
            away_id: int(r, "away_id"),
            recipient_role: text(r, "recipient_role"),
            recipient_id: text(r, "recipient_id"),
            from_day: text(r, "from_day"),
            until_day: text(r, "until_day"),
            reason: text(r, "reason"),
            set_by: text(r, "set_by"),
            set_at: text(r, "set_at"),
            ended_at: opt_text(r, "ended_at"),
            ended_by: opt_text(r, "ended_by"),
        })
        .collect())
}

/// followup.set_away: the absence's row as JSON.
pub async fn set_away(
    client: &Client,
    recipient: &Recipient,
    from_day: Option<&str>,
    until_day: Option<&str>,
    reason: Option<&str>,
) -> Result<Value, DbError> {
    let row = client
        .query_one(
            "SELECT to_jsonb(a) FROM followup.set_away($1::text::followup.recipient_role, $2, $3::text::date,
                                                        $4::text::date, $5) AS a",
            &[&recipient.0, &recipient.1, &from_day, &until_day, &reason],
        )
        .await?;
    Ok(row.get(0))
}

/// followup.end_away: how many open absences it ended.
pub async fn end_away(client: &Client, recipient: &Recipient) -> Result<i64, DbError> {
    let row = client
        .query_one("SELECT followup.end_away($1::text::followup.recipient_role, $2)", &[&recipient.0, &recipient.1])
        .await?;
    Ok(row.get(0))
}

// ---------------------------------------------------------------------------
// Drift
// ---------------------------------------------------------------------------

pub struct Drift {
    pub assignment_id: String,
    pub stored: Option<String>,
    pub expected: Option<String>,
}

pub async fn verify(client: &Client, max_rows: i32) -> Result<Vec<Drift>, DbError> {
    Ok(client
        .query("SELECT assignment_id, stored, expected FROM followup.verify($1)", &[&max_rows])
        .await?
        .iter()
        .map(|r| Drift {
            assignment_id: text(r, "assignment_id"),
            stored: opt_text(r, "stored"),
            expected: opt_text(r, "expected"),
        })
        .collect())
}

pub async fn repair(client: &Client, reason: Option<&str>) -> Result<i64, DbError> {
    Ok(client.query_one("SELECT followup.repair($1)", &[&reason]).await?.get(0))
}

// ---------------------------------------------------------------------------
// Audit: corrections, snoozes, repairs and the audit log, newest first
// ---------------------------------------------------------------------------

#[derive(Debug)]
pub struct AuditEntry {
    pub source: &'static str,
    pub id: i64,
    pub at: String,
    pub at_exact: String,
    pub who: String,
    pub session_role: String,
    pub action: String,
    pub subject: String,
    pub reason: Option<String>,
    pub details: String,
}

/// The sources in their order among entries of the same instant.
pub const AUDIT_SOURCES: [&str; 4] = ["log", "corrections", "snoozes", "repairs"];

/// Where a page of the audit starts (exclusive): an instant, a source, an id.
#[derive(Debug, Clone)]
pub struct AuditCursor {
    pub at: String,
    pub source: usize,
    pub id: i64,
}

fn audit_source_sql(source: usize) -> &'static str {
    match source {
        0 => concat!(
            "SELECT 'log' AS source, audit_id AS id, at AS at_ts, acting_role::text AS who,
                    session_role::text AS session_role, action, coalesce(subject, '') AS subject, reason,
                    details::text AS details FROM followup.audit_log"
        ),
        1 => concat!(
            "SELECT 'corrections', correction_id, corrected_at, corrected_by::text, session_role::text,
                    'set_last_contact', assignment_id, reason,
                    coalesce(old_value, 'NULL') || ' → ' || new_value::text FROM followup.contact_corrections"
        ),
        2 => concat!(
            "SELECT 'snoozes', snooze_id, snoozed_at, snoozed_by::text, session_role::text,
                    'snooze', assignment_id, reason,
                    'until ' || until::text || coalesce(', ended ' || ended_at::text || ' by ' || ended_by, '')
               FROM followup.snoozes"
        ),
        _ => concat!(
            "SELECT 'repairs', repair_id, repaired_at, repaired_by::text, session_role::text,
                    'repair', assignment_id, reason,
                    coalesce(old_value, 'NULL') || ' → ' || coalesce(new_value, 'NULL') FROM followup.repairs"
        ),
    }
}

fn audit_time_column(source: usize) -> &'static str {
    ["at", "corrected_at", "snoozed_at", "repaired_at"][source.min(3)]
}

fn audit_id_column(source: usize) -> &'static str {
    ["audit_id", "correction_id", "snooze_id", "repair_id"][source.min(3)]
}

/// A page of the audit (one source, or all of them merged), newest first.
/// Each source is read newest first with its own keyset condition; the
/// audit log through its index on `at`.
pub async fn audit(
    client: &Client,
    only: Option<usize>,
    cursor: Option<&AuditCursor>,
    limit: i64,
) -> Result<Vec<AuditEntry>, DbError> {
    let mut parts = Vec::new();
    for source in 0..AUDIT_SOURCES.len() {
        if only.is_some_and(|o| o != source) {
            continue;
        }
        let (t, id) = (audit_time_column(source), audit_id_column(source));
        // entries of the same instant come in source order, then by id, newest first
        let condition = match cursor {
            // (both parameters are referenced, so that PostgreSQL can type them)
            None => "($1::text IS NULL OR $2::bigint IS NULL OR true)".to_string(),
            Some(c) if source < c.source => format!("{t} <= $1::text::timestamptz"),
            Some(c) if source == c.source => format!("({t}, {id}) < ($1::text::timestamptz, $2::bigint)"),
            Some(_) => format!("{t} < $1::text::timestamptz"),
        };
        parts.push(format!("({} WHERE {condition} ORDER BY {t} DESC, {id} DESC LIMIT $3)", audit_source_sql(source)));
    }
    let sql = format!(
        "SELECT source, id, {}, at_ts::text AS at_exact, who, session_role, action, subject, reason, details
           FROM ({}) AS a(source, id, at_ts, who, session_role, action, subject, reason, details)
          ORDER BY at_ts DESC, array_position(ARRAY['log', 'corrections', 'snoozes', 'repairs'], source) DESC,
                   id DESC
          LIMIT $3",
        ts!("at_ts"),
        parts.join(" UNION ALL ")
    );
    let at = cursor.map(|c| c.at.clone()).unwrap_or_default();
    let id = cursor.map(|c| c.id).unwrap_or(0);
    let rows = client.query(&sql, &[&at, &id, &limit]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let source = text(r, "source");
            AuditEntry {
                source: AUDIT_SOURCES.iter().find(|s| **s == source).copied().unwrap_or("log"),
                id: int(r, "id"),
                at: r.try_get::<_, Option<String>>(2).ok().flatten().unwrap_or_default(),
                at_exact: text(r, "at_exact"),
                who: text(r, "who"),
                session_role: text(r, "session_role"),
                action: text(r, "action"),
                subject: text(r, "subject"),
                reason: opt_text(r, "reason"),
                details: text(r, "details"),
            }
        })
        .collect())
}

// ---------------------------------------------------------------------------
// Policies
// ---------------------------------------------------------------------------

/// Every policy as a JSON object of its columns (so that columns a newer
/// extension adds, such as send_days, show up too), '*' first.
pub async fn policies(client: &Client) -> Result<Vec<serde_json::Map<String, Value>>, DbError> {
    let rows = client
        .query(
            "SELECT to_jsonb(p) FROM followup.policies AS p ORDER BY p.organization <> '*', p.organization LIMIT 1000",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| match r.get::<_, Value>(0) {
            Value::Object(map) => Some(map),
            _ => None,
        })
        .collect())
}

#[derive(Debug)]
pub struct QuietDay {
    pub organization: String,
    pub day: String,
    /// ISO weekday, 1 = Monday
    pub weekday: i32,
    pub reason: String,
}

/// The quiet days from `from` on (the primary key's order by organization
/// would not serve a date range; the table holds a few hundred rows), and
/// how many are before it.
pub async fn quiet_days(client: &Client, from: Option<&str>) -> Result<(Vec<QuietDay>, i64), DbError> {
    let from = from.map(str::to_string);
    let params: [&(dyn ToSql + Sync); 1] = [&from];
    let rows = client
        .query(
            "SELECT organization, day::text AS day, extract(isodow FROM day)::int AS weekday, reason
               FROM followup.quiet_days WHERE day >= coalesce($1::text::date, current_date)
              ORDER BY day, organization <> '*', organization LIMIT 500",
            &params,
        )
        .await?;
    let past = client
        .query_one(
            "SELECT count(*) FROM followup.quiet_days WHERE day < coalesce($1::text::date, current_date)",
            &params,
        )
        .await?;
    let days = rows
        .iter()
        .map(|r| QuietDay {
            organization: text(r, "organization"),
            day: text(r, "day"),
            weekday: r.get("weekday"),
            reason: text(r, "reason"),
        })
        .collect();
    Ok((days, past.get(0)))
}

pub async fn add_quiet_day(
    client: &Client,
    organization: &str,
    day: Option<&str>,
    reason: Option<&str>,
) -> Result<(), DbError> {
    client
        .execute(
            "INSERT INTO followup.quiet_days (organization, day, reason) VALUES ($1, $2::text::date, $3)",
            &[&organization, &day, &reason],
        )
        .await?;
    Ok(())
}

pub async fn delete_quiet_day(client: &Client, organization: &str, day: Option<&str>) -> Result<(), DbError> {
    let n = client
        .execute(
            "DELETE FROM followup.quiet_days WHERE organization = $1 AND day = $2::text::date",
            &[&organization, &day],
        )
        .await?;
    if n == 0 {
        return Err(DbError::sql("P0002", format!("no quiet day {} for \"{organization}\"", day.unwrap_or("?"))));
    }
    Ok(())
}

/// The policy columns a form edits, all as text ('' is NULL); PostgreSQL
/// converts and checks them (send_days as an array literal, "{1,2,3}").
pub const POLICY_FIELDS: [&str; 9] = [
    "remind_after_days",
    "repeat_every_days",
    "escalate_after_days",
    "max_reminders",
    "enabled",
    "timezone",
    "send_from",
    "send_until",
    "send_days",
];

pub async fn save_policy(
    client: &Client,
    organization: &str,
    values: &[Option<String>; 9],
    insert: bool,
) -> Result<(), DbError> {
    let params: [&(dyn ToSql + Sync); 10] = [
        &organization,
        &values[0],
        &values[1],
        &values[2],
        &values[3],
        &values[4],
        &values[5],
        &values[6],
        &values[7],
        &values[8],
    ];
    if insert {
        client
            .execute(
                "INSERT INTO followup.policies (organization, remind_after_days, repeat_every_days,
                                                escalate_after_days, max_reminders, enabled, timezone,
                                                send_from, send_until, send_days)
                 VALUES ($1, $2::text::int, $3::text::int, $4::text::int, $5::text::int,
                         coalesce($6::text::boolean, true), $7, $8::text::time, $9::text::time,
                         $10::text::smallint[])",
                &params,
            )
            .await?;
    } else {
        let n = client
            .execute(
                "UPDATE followup.policies SET remind_after_days = $2::text::int, repeat_every_days = $3::text::int,
                        escalate_after_days = $4::text::int, max_reminders = $5::text::int,
                        enabled = coalesce($6::text::boolean, false), timezone = $7,
                        send_from = $8::text::time, send_until = $9::text::time,
                        send_days = $10::text::smallint[]
                  WHERE organization = $1",
                &params,
            )
            .await?;
        if n == 0 {
            return Err(DbError::sql("P0002", format!("no policy for organization \"{organization}\"")));
        }
    }
    Ok(())
}

pub async fn delete_policy(client: &Client, organization: &str) -> Result<(), DbError> {
    let n = client.execute("DELETE FROM followup.policies WHERE organization = $1", &[&organization]).await?;
    if n == 0 {
        return Err(DbError::sql("P0002", format!("no policy for organization \"{organization}\"")));
    }
    Ok(())
}
