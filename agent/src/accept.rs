//! The accept step every listener of the agent shares.

use std::future::Future;
use std::time::Duration;

/// How long a listener waits after a failed accept before it tries again.
const BACK_OFF: Duration = Duration::from_millis(100);

/// The next connection `accept` gives. A failed accept (EMFILE and
/// friends) is logged with `what` and retried after [`BACK_OFF`] instead
/// of spinning.
pub async fn next_connection<T, F, Fut>(what: &str, mut accept: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::io::Result<T>>,
{
    loop {
        match accept().await {
            Ok(c) => return c,
            Err(e) => {
                tracing::warn!(error = %e, "{what}: accept failed");
                tokio::time::sleep(BACK_OFF).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_accept_is_retried_until_one_succeeds() {
        let mut tries = 0;
        let got = next_connection("test", || {
            tries += 1;
            let n = tries;
            async move {
                if n < 3 {
                    Err(std::io::Error::other("EMFILE"))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(got, 3);
    }
}
