//! HTTP: the router, what every request passes through, and who is asking.
//!
//! - `guard`: a state-changing request (anything but GET/HEAD) whose
//!   `Sec-Fetch-Site` (or, without it, `Origin`) says another site sent it is
//!   refused with 403
//!   before any handler runs; together with `SameSite=Strict` cookies this is
//!   the protection against cross-site request forgery.
//! - `security_headers`: CSP without inline script, no framing, no referrer,
//!   no sniffing, no caching of pages; HSTS over HTTPS.
//! - `Person` (pages: the session cookie, else a redirect to the login page)
//!   and `Caller` (the JSON API: HTTP Basic credentials, else the cookie, else
//!   401) give a handler the database connection of the person asking.
//!
//! Pages are in `pages.rs`, the JSON API in `api.rs`.

mod api;
mod pages;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use axum_extra::headers::authorization::Basic;
use axum_extra::headers::Authorization;
use axum_extra::TypedHeader;
use maud::Markup;
use serde_json::json;
use tokio_postgres::Client;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::db::{self, DbError};
use crate::session::{LoginError, Session, Sessions};
use crate::views::{self, Who};

pub struct AppState {
    pub sessions: Sessions,
    /// served over HTTPS: cookies are Secure (and __Host- prefixed)
    pub https: bool,
}

impl AppState {
    fn cookie_name(&self) -> &'static str {
        if self.https {
            "__Host-followup_session"
        } else {
            "followup_session"
        }
    }

    fn session_cookie(&self, token: String) -> Cookie<'static> {
        Cookie::build((self.cookie_name(), token))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(self.https)
            .build()
    }
}

type State = Arc<AppState>;

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

pub fn router(state: State) -> Router {
    let https = state.https;
    let app = Router::new()
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/healthz", get(pages::healthz))
        .route("/static/console.css", get(pages::stylesheet))
        .route("/", get(pages::overview))
        .route("/runs", get(pages::runs).post(pages::run_now))
        .route("/runs/{id}", get(pages::run))
        .route("/alerts", get(pages::alerts))
        .route("/alerts/{id}/resolve", post(pages::resolve_alert))
        .route("/outbox", get(pages::outbox))
        .route("/outbox/confirm", post(pages::outbox_confirm))
        .route("/outbox/cancel", post(pages::outbox_cancel))
        .route("/outbox/requeue", post(pages::outbox_requeue))
        .route("/assignments", get(pages::assignment_search))
        .route("/assignments/{id}", get(pages::assignment))
        .route("/assignments/{id}/last-contact", post(pages::set_last_contact))
        .route("/assignments/{id}/snooze", post(pages::snooze))
        .route("/assignments/{id}/unsnooze", post(pages::unsnooze))
        .route("/assignments/{id}/away", post(pages::set_away))
        .route("/assignments/{id}/end-away", post(pages::end_away))
        .route("/drift", get(pages::drift))
        .route("/drift/confirm", post(pages::drift_confirm))
        .route("/drift/repair", post(pages::drift_repair))
        .route("/audit", get(pages::audit))
        .route("/policies", get(pages::policies).post(pages::save_policy))
        .route("/policies/edit", get(pages::edit_policy))
        .route("/policies/delete", post(pages::delete_policy))
        .route("/policies/quiet-days", post(pages::add_quiet_day))
        .route("/policies/quiet-days/delete", post(pages::delete_quiet_day))
        .route("/api/assignments/{id}", get(api::explain))
        .route("/api/assignments/{id}/last-contact", post(api::set_last_contact))
        .route("/api/assignments/{id}/snooze", post(api::snooze))
        .route("/api/assignments/{id}/snooze", delete(api::unsnooze))
        .route("/api/runs", get(api::runs))
        .route("/api/health", get(api::health))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&state), guard))
        .with_state(state);
    let header = |name: HeaderName, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
    };
    let app = app
        .layer(header(header::CONTENT_SECURITY_POLICY, CSP))
        .layer(header(header::X_FRAME_OPTIONS, "DENY"))
        .layer(header(header::REFERRER_POLICY, "no-referrer"))
        .layer(header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(header(header::CACHE_CONTROL, "no-store"));
    if https {
        app.layer(header(header::STRICT_TRANSPORT_SECURITY, "max-age=31536000"))
    } else {
        app
    }
}

