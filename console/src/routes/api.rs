//! The JSON API for scripts: the same statements as the pages, on the
//! caller's own connection (HTTP Basic with their database role, or their
//! session). Errors are `{"error": {"sqlstate", "message"}}`, with the
//! status of the SQLSTATE (400 class 22, 401, 403 42501, 404 P0002, 409
//! 55000, 500 otherwise).

use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{api_db_error, api_error, Caller};
use crate::db;

type Answer = Result<Response, Response>;

#[derive(Deserialize)]
pub struct AsOf {
    as_of: Option<String>,
}

pub async fn explain(caller: Caller, Path(id): Path<String>, Query(q): Query<AsOf>) -> Answer {
    let as_of = q.as_of.as_deref().filter(|s| !s.is_empty());
    let explained = db::explain(caller.client(), &id, as_of).await.map_err(api_db_error)?;
    Ok(Json(explained).into_response())
}

/// The request's JSON object; a field that is absent or not a string is
/// passed on as NULL, for PostgreSQL to refuse (22004).
fn body(bytes: &Bytes) -> Result<Value, Response> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(api_error(StatusCode::BAD_REQUEST, "22P02", "the body must be a JSON object")),
        Err(e) => Err(api_error(StatusCode::BAD_REQUEST, "22P02", &format!("the body is not JSON: {e}"))),
    }
}

fn field<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v.get(name).and_then(Value::as_str)
}

pub async fn set_last_contact(caller: Caller, Path(id): Path<String>, bytes: Bytes) -> Answer {
    let v = body(&bytes)?;
    let row = db::set_last_contact(caller.client(), &id, field(&v, "date"), field(&v, "reason"))
        .await
        .map_err(api_db_error)?;
    Ok((StatusCode::CREATED, Json(row)).into_response())
}

pub async fn snooze(caller: Caller, Path(id): Path<String>, bytes: Bytes) -> Answer {
    let v = body(&bytes)?;
    let row = db::snooze(caller.client(), &id, field(&v, "until"), field(&v, "reason")).await.map_err(api_db_error)?;
    Ok((StatusCode::CREATED, Json(row)).into_response())
}

pub async fn unsnooze(caller: Caller, Path(id): Path<String>) -> Answer {
    let ended = db::unsnooze(caller.client(), &id).await.map_err(api_db_error)?;
    Ok(Json(json!({"assignment_id": id, "snoozes_ended": ended})).into_response())
}

#[derive(Deserialize)]
pub struct Limit {
    limit: Option<String>,
}

pub async fn runs(caller: Caller, Query(q): Query<Limit>) -> Answer {
    let limit = match q.limit.as_deref() {
        None | Some("") => 20,
        Some(text) => match text.parse::<i64>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => return Err(api_error(StatusCode::BAD_REQUEST, "22023", "limit must be a number from 1 to 1000")),
        },
    };
    Ok(Json(db::runs_json(caller.client(), limit).await.map_err(api_db_error)?).into_response())
}

pub async fn health(caller: Caller) -> Answer {
    Ok(Json(db::health_json(caller.client()).await.map_err(api_db_error)?).into_response())
}
