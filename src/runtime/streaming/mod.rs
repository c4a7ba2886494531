//! Streaming: exec, attach and port forwarding over the Kubernetes streaming
//! protocols. The protocol code (SPDY framing, the remotecommand and
//! portforward protocols, the WebSocket variants) knows nothing of
//! containers, so the apiserver can reuse it; [`server`] ties it to the
//! container and sandbox managers.

pub mod portforward;
pub mod remotecommand;
pub mod server;
pub mod spdy;
pub mod tokens;