/// Refuses cross-site state-changing requests (403, before any handler).
async fn guard(axum::extract::State(state): axum::extract::State<State>, request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(request).await;
    }
    let headers = request.headers();
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let scheme = if state.https { "https" } else { "http" };
    // Sec-Fetch-Site, where the browser sends it, is the answer: with
    // Referrer-Policy no-referrer a same-origin form post carries `Origin:
    // null`. Otherwise the Origin must be ours. Neither header: not a
    // browser's cross-site request (a script with credentials).
    let cross_site = match (site, origin) {
        (Some(site), _) => !matches!(site, "same-origin" | "none"),
        (None, Some(origin)) => host.is_none_or(|host| origin != format!("{scheme}://{host}")),
        (None, None) => false,
    };
    if cross_site {
        tracing::warn!(
            method = %request.method(), path = %request.uri().path(), origin = origin.unwrap_or(""),
            sec_fetch_site = site.unwrap_or(""), "cross-site request refused"
        );
        let text = "Refused: this request came from another site.";
        if request.uri().path().starts_with("/api/") {
            return api_error(StatusCode::FORBIDDEN, "42501", text);
        }
        return (StatusCode::FORBIDDEN, views::error(None, 403, text, "42501", None)).into_response();
    }
    next.run(request).await
}

/// A local path to go to after login or an action: "/..." only, never
/// "//host" or "/\host" (which browsers take for another site), else "/".
pub fn local_path(next: Option<&str>) -> String {
    match next {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && !p.chars().any(|c| c.is_control() || c.is_whitespace()) =>
        {
            p.to_string()
        }
        _ => "/".to_string(),
    }
}

// ---------------------------------------------------------------------------
// Who is asking
// ---------------------------------------------------------------------------

/// A logged-in person (pages). Without a live session: a redirect to the
/// login page, which comes back here after.
pub struct Person {
    pub session: Arc<Session>,
}

impl Person {
    pub fn client(&self) -> &Client {
        &self.session.client
    }

    /// The person and what their role may do (asked of PostgreSQL).
    pub async fn who(&self) -> Result<Who<'_>, DbError> {
        Ok(Who { role: &self.session.role, can: db::privileges(self.client()).await? })
    }
}

