//! Bounded retries of blob calls, the one rule both the export destination
//! and the import source follow: transient failures (the service
//! unreachable, a try without answer, 5xx, 408, 429) are tried again with
//! exponential backoff until the time budget is spent; anything else
//! (authentication, a missing blob, a failed precondition) is returned at
//! once. The last failure is returned with how long was tried, so the
//! caller names the real cause.

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use azure_core::error::ErrorKind;

/// How patiently a blob call is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// How long, from the first try, a failing call is tried again.
    pub budget: Duration,
    /// Wait before the first retry; doubled each time, up to `max_delay`.
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// A try with no answer by then counts as a transient failure.
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    /// A minute: long enough to ride out a restart of the service, short
    /// enough that an outage is reported while it matters.
    fn default() -> Self {
        RetryPolicy::within(Duration::from_secs(60))
    }
}

impl RetryPolicy {
    pub fn within(budget: Duration) -> Self {
        RetryPolicy {
            budget,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(60),
        }
    }

    /// The wait after failed try `n` (1-based).
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// Why the last try failed.
#[derive(Debug)]
pub enum Failure {
    Service(azure_core::Error),
    NoAnswer(Duration),
}

/// A call that failed for good: its last failure, after how many tries.
#[derive(Debug)]
pub struct GaveUp {
    pub failure: Failure,
    pub attempts: u32,
    pub elapsed: Duration,
}

impl GaveUp {
    pub fn error(&self) -> Option<&azure_core::Error> {
        match &self.failure {
            Failure::Service(e) => Some(e),
            Failure::NoAnswer(_) => None,
        }
    }

    /// The HTTP status, when the service answered.
    pub fn status(&self) -> Option<u16> {
        self.error().and_then(status_of)
    }

    /// The service's error code (`ContainerNotFound`, ...), when it gave one.
    pub fn code(&self) -> Option<&str> {
        self.error().and_then(error_code)
    }
}

/// `HTTP 403 AuthenticationFailed`, or the network error with its sources,
/// then `(gave up after N attempts in S s)` when it was retried.
impl fmt::Display for GaveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.failure {
            Failure::Service(e) => f.write_str(&cause(e))?,
            Failure::NoAnswer(after) => write!(f, "no answer within {after:?}")?,
        }
        if self.attempts > 1 {
            write!(
                f,
                " (gave up after {} attempts in {:.1} s)",
                self.attempts,
                self.elapsed.as_secs_f64()
            )?;
        }
        Ok(())
    }
}

/// Whether trying again may help: network failures, throttling and server
/// errors, and a container of that name still being deleted.
pub fn is_transient(error: &azure_core::Error) -> bool {
    match error.kind() {
        ErrorKind::HttpResponse { status, error_code } => {
            let code = u16::from(*status);
            code >= 500
                || code == 408
                || code == 429
                || error_code.as_deref() == Some("ContainerBeingDeleted")
        }
        ErrorKind::Io => true,
        _ => false,
    }
}

pub fn status_of(error: &azure_core::Error) -> Option<u16> {
    match error.kind() {
        ErrorKind::HttpResponse { status, .. } => Some(u16::from(*status)),
        _ => None,
    }
}

pub fn error_code(error: &azure_core::Error) -> Option<&str> {
    match error.kind() {
        ErrorKind::HttpResponse { error_code, .. } => error_code.as_deref(),
        _ => None,
    }
}

/// `HTTP 403 AuthenticationFailed`, or the error with its sources (where a
/// network error says what happened: `connection refused`...).
pub fn cause(e: &azure_core::Error) -> String {
    if let ErrorKind::HttpResponse { status, error_code } = e.kind() {
        return match error_code {
            Some(code) => format!("HTTP {} {code}", u16::from(*status)),
            None => format!("HTTP {}", u16::from(*status)),
        };
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// Runs `call` until it succeeds, fails for good, or the budget is spent.
/// `what` names the call in the log line of each retry.
pub async fn retry<T, F, Fut>(policy: &RetryPolicy, what: &str, mut call: F) -> Result<T, GaveUp>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = azure_core::Result<T>>,
{
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let (failure, transient) = match tokio::time::timeout(policy.attempt_timeout, call()).await
        {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => {
                let transient = is_transient(&e);
                (Failure::Service(e), transient)
            }
            Err(_) => (Failure::NoAnswer(policy.attempt_timeout), true),
        };
        let elapsed = started.elapsed();
        let gave_up = GaveUp {
            failure,
            attempts,
            elapsed,
        };
        if !transient || elapsed >= policy.budget {
            return Err(gave_up);
        }
        let wait = policy.delay(attempts).min(policy.budget - elapsed);
        tracing::warn!(call = what, attempt = attempts, cause = %gave_up, ?wait, "blob call failed, retrying");
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(code: u16) -> azure_core::Error {
        let status = azure_core::StatusCode::try_from(code).unwrap();
        azure_core::Error::new(ErrorKind::http_response(status, None), "x")
    }

    fn quick(budget_ms: u64) -> RetryPolicy {
        RetryPolicy {
            budget: Duration::from_millis(budget_ms),
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
            attempt_timeout: Duration::from_millis(200),
        }
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let p = RetryPolicy {
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
            ..RetryPolicy::default()
        };
        let delays: Vec<u128> = (1..=5).map(|n| p.delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        assert_eq!(p.delay(200), Duration::from_millis(500));
    }

    #[tokio::test]
    async fn only_transient_failures_are_retried_and_within_the_budget() {
        let mut calls = 0;
        let started = Instant::now();
        let r: Result<(), _> = retry(&quick(50), "t", || {
            calls += 1;
            let e = http(503);
            async move { Err(e) }
        })
        .await;
        let gave_up = r.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!((gave_up.status(), gave_up.attempts), (Some(503), calls));
        assert!(calls > 2, "{calls}");
        assert!(gave_up.to_string().starts_with("HTTP 503 (gave up after"));

        let mut calls = 0;
        let r: Result<(), _> = retry(&quick(50), "t", || {
            calls += 1;
            let e = http(403);
            async move { Err(e) }
        })
        .await;
        let refused = r.unwrap_err();
        assert_eq!((refused.status(), calls), (Some(403), 1));
        assert_eq!(refused.to_string(), "HTTP 403");

        let mut calls = 0;
        let r = retry(&quick(1_000), "t", || {
            calls += 1;
            let out = if calls < 2 { Err(http(500)) } else { Ok(7) };
            async move { out }
        })
        .await;
        assert_eq!((r.unwrap(), calls), (7, 2));
    }

    #[tokio::test]
    async fn a_try_without_answer_is_abandoned_and_retried() {
        let mut policy = quick(300);
        policy.attempt_timeout = Duration::from_millis(20);
        let r: Result<(), _> = retry(&policy, "t", || async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok(())
        })
        .await;
        let gave_up = r.unwrap_err();
        assert!(matches!(gave_up.failure, Failure::NoAnswer(_)));
        assert!(gave_up.attempts > 1);
        assert!(gave_up.elapsed < Duration::from_secs(2));
    }
}
