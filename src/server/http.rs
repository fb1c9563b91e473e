//! The admission endpoint (SPEC §5): `POST /mutate`, a thin HTTP adapter over
//! [`crate::admission`]. It checks the transport (method, path, content type, size), looks up the
//! namespace's labels, and sends back what `admission::review` decided.
//!
//! Status codes: 200 with an AdmissionReview for every readable review; 400 for a body that is
//! not an `admission.k8s.io/v1` AdmissionReview request; 404, 405, 413, 415 for the transport;
//! 408 for a body slower than the body timeout; 503 when the body would pass the server's budget
//! of buffered body bytes ([`BodyBudget`]).
//! Errors carry a `metav1.Status` JSON body, which the API server quotes in its own error. Never a
//! `Retry-After`: the API server would retry a webhook call it should fail fast.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt as _;
use tracing::Instrument as _;

use crate::admission::answer::{self, Answer, LogFields, Outcome};
use crate::admission::{NamespaceLabels, OnError, Review};
use crate::engine::policy::Config;
use crate::namespaces::{self, Lookup, NamespaceSource};
use crate::server::budget::{BodyBudget, Reservation};
use crate::server::metrics::{LatencyTimer, Metrics};
use crate::server::telemetry::capped;

/// Largest accepted body: an UPDATE review carries two objects of up to 3 MiB each (SPEC §5).
pub const MAX_BODY_BYTES: usize = 7 * 1024 * 1024;

/// Longest a request body may take to arrive: the API server gives up on a webhook after at most
/// 30 s, so a body still trickling in after that only holds a connection open.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Default budget of body bytes held in memory across all requests: nine bodies of the largest
/// size, or thousands of ordinary reviews, well inside the Deployment's 256 MiB memory limit.
pub const BODY_BUDGET_BYTES: usize = 64 * 1024 * 1024;

/// What the endpoint needs; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub on_error: OnError,
    pub namespaces: Arc<dyn NamespaceSource>,
    pub metrics: Arc<Metrics>,
    /// [`BODY_TIMEOUT`] by default (`--body-timeout`).
    pub body_timeout: Duration,
    /// Body bytes buffered across all requests (`--max-body-bytes-in-flight`).
    pub body_budget: BodyBudget,
}

/// `POST /mutate` (any query string); everything else is 404 or 405.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/mutate", post(mutate).fallback(method_not_allowed))
        .fallback(not_found)
        .with_state(state)
}

/// A `metav1.Status` failure, as the API server expects a failed webhook call to explain itself.
fn status(code: StatusCode, reason: &str, message: impl Into<String>) -> Response {
    let body = answer::status_body(code.as_u16(), reason, &message.into());
    json_response(code, body)
}

/// The answer to every request on a connection accepted over `--max-connections`: 503 with a
/// `Status` that names the bound (and no `Retry-After`).
pub fn over_connection_capacity(max_connections: u32) -> Response {
    status(
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailable",
        format!(
            "the server has {max_connections} connections open, its limit (--max-connections); this one is closed after this answer"
        ),
    )
}

async fn not_found() -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        "not found; the admission endpoint is POST /mutate",
    )
}

