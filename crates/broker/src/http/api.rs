//! The routes: JSON endpoints under `/api/v1/`, `/healthz`, `/metrics`, the
//! live channel and the dashboard; and what every response shares (errors
//! as JSON, security headers, the `Host` check).
//!
//! Query parameters are strict: an unknown one, or a value that does not
//! parse, is `400` with `{"error", "status"}`; an unknown path is `404`, a
//! method other than GET (or HEAD) `405`, all as JSON.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use eventbus::broker::monitor::{HealthStatus, OutcomeFilter, TaskQuery};
use eventbus::{ClientId, TopicFilter};
use serde::Serialize;
use serde_json::json;

use super::{AppState, dashboard, live, metrics, server};

/// Tasks returned when `limit` is not given.
const DEFAULT_TASK_LIMIT: usize = 100;
/// The most tasks one request may ask for.
const MAX_TASK_LIMIT: usize = 10_000;

/// Every route of the listener.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(dashboard::index))
        .route("/app.js", get(dashboard::script))
        .route("/app.css", get(dashboard::style))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics::scrape))
        .route("/api/v1/overview", get(overview))
        .route("/api/v1/stats", get(stats))
        .route("/api/v1/clients", get(clients))
        .route("/api/v1/queues", get(queues))
        .route("/api/v1/subscriptions", get(subscriptions))
        .route("/api/v1/topics", get(topics))
        .route("/api/v1/workers", get(workers))
        .route("/api/v1/bridges", get(bridges))
        .route("/api/v1/tasks", get(tasks))
        .route("/api/v1/history", get(history))
        .route("/api/v1/live", get(live::upgrade))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// A request the API refuses, as JSON.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn bad_param(name: &str, value: &str, why: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            format!("invalid query parameter {name}={value:?}: {why}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.message, "status": self.status.as_u16() });
        (self.status, Json(body)).into_response()
    }
}

/// The `Host` check, then the headers every response carries.
async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .map(|h| h.to_str().unwrap_or("\u{0}"));
    if let Some(host) = host
        && !server::host_allowed(host, &state.config.allowed_hosts)
    {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            format!("host {host:?} is not served: use an IP address or localhost, or add it to http.allowed_hosts"),
        )
        .into_response();
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
             frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    response
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no such path: {}", uri.path()),
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed: the monitor is read-only (GET)",
    )
}

/// The query parameters of a request, refusing any not in `known`.
pub fn params(uri: &Uri, known: &[&str]) -> Result<HashMap<String, String>, ApiError> {
    let pairs: Vec<(String, String)> = match uri.query() {
        None | Some("") => Vec::new(),
        Some(query) => serde_urlencoded_pairs(query)?,
    };
    let mut params = HashMap::new();
    for (name, value) in pairs {
        if !known.contains(&name.as_str()) {
            let expected = if known.is_empty() {
                "this endpoint takes no parameters".to_owned()
            } else {
                format!("expected one of {}", known.join(", "))
            };
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("unknown query parameter {name:?}: {expected}"),
            ));
        }
        if params.insert(name.clone(), value).is_some() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("query parameter {name:?} given twice"),
            ));
        }
    }
    Ok(params)
}

/// Splits a query string into decoded pairs.
fn serde_urlencoded_pairs(query: &str) -> Result<Vec<(String, String)>, ApiError> {
    let uri: Uri = format!("/?{query}")
        .parse()
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "malformed query string"))?;
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .map(|q| q.0)
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("malformed query string: {e}"),
            )
        })
}

fn ok<T: Serialize>(value: T) -> Response {
    Json(value).into_response()
}

async fn healthz(State(state): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    params(&uri, &[])?;
    let health = state.monitor.health();
    let status = match health.status {
        HealthStatus::Draining => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::OK,
    };
    Ok((status, Json(health)).into_response())
}

async fn overview(State(state): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    params(&uri, &[])?;
    Ok(ok(state.monitor.overview()))
}

async fn stats(State(state): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    params(&uri, &[])?;
    // The stable document of `ebctl stats --json` (docs/stats.md).
    Ok(ok(eventbus::BrokerStats::from(state.monitor.stats())))
}

async fn clients(State(state): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    params(&uri, &[])?;
    Ok(ok(json!({ "clients": state.monitor.clients() })))
}

async fn queues(State(state): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    params(&uri, &[])?;
    Ok(ok(json!({ "queues": state.monitor.queues() })))
}

