//! Assertions on the CRI socket's gRPC answers, shared by tests/cri_socket.rs
//! (a `deckhand cri` child) and tests/cri_limits.rs (the server over a fake,
//! which includes this file alone by `#[path]`).

use deckhand::cri::client::CriClient;
use deckhand::cri::v1 as cri;

/// `status` is the answer containerd's CRI gives an oversized message:
/// ResourceExhausted, with a message that starts with `prefix` (the rest
/// names the sizes).
pub fn assert_exhausted(status: &tonic::Status, prefix: &str) {
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().starts_with(prefix), "{}", status.message());
}

/// The same channel (one connection) answers the next Version call after a
/// refused one.
pub async fn assert_serves_on(client: &mut CriClient, what: &str) -> cri::VersionResponse {
    client
        .runtime
        .version(cri::VersionRequest::default())
        .await
        .expect(what)
        .into_inner()
}
