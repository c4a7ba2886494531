//! Writing verified blobs into containerd's content store.
//!
//! A blob is streamed into an ingest (`Write` with a ref), hashed as it goes,
//! and committed only when its size and sha256 match the descriptor; otherwise
//! the ingest is aborted, so a tampered or truncated download leaves nothing.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use containerd_client::services::v1::{
    AbortRequest, Info, InfoRequest, UpdateRequest, WriteAction, WriteContentRequest,
};
use futures::Stream;
use futures::StreamExt;
use sha2::{Digest as _, Sha256};
use tokio_stream::wrappers::ReceiverStream;

use super::error::{ErrorKind, ImageError};
use crate::runtime::containerd::{Containerd, Lease};

/// How much we hand containerd per Write message.
const WRITE_CHUNK: usize = 1 << 20;

/// What a blob must be.
#[derive(Debug, Clone)]
pub struct Expected {
    pub digest: String,
    pub size: u64,
}

/// Serializes work on one digest inside this process, so two pulls sharing a
/// layer download it once (the second finds it committed).
#[derive(Default)]
pub struct DigestLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl DigestLocks {
    pub async fn lock(&self, digest: &str) -> DigestGuard<'_> {
        let lock = {
            let mut locks = self.locks.lock();
            locks.entry(digest.to_string()).or_default().clone()
        };
        let guard = lock.clone().lock_owned().await;
        DigestGuard {
            locks: self,
            digest: digest.to_string(),
            _guard: guard,
        }
    }
}

pub struct DigestGuard<'a> {
    locks: &'a DigestLocks,
    digest: String,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for DigestGuard<'_> {
    fn drop(&mut self) {
        // Forget the entry once nobody else waits on it, so the map stays small.
        let mut locks = self.locks.locks.lock();
        if let Some(lock) = locks.get(&self.digest)
            && Arc::strong_count(lock) <= 2
        {
            locks.remove(&self.digest);
        }
    }
}

pub async fn info(cd: &Containerd, digest: &str) -> Result<Option<Info>, ImageError> {
    let request = cd.request(InfoRequest {
        digest: digest.to_string(),
    });
    match cd.content().info(request).await {
        Ok(response) => Ok(response.into_inner().info),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
        Err(status) => Err(ImageError::containerd(
            format!("content info {digest}"),
            status,
        )),
    }
}

