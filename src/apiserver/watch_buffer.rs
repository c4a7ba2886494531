//! What a watch has encoded but its client has not yet taken, bounded in
//! bytes. Encoded lines are per watcher (the store's events are shared), so
//! without a bound 500 watchers that never read, each 64 large events
//! behind, hold gigabytes. A watcher whose client takes nothing for
//! `STALL_LIMIT` is closed, as kube-apiserver closes a watcher that falls
//! behind; its client re-watches or re-lists.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// Bytes one watcher may have encoded and not yet handed to its connection.
/// One line larger than this still goes, alone.
pub const BUDGET_BYTES: usize = 256 << 10;
/// How long a send may wait for the client to make room.
const STALL_LIMIT: Duration = Duration::from_secs(30);

/// The watch task's end.
pub struct LineSender {
    tx: mpsc::Sender<(Bytes, OwnedSemaphorePermit)>,
    budget: Arc<Semaphore>,
    budget_bytes: usize,
    stall_limit: Duration,
}

/// The watch ended: the client went away or stalled past the limit.
#[derive(Debug)]
pub struct Closed;

/// A sender and the stream of frames the response body reads.
pub fn channel() -> (LineSender, impl Stream<Item = Result<Bytes, Infallible>>) {
    with_limits(BUDGET_BYTES, STALL_LIMIT)
}

fn with_limits(
    budget_bytes: usize,
    stall_limit: Duration,
) -> (LineSender, impl Stream<Item = Result<Bytes, Infallible>>) {
    // The line count bounds small lines; the permits bound big ones.
    let (tx, rx) = mpsc::channel(64);
    let stream = futures::StreamExt::map(
        tokio_stream::wrappers::ReceiverStream::new(rx),
        // The permit drops here: the connection has the bytes now.
        |(line, _permit): (Bytes, OwnedSemaphorePermit)| Ok(line),
    );
    let sender = LineSender {
        tx,
        budget: Arc::new(Semaphore::new(budget_bytes)),
        budget_bytes,
        stall_limit,
    };
    (sender, stream)
}

impl LineSender {
    pub async fn send(&self, line: Bytes) -> Result<(), Closed> {
        // u32 permits: the budget is far below u32::MAX.
        let cost = line.len().clamp(1, self.budget_bytes) as u32;
        let reserve = async {
            // Waiting for room ends as soon as the client goes away.
            let permit = tokio::select! {
                permit = Arc::clone(&self.budget).acquire_many_owned(cost) => {
                    permit.map_err(|_| Closed)?
                }
                _ = self.tx.closed() => return Err(Closed),
            };
            self.tx.send((line, permit)).await.map_err(|_| Closed)
        };
        match tokio::time::timeout(self.stall_limit, reserve).await {
            Ok(sent) => sent,
            Err(_) => {
                tracing::debug!("watch client stalled: closing the watch");
                Err(Closed)
            }
        }
    }

    /// One line in several pieces (shared bytes among them), in order.
    pub async fn send_parts(&self, parts: Vec<Bytes>) -> Result<(), Closed> {
        for part in parts {
            self.send(part).await?;
        }
        Ok(())
    }

    /// Resolves when the client has gone away.
    pub async fn closed(&self) {
        self.tx.closed().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn a_client_that_takes_nothing_is_closed_once_the_budget_is_full() {
        let (tx, mut stream) = with_limits(10, Duration::from_millis(50));
        tx.send(Bytes::from_static(b"12345")).await.unwrap();
        tx.send(Bytes::from_static(b"12345")).await.unwrap();
        // Full: the third line waits for room that never comes.
        assert!(tx.send(Bytes::from_static(b"x")).await.is_err());
        // What was queued is still delivered, in order.
        assert_eq!(stream.next().await.unwrap().unwrap(), "12345");
    }

    #[tokio::test]
    async fn taking_a_line_makes_room_for_the_next() {
        let (tx, mut stream) = with_limits(10, Duration::from_secs(5));
        tx.send(Bytes::from_static(b"1234567890")).await.unwrap();
        // The reader keeps the stream open: the client is still there.
        let reader = tokio::spawn(async move {
            let first = stream.next().await.unwrap().unwrap();
            (first, stream)
        });
        tx.send(Bytes::from_static(b"abcdefghij")).await.unwrap();
        let (first, mut stream) = reader.await.unwrap();
        assert_eq!(first, "1234567890");
        assert_eq!(stream.next().await.unwrap().unwrap(), "abcdefghij");
    }

    #[tokio::test]
    async fn a_send_waiting_for_room_ends_when_the_client_goes() {
        let (tx, stream) = with_limits(4, Duration::from_secs(60));
        tx.send(Bytes::from_static(b"1234")).await.unwrap();
        let dropper = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(stream);
        };
        let (sent, ()) = tokio::join!(tx.send(Bytes::from_static(b"x")), dropper);
        assert!(sent.is_err());
    }

    #[tokio::test]
    async fn a_line_larger_than_the_budget_still_goes_alone() {
        let (tx, mut stream) = with_limits(4, Duration::from_millis(50));
        let big = Bytes::from(vec![b'x'; 100]);
        // Costs the whole budget (clamped), not more than exists.
        tx.send(big.clone()).await.unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap(), big);
    }
}
