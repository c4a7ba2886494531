//! Oversized gRPC messages on the CRI socket answer as containerd's CRI does:
//! ResourceExhausted, "grpc: received message larger than max (N vs. M)" for a
//! request and "grpc: trying to send message larger than max (N vs. M)" for a
//! reply, at containerd's 16 MiB; the connection keeps serving. The server
//! here is `deckhand::cri::serve` over a fake runtime: no root needed.

use std::sync::Arc;
use std::time::Duration;

use deckhand::cri::api::{CriError, ImageService, RuntimeService};
use deckhand::cri::v1 as cri;

#[path = "common/grpc.rs"]
mod grpc;

const LIMIT: usize = deckhand::cri::MAX_MESSAGE_BYTES;

struct Fake;

#[async_trait::async_trait]
impl RuntimeService for Fake {
    async fn version(
        &self,
        request: cri::VersionRequest,
    ) -> Result<cri::VersionResponse, CriError> {
        Ok(cri::VersionResponse {
            version: request.version.chars().take(16).collect(),
            runtime_name: "fake".into(),
            ..Default::default()
        })
    }

    async fn list_containers(
        &self,
        _request: cri::ListContainersRequest,
    ) -> Result<cri::ListContainersResponse, CriError> {
        // One reply just past the limit.
        Ok(cri::ListContainersResponse {
            containers: vec![cri::Container {
                id: "x".repeat(LIMIT + 1),
                ..Default::default()
            }],
        })
    }
}

#[async_trait::async_trait]
impl ImageService for Fake {}

async fn serve() -> (
    tempfile::TempDir,
    deckhand::cri::client::CriClient,
    tokio::sync::oneshot::Sender<()>,
) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("cri.sock");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let fake = Arc::new(Fake);
    let path = socket.clone();
    tokio::spawn(async move {
        deckhand::cri::serve(&path, fake.clone(), fake, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    for _ in 0..200 {
        if socket.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut client = deckhand::cri::client::connect(&socket).await.unwrap();
    // Our client may receive more than the server sends, so that the reply
    // case is the server's refusal, not the client's.
    client.runtime = client.runtime.max_decoding_message_size(4 * LIMIT);
    (dir, client, stop)
}

#[tokio::test]
async fn an_oversized_request_is_resource_exhausted_and_the_connection_serves_on() {
    let (_dir, mut client, _stop) = serve().await;
    let huge = cri::VersionRequest {
        version: "v".repeat(LIMIT + 10),
    };
    let encoded = prost::Message::encoded_len(&huge);
    let status = client.runtime.version(huge).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert_eq!(
        status.message(),
        format!("grpc: received message larger than max ({encoded} vs. {LIMIT})")
    );
    // The same channel (one connection) answers the next call.
    let version = client
        .runtime
        .version(cri::VersionRequest {
            version: "v1".into(),
        })
        .await
        .expect("a normal call after the refused one")
        .into_inner();
    assert_eq!(version.runtime_name, "fake");
    // A request of exactly the limit is served.
    let at_limit = "v".repeat(LIMIT - 5);
    let request = cri::VersionRequest { version: at_limit };
    assert_eq!(prost::Message::encoded_len(&request), LIMIT);
    client.runtime.version(request).await.expect("at the limit");
}

#[tokio::test]
async fn an_oversized_reply_is_resource_exhausted_and_the_connection_serves_on() {
    let (_dir, mut client, _stop) = serve().await;
    let status = client
        .runtime
        .list_containers(cri::ListContainersRequest::default())
        .await
        .unwrap_err();
    grpc::assert_exhausted(&status, "grpc: trying to send message larger than max (");
    assert!(
        status.message().ends_with(&format!(" vs. {LIMIT})")),
        "{}",
        status.message()
    );
    grpc::assert_serves_on(&mut client, "a normal call after the refused reply").await;
}