async fn subscriptions(State(state): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    params(&uri, &[])?;
    Ok(ok(
        json!({ "subscriptions": state.monitor.subscriptions() }),
    ))
}

async fn topics(State(state): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    params(&uri, &[])?;
    Ok(ok(json!({ "topics": state.monitor.topics() })))
}

async fn workers(State(state): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    params(&uri, &[])?;
    Ok(ok(json!({ "workers": state.monitor.workers() })))
}

async fn bridges(State(state): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    params(&uri, &[])?;
    Ok(ok(json!({ "bridges": bridges_json(&state.monitor) })))
}

/// The bridges' last statuses, each with its status JSON parsed (`null`
/// when it is not JSON), for the API and the dashboard.
pub(crate) fn bridges_json(monitor: &eventbus::broker::monitor::Monitor) -> serde_json::Value {
    monitor
        .bridges()
        .into_iter()
        .map(|b| {
            let status: serde_json::Value =
                serde_json::from_str(&b.status_json).unwrap_or(serde_json::Value::Null);
            json!({
                "name": b.name, "client_id": b.client_id, "connected": b.connected,
                "age_ms": b.age_ms, "status": status,
            })
        })
        .collect()
}

async fn tasks(State(state): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    let p = params(&uri, &["topic", "collector", "outcome", "limit"])?;
    let mut query = TaskQuery::default();
    if let Some(v) = p.get("topic") {
        query.topic = Some(TopicFilter::new(v).map_err(|e| ApiError::bad_param("topic", v, e))?);
    }
    if let Some(v) = p.get("collector") {
        let id = ClientId::new(v.as_str()).map_err(|e| ApiError::bad_param("collector", v, e))?;
        query.collector = Some(id.to_string());
    }
    if let Some(v) = p.get("outcome") {
        query.outcome = Some(
            v.parse::<OutcomeFilter>()
                .map_err(|e| ApiError::bad_param("outcome", v, e))?,
        );
    }
    query.limit = match p.get("limit") {
        None => DEFAULT_TASK_LIMIT,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_TASK_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_param(
                    "limit",
                    v,
                    format!("expected a whole number from 1 to {MAX_TASK_LIMIT}"),
                ));
            }
        },
    };
    Ok(ok(state.monitor.tasks(&query)))
}

async fn history(State(state): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    let p = params(&uri, &["window"])?;
    let capacity = state.monitor.history_capacity();
    let window = match p.get("window") {
        None => capacity,
        Some(v) => {
            let window = parse_window(v).map_err(|e| ApiError::bad_param("window", v, e))?;
            if window > capacity {
                return Err(ApiError::bad_param(
                    "window",
                    v,
                    format!(
                        "the broker keeps {} s (monitor.history_seconds)",
                        capacity.as_secs()
                    ),
                ));
            }
            window
        }
    };
    let samples = state.monitor.history(window);
    Ok(ok(json!({
        "window_s": window.as_secs(),
        "interval_ms": eventbus::broker::monitor::SAMPLE_INTERVAL.as_millis() as u64,
        "samples": samples,
    })))
}

/// A window like `90`, `90s`, `15m` or `2h`: at least a second.
pub fn parse_window(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| "expected a number of seconds, or with a unit: 90s, 15m, 2h".to_owned())?;
    let secs = match unit {
        "" | "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        _ => None,
    }
    .ok_or_else(|| format!("unknown unit {unit:?}: use s, m or h"))?;
    if secs == 0 {
        return Err("must be at least 1s".to_owned());
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_take_seconds_minutes_and_hours() {
        assert_eq!(parse_window("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_window("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_window("2h"), Ok(Duration::from_secs(7200)));
        for bad in [
            "",
            "0",
            "m",
            "5d",
            "-1",
            "1.5m",
            "99999999999999999999",
            "9999999999999999h",
        ] {
            assert!(parse_window(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_and_repeated_parameters_are_refused() {
        let uri: Uri = "/x?limit=1&outcome=acked".parse().unwrap();
        assert_eq!(params(&uri, &["limit", "outcome"]).unwrap().len(), 2);
        assert!(params(&uri, &["limit"]).is_err());
        let twice: Uri = "/x?limit=1&limit=2".parse().unwrap();
        assert!(params(&twice, &["limit"]).is_err());
        let encoded: Uri = "/x?topic=a.%23".parse().unwrap();
        assert_eq!(params(&encoded, &["topic"]).unwrap()["topic"], "a.#");
    }
}
