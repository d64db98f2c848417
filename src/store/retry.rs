//! How a failed request is tried again: exponential backoff from a base delay, a time limit per
//! attempt, and which errors another attempt cannot fix; and the run's count of retries.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::store::describe;

/// How often a failed request is tried again, with exponential backoff from `base_delay`, and
/// how long one attempt may take before it counts as failed.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all (1 means no retry).
    pub attempts: u32,
    pub base_delay: std::time::Duration,
    pub timeout: std::time::Duration,
    /// Where the retries are counted: each run starts its own.
    pub metrics: RequestMetrics,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base_delay: std::time::Duration::from_millis(200),
            timeout: std::time::Duration::from_secs(60),
            metrics: RequestMetrics::default(),
        }
    }
}

/// Requests counted by the store handles of one run (shared by its clones).
#[derive(Debug, Clone, Default)]
pub struct RequestMetrics {
    retries: Arc<AtomicU64>,
}

impl RequestMetrics {
    /// Requests tried again so far.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }
}

/// Errors that another attempt will not fix: the typed ones, a client error (4xx other than 408
/// and 429) that object_store reports only inside a generic error's text, and a TLS certificate
/// the endpoint's name or the machine's roots do not accept.
pub(crate) fn is_permanent(e: &object_store::Error) -> bool {
    use object_store::Error as E;
    if let E::Generic { .. } = e {
        let text = e.to_string();
        if crate::store::root_cause(e).to_string().contains("invalid peer certificate") {
            return true;
        }
        if let Some(i) = text.find("status code: ") {
            let code = &text[i + 13..text.len().min(i + 16)];
            return code.starts_with('4') && code != "408" && code != "429";
        }
        return false;
    }
    matches!(
        e,
        E::NotFound { .. }
            | E::PermissionDenied { .. }
            | E::Unauthenticated { .. }
            | E::InvalidPath { .. }
            | E::NotSupported { .. }
            | E::NotImplemented { .. }
            | E::Precondition { .. }
            | E::AlreadyExists { .. }
    )
}

/// Runs `f` until it succeeds, fails for good, or the attempts run out (backoff doubling each time).
pub async fn with_retries<T, F, Fut>(policy: &RetryPolicy, mut f: F) -> object_store::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = object_store::Result<T>>,
{
    let mut attempt = 0u32;
    loop {
        let result = match tokio::time::timeout(policy.timeout, f()).await {
            Ok(r) => r,
            Err(_) => Err(object_store::Error::Generic {
                store: "s3logs",
                source: format!("request timed out after {:?}", policy.timeout).into(),
            }),
        };
        match result {
            Ok(v) => return Ok(v),
            Err(e) if is_permanent(&e) || attempt + 1 >= policy.attempts.max(1) => return Err(e),
            Err(e) => {
                attempt += 1;
                back_off(policy, attempt, &describe(&e)).await;
            }
        }
    }
}

/// Counts and logs the `retry`-th retry (from 1), then waits: `base_delay`, doubling each time,
/// at most 10 s.
pub(crate) async fn back_off(policy: &RetryPolicy, retry: u32, error: &str) {
    policy.metrics.retries.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(attempt = retry, error, "retrying");
    let delay = policy.base_delay.saturating_mul(1 << (retry - 1).min(6));
    tokio::time::sleep(delay.min(std::time::Duration::from_secs(10))).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::generic;

    /// Another attempt is made for what may heal (throttling, 5xx, a refused connection), not for
    /// a client error or a certificate the endpoint will keep presenting.
    #[test]
    fn only_what_may_heal_is_tried_again() {
        assert!(!is_permanent(&generic("Server returned non-2xx status code: 503 Service Unavailable")));
        assert!(!is_permanent(&generic("Server returned non-2xx status code: 429 Too Many Requests")));
        assert!(!is_permanent(&generic("cannot reach https://127.0.0.1:1: Connection refused (os error 111)")));
        assert!(is_permanent(&generic("Server returned non-2xx status code: 403 Forbidden")));
        assert!(is_permanent(&generic(
            "cannot reach https://localhost:18443: invalid peer certificate: UnknownIssuer, after 10 retries"
        )));
    }
}