impl FromRequestParts<State> for Person {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Person, Response> {
        let jar = CookieJar::from_headers(&parts.headers);
        if let Some(session) = jar.get(state.cookie_name()).and_then(|c| state.sessions.get(c.value())) {
            return Ok(Person { session });
        }
        let next = if parts.method == Method::GET {
            parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        Err(Redirect::to(&views::href("/login", &[("next", Some(local_path(Some(&next))))])).into_response())
    }
}

/// The JSON API's caller: HTTP Basic credentials (a connection for this
/// request), else the session cookie; else 401.
pub enum Caller {
    Session(Arc<Session>),
    /// a connection for this request, and its slot (held, never read:
    /// dropping it with the request frees the slot)
    Basic(Client, #[allow(dead_code)] tokio::sync::OwnedSemaphorePermit),
}

impl Caller {
    pub fn client(&self) -> &Client {
        match self {
            Caller::Session(s) => &s.client,
            Caller::Basic(c, _) => c,
        }
    }
}

impl FromRequestParts<State> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Caller, Response> {
        if parts.headers.contains_key(header::AUTHORIZATION) {
            let Ok(TypedHeader(Authorization(basic))) =
                TypedHeader::<Authorization<Basic>>::from_request_parts(parts, state).await
            else {
                return Err(unauthorized("28000", "only HTTP Basic credentials are accepted"));
            };
            let from = ConnectInfo::<SocketAddr>::from_request_parts(parts, state)
                .await
                .map(|c| c.0.ip())
                .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
            return match state.sessions.connect_basic(basic.username(), basic.password(), from).await {
                Ok((client, permit)) => Ok(Caller::Basic(client, permit)),
                Err(LoginError::Refused) => Err(unauthorized("28P01", "the role or password was not accepted")),
                Err(LoginError::Full) => {
                    Err(api_error(StatusCode::SERVICE_UNAVAILABLE, "53300", "too many connections at once: try again"))
                }
                Err(LoginError::Unavailable) => {
                    Err(api_error(StatusCode::SERVICE_UNAVAILABLE, "08006", "the database cannot be reached"))
                }
            };
        }
        let jar = CookieJar::from_headers(&parts.headers);
        match jar.get(state.cookie_name()).and_then(|c| state.sessions.get(c.value())) {
            Some(session) => Ok(Caller::Session(session)),
            None => Err(unauthorized("28000", "log in: HTTP Basic credentials of your database role, or a session")),
        }
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// The HTTP status of a SQLSTATE.
pub fn status_of(code: &str) -> StatusCode {
    match code {
        "42501" => StatusCode::FORBIDDEN,
        "P0002" => StatusCode::NOT_FOUND,
        "55000" => StatusCode::CONFLICT,
        "08006" => StatusCode::SERVICE_UNAVAILABLE,
        c if c.starts_with("22") => StatusCode::BAD_REQUEST,
        c if c.starts_with("28") => StatusCode::UNAUTHORIZED,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Logs what went wrong, in full; says only what a person may read.
fn log_failure(e: &DbError, role: &str) -> StatusCode {
    let status = status_of(e.code());
    match e {
        DbError::Sql { code, message } if status.is_server_error() => {
            tracing::error!(role, sqlstate = %code, "{message}")
        }
        DbError::Sql { code, message } => tracing::info!(role, sqlstate = %code, "refused: {message}"),
        DbError::Unavailable(message) => tracing::warn!(role, "database unavailable: {message}"),
    }
    status
}

/// Whether a refusal's own message may be shown: pg_followup's answers to
/// a bad value, an unknown assignment or a wrong state (written for the
/// person: "reason must say why ..."); never privileges, internals or SQL.
fn shows_message(code: &str) -> bool {
    code.starts_with("22") || code == "P0002" || code == "55000"
}

/// An error page: the SQLSTATE class in words, and the database's own
/// message where `shows_message`; the rest goes to the log.
pub fn page_error(person: &Person, e: DbError) -> Response {
    let status = log_failure(&e, &person.session.role);
    if let DbError::Unavailable(_) = e {
        if person.session.client.is_closed() {
            return Redirect::to("/login?lost=1").into_response();
        }
    }
    let detail = match &e {
        DbError::Sql { code, message } if shows_message(code) => Some(message.as_str()),
        _ => None,
    };
    let who = Who { role: &person.session.role, can: Default::default() };
    let page: Markup = views::error(Some(&who), status.as_u16(), db::class_in_words(e.code()), e.code(), detail);
    (status, page).into_response()
}

pub fn api_error(status: StatusCode, sqlstate: &str, message: &str) -> Response {
    (status, Json(json!({"error": {"sqlstate": sqlstate, "message": message}}))).into_response()
}

fn unauthorized(sqlstate: &str, message: &str) -> Response {
    let mut response = api_error(StatusCode::UNAUTHORIZED, sqlstate, message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"followup-console\", charset=\"UTF-8\""),
    );
    response
}

/// A database error as the API's JSON: internal errors without their text.
pub fn api_db_error(e: DbError) -> Response {
    let status = log_failure(&e, "api");
    let message = match &e {
        DbError::Sql { code, message } if shows_message(code) => message.clone(),
        _ => db::class_in_words(e.code()).to_string(),
    };
    api_error(status, e.code(), &message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_after_login() {
        assert_eq!(local_path(Some("/outbox?status=dead")), "/outbox?status=dead");
        for bad in [
            "//evil.example/x",
            "/\\evil.example",
            "https://evil.example/",
            "evil",
            "",
            "/a b",
            "/x\r\nSet-Cookie: a=b",
        ] {
            assert_eq!(local_path(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn statuses_of_sqlstates() {
        assert_eq!(status_of("22023"), StatusCode::BAD_REQUEST);
        assert_eq!(status_of("22004"), StatusCode::BAD_REQUEST);
        assert_eq!(status_of("28P01"), StatusCode::UNAUTHORIZED);
        assert_eq!(status_of("42501"), StatusCode::FORBIDDEN);
        assert_eq!(status_of("P0002"), StatusCode::NOT_FOUND);
        assert_eq!(status_of("55000"), StatusCode::CONFLICT);
        assert_eq!(status_of("XX000"), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(status_of("42883"), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
