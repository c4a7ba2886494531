//! grpc probes: grpc.health.v1.Health/Check over plaintext HTTP/2 against
//! the pod IP, as the kubelet's gRPC prober; SERVING passes. The two
//! messages are written out here rather than generated: they are all of
//! the protocol the prober needs.

use std::time::Duration;

use tonic::transport::Endpoint;

use super::results::Outcome;

pub const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    pub service: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckResponse {
    #[prost(enumeration = "ServingStatus", tag = "1")]
    pub status: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ServingStatus {
    Unknown = 0,
    Serving = 1,
    NotServing = 2,
    ServiceUnknown = 3,
}

impl ServingStatus {
    fn go_name(self) -> &'static str {
        match self {
            ServingStatus::Unknown => "UNKNOWN",
            ServingStatus::Serving => "SERVING",
            ServingStatus::NotServing => "NOT_SERVING",
            ServingStatus::ServiceUnknown => "SERVICE_UNKNOWN",
        }
    }
}

pub async fn probe(host: &str, port: u16, service: &str, timeout: Duration) -> Outcome {
    let addr = super::join_host_port(host, port);
    match tokio::time::timeout(timeout, check(&addr, service, timeout)).await {
        Ok(out) => out,
        Err(_) => Outcome::Failure(format!(
            "timeout: health rpc did not complete within {timeout:?}"
        )),
    }
}

async fn check(addr: &str, service: &str, timeout: Duration) -> Outcome {
    let endpoint = match Endpoint::from_shared(format!("http://{addr}")) {
        Ok(e) => e
            .connect_timeout(timeout)
            .timeout(timeout)
            .user_agent(super::http::USER_AGENT_VALUE)
            .expect("a static user agent is a valid header"),
        Err(e) => return Outcome::Failure(format!("invalid address {addr:?}: {e}")),
    };
    let channel = match endpoint.connect().await {
        Ok(c) => c,
        Err(e) => {
            return Outcome::Failure(format!(
                "timeout: failed to connect service {addr:?} within {timeout:?}: {e}"
            ));
        }
    };
    let mut grpc = tonic::client::Grpc::new(channel);
    if let Err(e) = grpc.ready().await {
        return Outcome::Failure(format!("health rpc to {addr:?}: {e}"));
    }
    let request = tonic::Request::new(HealthCheckRequest {
        service: service.to_string(),
    });
    let path = http::uri::PathAndQuery::from_static(CHECK_PATH);
    let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default();
    match grpc.unary(request, path, codec).await {
        Ok(r) => {
            let status =
                ServingStatus::try_from(r.get_ref().status).unwrap_or(ServingStatus::Unknown);
            if status == ServingStatus::Serving {
                Outcome::Success
            } else {
                Outcome::Failure(format!(
                    "service unhealthy (responded with {:?})",
                    status.go_name()
                ))
            }
        }
        Err(s) if s.code() == tonic::Code::Unimplemented => Outcome::Failure(
            "this server does not implement the grpc health protocol (grpc.health.v1.Health)"
                .into(),
        ),
        Err(s) => Outcome::Failure(format!(
            "health rpc probe failed: {:?}: {}",
            s.code(),
            s.message()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::task::{Context, Poll};

    /// A grpc.health.v1 server: service name -> status.
    #[derive(Clone)]
    struct Health(Arc<HashMap<String, ServingStatus>>);

    struct Check(Arc<HashMap<String, ServingStatus>>);

    impl tonic::server::UnaryService<HealthCheckRequest> for Check {
        type Response = HealthCheckResponse;
        type Future =
            futures::future::Ready<Result<tonic::Response<Self::Response>, tonic::Status>>;
        fn call(&mut self, req: tonic::Request<HealthCheckRequest>) -> Self::Future {
            let out = match self.0.get(&req.get_ref().service) {
                Some(s) => Ok(tonic::Response::new(HealthCheckResponse {
                    status: *s as i32,
                })),
                None => Err(tonic::Status::not_found("unknown service")),
            };
            futures::future::ready(out)
        }
    }

    impl tower::Service<http::Request<tonic::body::Body>> for Health {
        type Response = http::Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = futures::future::BoxFuture<'static, Result<Self::Response, Infallible>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
            let map = self.0.clone();
            Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                Ok(grpc.unary(Check(map), req).await)
            })
        }
    }

    impl tonic::server::NamedService for Health {
        const NAME: &'static str = "grpc.health.v1.Health";
    }

    async fn serve(map: HashMap<String, ServingStatus>) -> (u16, tokio::sync::oneshot::Sender<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(Health(Arc::new(map)))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                }),
        );
        (port, stop)
    }

    #[tokio::test]
    async fn serving_passes_and_everything_else_fails() {
        let (port, _stop) = serve(
            [
                (String::new(), ServingStatus::Serving),
                ("down".to_string(), ServingStatus::NotServing),
            ]
            .into(),
        )
        .await;
        let t = Duration::from_secs(2);
        assert_eq!(probe("127.0.0.1", port, "", t).await, Outcome::Success);
        match probe("127.0.0.1", port, "down", t).await {
            Outcome::Failure(m) => assert!(m.contains("NOT_SERVING"), "{m}"),
            o => panic!("NOT_SERVING passed: {o:?}"),
        }
        match probe("127.0.0.1", port, "other", t).await {
            Outcome::Failure(m) => assert!(m.contains("NotFound"), "{m}"),
            o => panic!("an unknown service passed: {o:?}"),
        }
    }

    #[tokio::test]
    async fn a_closed_port_fails_within_the_timeout() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let start = std::time::Instant::now();
        let out = probe("127.0.0.1", port, "", Duration::from_secs(1)).await;
        assert!(matches!(out, Outcome::Failure(_)), "{out:?}");
        assert!(start.elapsed() < Duration::from_secs(3));
    }
}