/// Adds labels to content that exists already.
pub async fn add_labels(
    cd: &Containerd,
    digest: &str,
    labels: &HashMap<String, String>,
) -> Result<(), ImageError> {
    if labels.is_empty() {
        return Ok(());
    }
    let request = cd.request(UpdateRequest {
        info: Some(Info {
            digest: digest.to_string(),
            labels: labels.clone(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: labels.keys().map(|k| format!("labels.{k}")).collect(),
        }),
    });
    cd.content()
        .update(request)
        .await
        .map_err(|s| ImageError::containerd(format!("labelling content {digest}"), s))?;
    Ok(())
}

/// Writes a blob we already hold in memory (manifests, configs).
pub async fn write_bytes(
    cd: &Containerd,
    lease: &Lease,
    expected: &Expected,
    bytes: Bytes,
    labels: HashMap<String, String>,
) -> Result<(), ImageError> {
    let stream = futures::stream::once(async move { Ok::<_, ImageError>(bytes) });
    write_stream(cd, lease, expected, stream, labels).await
}

/// Streams a blob into the content store, verifying size and digest before
/// the commit. Content that exists already only gets its labels added.
pub async fn write_stream<S>(
    cd: &Containerd,
    lease: &Lease,
    expected: &Expected,
    body: S,
    labels: HashMap<String, String>,
) -> Result<(), ImageError>
where
    S: Stream<Item = Result<Bytes, ImageError>> + Send,
{
    let ingest_ref = format!("deckhand-{}", expected.digest);
    // A stale ingest under our ref (from a crash) would make containerd resume
    // at its offset; start clean instead.
    abort(cd, &ingest_ref).await;
    let result = match write_ingest(cd, lease, &ingest_ref, expected, body, labels.clone()).await {
        // Committed meanwhile by someone else (containerd refuses a writer for
        // content it has): what we wanted is there; make sure of our labels.
        Err(e) if e.message.contains("already exists") => {
            add_labels(cd, &expected.digest, &labels).await
        }
        other => other,
    };
    if result.is_err() {
        abort(cd, &ingest_ref).await;
    }
    result
}

/// Removes an ingest if there is one. containerd may still hold it locked for
/// a moment after a stream ends, so a refusal is retried briefly.
async fn abort(cd: &Containerd, ingest_ref: &str) {
    for attempt in 0..10 {
        let request = cd.request(AbortRequest {
            r#ref: ingest_ref.to_string(),
        });
        match cd.content().abort(request).await {
            Ok(_) => return,
            Err(status) if status.code() == tonic::Code::NotFound => return,
            Err(status) => {
                tracing::debug!(%ingest_ref, %status, attempt, "aborting ingest");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
    tracing::warn!(%ingest_ref, "ingest left behind: containerd kept refusing to abort it");
}

async fn write_ingest<S>(
    cd: &Containerd,
    lease: &Lease,
    ingest_ref: &str,
    expected: &Expected,
    body: S,
    labels: HashMap<String, String>,
) -> Result<(), ImageError>
where
    S: Stream<Item = Result<Bytes, ImageError>> + Send,
{
    let what = || format!("writing {} to containerd", expected.digest);
    let (tx, rx) = tokio::sync::mpsc::channel::<WriteContentRequest>(2);
    let base = WriteContentRequest {
        r#ref: ingest_ref.to_string(),
        total: expected.size as i64,
        expected: expected.digest.clone(),
        ..Default::default()
    };
    // containerd answers the stream's headers only after the first message.
    tx.send(WriteContentRequest {
        action: WriteAction::Stat as i32,
        ..base.clone()
    })
    .await
    .map_err(|_| ImageError::internal(what()))?;
    let mut responses = cd
        .content()
        .write(cd.request_in(ReceiverStream::new(rx), Some(lease)))
        .await
        .map_err(|s| ImageError::containerd(what(), s))?
        .into_inner();
    let result = stream_into(&tx, &mut responses, base, expected, body, labels, &what()).await;
    if result.is_err() {
        // Close our side and wait for containerd to close its own: only then
        // has it let go of the ingest, so the caller's abort can remove it.
        drop(tx);
        while let Ok(Some(_)) = responses.message().await {}
    }
    result
}

/// Sends the body on an open Write stream, verifying as it goes; commits
/// only when size and digest match.
async fn stream_into<S>(
    tx: &tokio::sync::mpsc::Sender<WriteContentRequest>,
    responses: &mut tonic::Streaming<containerd_client::services::v1::WriteContentResponse>,
    base: WriteContentRequest,
    expected: &Expected,
    body: S,
    labels: HashMap<String, String>,
    what: &str,
) -> Result<(), ImageError>
where
    S: Stream<Item = Result<Bytes, ImageError>> + Send,
{
    next_response(responses, what).await?;

    let mut hasher = Sha256::new();
    let mut offset: u64 = 0;
    let mut pending = BytesMut::new();
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        if offset + pending.len() as u64 + chunk.len() as u64 > expected.size {
            return Err(ImageError::new(
                ErrorKind::Unavailable,
                format!(
                    "blob {} is larger than the {} bytes its descriptor declares",
                    expected.digest, expected.size
                ),
            ));
        }
        hasher.update(&chunk);
        pending.extend_from_slice(&chunk);
        if pending.len() >= WRITE_CHUNK {
            let data = pending.split().freeze();
            let len = data.len() as u64;
            tx.send(WriteContentRequest {
                action: WriteAction::Write as i32,
                offset: offset as i64,
                data: data.to_vec(),
                ..base.clone()
            })
            .await
            .map_err(|_| ImageError::internal(what))?;
            next_response(responses, what).await?;
            offset += len;
        }
    }
    let total = offset + pending.len() as u64;
    if total != expected.size {
        return Err(ImageError::new(
            ErrorKind::Unavailable,
            format!(
                "blob {} is truncated: got {total} of {} bytes",
                expected.digest, expected.size
            ),
        ));
    }
    let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
    if actual != expected.digest {
        return Err(ImageError::new(
            ErrorKind::Unavailable,
            format!(
                "blob digest mismatch: expected {}, got {actual}",
                expected.digest
            ),
        ));
    }
    tx.send(WriteContentRequest {
        action: WriteAction::Commit as i32,
        offset: offset as i64,
        data: pending.to_vec(),
        labels,
        ..base.clone()
    })
    .await
    .map_err(|_| ImageError::internal(what))?;
    next_response(responses, what).await
}

async fn next_response(
    responses: &mut tonic::Streaming<containerd_client::services::v1::WriteContentResponse>,
    what: &str,
) -> Result<(), ImageError> {
    match responses.message().await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(ImageError::internal(format!("{what}: stream closed"))),
        Err(s) => Err(ImageError::containerd(what, s)),
    }
}
