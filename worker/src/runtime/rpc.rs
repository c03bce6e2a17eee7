//! Calls to the coordinator that survive its restarts: transient failures (unreachable,
//! restarting, a call lost in flight) are retried with backoff for a bounded time; answers
//! (a stale epoch, an unknown worker, a bad request) are returned at once.

use std::future::Future;
use std::time::Duration;

use tonic::{Code, Status};

/// Whether a failed call may succeed if made again.
pub fn transient(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable
            | Code::Unknown
            | Code::Cancelled
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Internal
    )
}

/// Makes `call` until it answers, each try bounded by `per_call`, retrying transient failures
/// with backoff (100 ms doubling to 2 s) for at most `give_up_after`.
pub async fn retrying<T, F, Fut>(
    what: &str,
    per_call: Duration,
    give_up_after: Duration,
    mut call: F,
) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let deadline = tokio::time::Instant::now() + give_up_after;
    let mut pause = Duration::from_millis(100);
    loop {
        let result = match tokio::time::timeout(per_call, call()).await {
            Ok(r) => r,
            Err(_) => {
                Err(Status::deadline_exceeded(format!("{what}: no answer within {per_call:?}")))
            }
        };
        match result {
            Err(s) if transient(&s) && tokio::time::Instant::now() < deadline => {
                tracing::debug!(call = what, error = %s.message(), "retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn retries_transient_failures_only() {
        let n = AtomicU32::new(0);
        let r = retrying("t", Duration::from_secs(1), Duration::from_secs(5), || async {
            if n.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(Status::unavailable("down"))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(r.unwrap(), 7);
        assert_eq!(n.load(Ordering::SeqCst), 3);
        let m = AtomicU32::new(0);
        let r: Result<(), Status> =
            retrying("t", Duration::from_secs(1), Duration::from_secs(5), || async {
                m.fetch_add(1, Ordering::SeqCst);
                Err(Status::failed_precondition("stale epoch"))
            })
            .await;
        assert_eq!(r.unwrap_err().code(), Code::FailedPrecondition);
        assert_eq!(m.load(Ordering::SeqCst), 1);
    }
}