async fn method_not_allowed(method: Method) -> Response {
    let mut response = status(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!("method {method} not allowed; the admission endpoint is POST /mutate"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

/// `application/json`, with or without parameters such as `charset`.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// One request: the transport checks, the namespace lookup, then one call into the admission
/// layer, whose [`Answer`] is counted, logged and sent. A review's log record is one span
/// (`admission`: uid, operation, dry run, namespace), opened once the request is read, and one
/// event carrying the result. Fields are given when the span and the event are created rather
/// than recorded one by one: tracing-subscriber's JSON formatter re-encodes all of a span's
/// fields on every `record`, which cost a quarter of a review's CPU.
async fn mutate(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let timer = state.metrics.timer();
    // Held until the answer is ready: the review borrows from the body.
    let mut reservation = state.body_budget.reserve(&state.metrics);
    let bytes = match read_body(&state, &headers, body, &mut reservation).await {
        Ok(bytes) => bytes,
        Err(refused) => return send(&state, refused, &timer, None, "none"),
    };
    let review = match Review::parse(&bytes) {
        Ok(review) => review,
        Err(e) => {
            let refused = Answer::refused(Outcome::BadRequest, e.to_string());
            return send(&state, refused, &timer, None, "none");
        }
    };

    let span = tracing::info_span!(
        "admission",
        uid = %capped(review.uid()),
        operation = review.operation(),
        dry_run = review.dry_run(),
        namespace = %capped(review.namespace().unwrap_or("")),
    );
    let lookup = match review.namespace() {
        Some(ns) => {
            let lookup = namespaces::lookup(state.namespaces.as_ref(), ns)
                .instrument(span.clone())
                .await;
            state.metrics.lookup(lookup.metric_label());
            Some(lookup)
        }
        None => None,
    };
    let labels = match &lookup {
        Some(Lookup::Cached(labels) | Lookup::Fetched(labels)) => NamespaceLabels::Known(labels),
        Some(Lookup::Unknown(reason)) => NamespaceLabels::Unknown {
            reason: reason.clone(),
        },
        // Not a Pod CREATE: answered unchanged, the labels are not read.
        None => NamespaceLabels::Unknown {
            reason: "not looked up".into(),
        },
    };
    let answer = review.answer(labels, &state.config, state.on_error);
    let lookup = lookup.as_ref().map_or("none", Lookup::metric_label);
    send(&state, answer, &timer, Some(&span), lookup)
}

/// Counts, logs and writes one answer. A review is logged in its span, with the lookup's result.
fn send(
    state: &AppState,
    answer: Answer,
    timer: &LatencyTimer<'_>,
    span: Option<&tracing::Span>,
    lookup: &'static str,
) -> Response {
    state.metrics.request(answer.outcome, answer.features);
    let duration_us = timer.elapsed().as_micros() as u64;
    let outcome = answer.outcome.label();
    match &answer.log {
        LogFields::Reviewed {
            pod,
            generate_name,
            reason,
            patch_ops,
            patch_bytes,
        } => {
            let log = || {
                tracing::info!(
                    pod = %capped(pod),
                    generate_name = %capped(generate_name),
                    lookup,
                    outcome,
                    reason,
                    features = %answer.features.record(),
                    patch_ops,
                    patch_bytes,
                    duration_us,
                    "admission review answered"
                )
            };
            match span {
                Some(span) => span.in_scope(log),
                None => log(),
            }
        }
        LogFields::Refused { message } => {
            // `error`, not `message`: the JSON formatter writes the event's text as `message`.
            tracing::warn!(status = answer.status, outcome, error = %capped(message), duration_us, "admission request refused");
        }
    }
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, answer.body)
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// The transport checks: content type, size, the body budget and the body timeout; the body, or
/// the refusal.
async fn read_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    reservation: &mut Reservation<'_>,
) -> Result<Vec<u8>, Answer> {
    if !is_json(headers) {
        let got = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none");
        let message = format!("Content-Type must be application/json, got {got}");
        return Err(Answer::refused(Outcome::UnsupportedMediaType, message));
    }
    let too_large = || {
        let message = format!("body larger than {MAX_BODY_BYTES} bytes");
        Answer::refused(Outcome::PayloadTooLarge, message)
    };
    let declared = declared_length(headers);
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let read = read_limited(body, MAX_BODY_BYTES, declared, reservation);
    let Ok(read) = tokio::time::timeout(state.body_timeout, read).await else {
        let message = format!(
            "body not received within {} s",
            state.body_timeout.as_secs_f64()
        );
        return Err(Answer::refused(Outcome::RequestTimeout, message));
    };
    read.map_err(|e| match e {
        ReadError::TooLarge => too_large(),
        ReadError::OverBudget => {
            let message = format!(
                "the server holds too many request bodies: this one would pass its budget of {} bytes",
                state.body_budget.limit()
            );
            Answer::refused(Outcome::OverCapacity, message)
        }
        ReadError::Transport(e) => {
            Answer::refused(Outcome::BadRequest, format!("reading the body: {e}"))
        }
    })
}

enum ReadError {
    /// Past the size limit.
    TooLarge,
    /// Past what the body budget covers now.
    OverBudget,
    Transport(axum::Error),
}

/// The whole body, read into a buffer that grows (doubling, never past `limit` nor the declared
/// length) only as far as `reservation` can grow with it; or why not.
async fn read_limited(
    body: Body,
    limit: usize,
    declared: Option<u64>,
    reservation: &mut Reservation<'_>,
) -> Result<Vec<u8>, ReadError> {
    let ceiling = declared.map_or(limit, |d| usize::try_from(d).unwrap_or(limit).min(limit));
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(ReadError::Transport)?;
        let needed = buf.len() + chunk.len();
        if needed > limit {
            return Err(ReadError::TooLarge);
        }
        if needed > buf.capacity() {
            let target = (buf.capacity() * 2).min(ceiling).max(needed);
            if !reservation.grow_to(target) {
                return Err(ReadError::OverBudget);
            }
            buf.reserve_exact(target - buf.len());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}
