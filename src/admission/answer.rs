//! The one answer the HTTP handler writes for a request: status, body, outcome and log fields.
//! Transport refusals (decided by the handler) and reviews (decided by [`super::Review::answer`])
//! share the [`Outcome`] type, which is also the metrics label, so a label cannot be misspelled.

use crate::engine::policy::Features;

/// How a request was answered; bounded, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A patch was returned.
    Mutated,
    /// The Pod gets features but already had everything (e.g. reinvocation).
    Unchanged,
    /// The policy left the Pod alone.
    Skipped,
    /// Not a Pod CREATE.
    Ignored,
    /// The injector could not decide and allowed the Pod unchanged.
    Error,
    /// The injector could not decide and denied the Pod (`--on-error=deny`).
    Denied,
    /// The body is not an `admission.k8s.io/v1` AdmissionReview request, or could not be read.
    BadRequest,
    /// The Content-Type is not `application/json`.
    UnsupportedMediaType,
    /// The body is larger than the server accepts.
    PayloadTooLarge,
    /// The body did not arrive within the body timeout.
    RequestTimeout,
    /// The body would pass the server's budget of buffered body bytes.
    OverCapacity,
}

impl Outcome {
    /// Every outcome, for tests and for pre-registering metrics.
    pub const ALL: [Outcome; 11] = [
        Outcome::Mutated,
        Outcome::Unchanged,
        Outcome::Skipped,
        Outcome::Ignored,
        Outcome::Error,
        Outcome::Denied,
        Outcome::BadRequest,
        Outcome::UnsupportedMediaType,
        Outcome::PayloadTooLarge,
        Outcome::RequestTimeout,
        Outcome::OverCapacity,
    ];

    /// The `outcome` label of `admission_requests_total` and of the request's log line.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Mutated => "mutated",
            Outcome::Unchanged => "unchanged",
            Outcome::Skipped => "skipped",
            Outcome::Ignored => "ignored",
            Outcome::Error => "error",
            Outcome::Denied => "denied",
            Outcome::BadRequest => "bad_request",
            Outcome::UnsupportedMediaType => "unsupported_media_type",
            Outcome::PayloadTooLarge => "payload_too_large",
            Outcome::RequestTimeout => "request_timeout",
            Outcome::OverCapacity => "over_capacity",
        }
    }

    /// For a refusal: the HTTP status and the `metav1.Status` reason; `None` for review outcomes
    /// (answered 200 with an AdmissionReview).
    pub fn refusal_status(self) -> Option<(u16, &'static str)> {
        match self {
            Outcome::BadRequest => Some((400, "BadRequest")),
            Outcome::UnsupportedMediaType => Some((415, "UnsupportedMediaType")),
            Outcome::PayloadTooLarge => Some((413, "RequestEntityTooLarge")),
            Outcome::RequestTimeout => Some((408, "Timeout")),
            Outcome::OverCapacity => Some((503, "ServiceUnavailable")),
            _ => None,
        }
    }
}

/// The answer to one request.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status: 200 for every review, the refusal's code otherwise.
    pub status: u16,
    /// JSON: an AdmissionReview, or a `metav1.Status` for a refusal.
    pub body: Vec<u8>,
    pub outcome: Outcome,
    /// Features that apply to the Pod (metrics); empty for refusals.
    pub features: Features,
    pub log: LogFields,
}

/// What the request's log line says besides the outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogFields {
    /// A transport refusal: why.
    Refused { message: String },
    /// A review.
    Reviewed {
        /// The Pod's name: from the Pod when it was read, else the request's `name`.
        pod: String,
        generate_name: String,
        /// Why the injector could not decide (`error`, `denied`), else empty.
        reason: &'static str,
        patch_ops: usize,
        patch_bytes: usize,
    },
}

impl Answer {
    /// A transport refusal (`outcome` must be one with a [`Outcome::refusal_status`]), with a
    /// `metav1.Status` body, as the API server expects a failed webhook call to explain itself.
    pub fn refused(outcome: Outcome, message: String) -> Answer {
        let (status, reason) = outcome.refusal_status().unwrap_or((500, "InternalError"));
        Answer {
            status,
            body: status_body(status, reason, &message),
            outcome,
            features: Features::default(),
            log: LogFields::Refused { message },
        }
    }
}

/// A `metav1.Status` failure.
pub fn status_body(code: u16, reason: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "v1", "kind": "Status", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    }))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_ones_dashboards_use() {
        let labels: Vec<_> = Outcome::ALL.iter().map(|o| o.label()).collect();
        assert_eq!(
            labels,
            [
                "mutated",
                "unchanged",
                "skipped",
                "ignored",
                "error",
                "denied",
                "bad_request",
                "unsupported_media_type",
                "payload_too_large",
                "request_timeout",
                "over_capacity"
            ]
        );
    }

    #[test]
    fn refusals_carry_a_status() {
        let a = Answer::refused(Outcome::PayloadTooLarge, "too big".into());
        assert_eq!(a.status, 413);
        let body: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(body["reason"], "RequestEntityTooLarge");
        assert_eq!(body["code"], 413);
        assert_eq!(body["message"], "too big");
        assert!(Outcome::Mutated.refusal_status().is_none());
    }
}
