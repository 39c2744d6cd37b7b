//! Bounded retries of blob calls: transient failures (the service
//! unreachable, 5xx, 408, 429) are tried again with exponential backoff
//! until the configured attempts are spent; anything else (authentication,
//! a missing blob, a failed precondition) is returned at once. The last
//! error is returned as is, so the caller names the real cause.

use std::future::Future;
use std::time::Duration;

use azure_core::error::ErrorKind;
/// How often and how patiently a blob call is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included (at least 1).
    pub attempts: u32,
    /// Wait before the first retry; doubled each time, up to `max_delay`.
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Six tries over about 15 s: long enough to ride out a restart of the
    /// service, short enough that an outage is reported while it matters.
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed try `n` (1-based).
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// Whether trying again may help.
pub fn is_transient(error: &azure_core::Error) -> bool {
    match error.kind() {
        ErrorKind::HttpResponse { status, .. } => {
            let code = u16::from(*status);
            code >= 500 || code == 408 || code == 429
        }
        ErrorKind::Io => true,
        _ => false,
    }
}

/// The HTTP status of a failed call, when the service answered.
pub fn status_of(error: &azure_core::Error) -> Option<u16> {
    match error.kind() {
        ErrorKind::HttpResponse { status, .. } => Some(u16::from(*status)),
        _ => None,
    }
}

/// Runs `call` until it succeeds, fails for good, or `policy` is spent.
/// `what` names the call in the log line of each retry.
pub async fn retry<T, F, Fut>(
    policy: &RetryPolicy,
    what: &str,
    mut call: F,
) -> azure_core::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = azure_core::Result<T>>,
{
    let mut tried = 0;
    loop {
        tried += 1;
        match call().await {
            Ok(value) => return Ok(value),
            Err(e) if tried < policy.attempts.max(1) && is_transient(&e) => {
                let wait = policy.delay(tried);
                tracing::warn!(call = what, attempt = tried, error = %e, ?wait, "blob call failed, retrying");
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let p = RetryPolicy {
            attempts: 10,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
        };
        let delays: Vec<u128> = (1..=5).map(|n| p.delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        assert_eq!(p.delay(200), Duration::from_millis(500));
    }

    #[tokio::test]
    async fn only_transient_errors_are_retried_and_within_bounds() {
        let p = RetryPolicy {
            attempts: 3,
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        };
        let http = |code: u16| {
            let status = azure_core::StatusCode::try_from(code).unwrap();
            azure_core::Error::new(ErrorKind::http_response(status, None), "x")
        };
        let mut calls = 0;
        let r: azure_core::Result<()> = retry(&p, "t", || {
            calls += 1;
            let e = http(503);
            async move { Err(e) }
        })
        .await;
        assert_eq!((status_of(&r.unwrap_err()), calls), (Some(503), 3));
        let mut calls = 0;
        let r: azure_core::Result<()> = retry(&p, "t", || {
            calls += 1;
            let e = http(403);
            async move { Err(e) }
        })
        .await;
        assert_eq!((status_of(&r.unwrap_err()), calls), (Some(403), 1));
        let mut calls = 0;
        let r = retry(&p, "t", || {
            calls += 1;
            let out = if calls < 2 { Err(http(500)) } else { Ok(7) };
            async move { out }
        })
        .await;
        assert_eq!((r.unwrap(), calls), (7, 2));
    }
}
