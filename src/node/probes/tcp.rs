//! tcpSocket probes: success is a completed TCP handshake within the timeout.

use std::time::Duration;

use super::results::Outcome;

pub async fn probe(host: &str, port: u16, timeout: Duration) -> Outcome {
    let addr = super::join_host_port(host, port);
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr)).await {
        // The kubelet closes the connection at once; dropping it does.
        Ok(Ok(_)) => Outcome::Success,
        Ok(Err(e)) => Outcome::Failure(format!("dial tcp {addr}: connect: {e}")),
        Err(_) => Outcome::Failure(format!("dial tcp {addr}: i/o timeout")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_open_port_passes_and_a_closed_one_fails() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(
            probe("127.0.0.1", port, Duration::from_secs(1)).await,
            Outcome::Success
        );
        drop(listener);
        match probe("127.0.0.1", port, Duration::from_secs(1)).await {
            Outcome::Failure(m) => assert!(m.contains("refused"), "{m}"),
            other => panic!("a closed port passed: {other:?}"),
        }
    }
}
