//! Finding a pod's container in the runtime (by the kubelet's labels, so
//! any CRI runtime answers), and `/containerLogs/{ns}/{pod}/{container}`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::logs::{self, LogOptions, OptionsError, StillRunning};
use super::{Body, Server, query, text};
use crate::cri::api::{RuntimeService, v1};
use crate::node::podspec::labels;

/// How long one CRI call on this path may take.
const CRI_TIMEOUT: Duration = Duration::from_secs(10);

/// A request the API refuses, with the kubelet's status and text.
#[derive(Debug)]
pub struct Refusal(pub StatusCode, pub String);

impl Refusal {
    pub fn into_response(self) -> Response<Body> {
        text(self.0, self.1)
    }
}

fn cri_failed(what: &str, e: impl std::fmt::Display) -> Refusal {
    Refusal(StatusCode::INTERNAL_SERVER_ERROR, format!("{what}: {e}"))
}

/// The containers named `container` of pod `ns/pod` (a uid, when given,
/// must match), newest first.
pub async fn find_containers(
    runtime: &dyn RuntimeService,
    ns: &str,
    pod: &str,
    uid: Option<&str>,
    container: &str,
) -> Result<Vec<v1::Container>, Refusal> {
    let mut selector = std::collections::HashMap::from([
        (labels::POD_NAMESPACE.to_string(), ns.to_string()),
        (labels::POD_NAME.to_string(), pod.to_string()),
    ]);
    if let Some(u) = uid.filter(|u| !u.is_empty()) {
        selector.insert(labels::POD_UID.to_string(), u.to_string());
    }
    let sandboxes = tokio::time::timeout(
        CRI_TIMEOUT,
        runtime.list_pod_sandbox(v1::ListPodSandboxRequest {
            filter: Some(v1::PodSandboxFilter {
                label_selector: selector.clone(),
                ..Default::default()
            }),
        }),
    )
    .await
    .map_err(|_| cri_failed("ListPodSandbox", "timed out"))?
    .map_err(|e| cri_failed("ListPodSandbox", e))?;
    if sandboxes.items.is_empty() {
        return Err(Refusal(
            StatusCode::NOT_FOUND,
            format!("pod \"{pod}\" does not exist"),
        ));
    }
    selector.insert(labels::CONTAINER_NAME.to_string(), container.to_string());
    let listed = tokio::time::timeout(
        CRI_TIMEOUT,
        runtime.list_containers(v1::ListContainersRequest {
            filter: Some(v1::ContainerFilter {
                label_selector: selector,
                ..Default::default()
            }),
        }),
    )
    .await
    .map_err(|_| cri_failed("ListContainers", "timed out"))?
    .map_err(|e| cri_failed("ListContainers", e))?;
    let mut found = listed.containers;
    if found.is_empty() {
        return Err(Refusal(
            StatusCode::NOT_FOUND,
            format!("container \"{container}\" not found in pod \"{pod}\""),
        ));
    }
    found.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    Ok(found)
}

pub async fn container_status(
    runtime: &dyn RuntimeService,
    id: &str,
) -> Result<v1::ContainerStatus, Refusal> {
    let resp = tokio::time::timeout(
        CRI_TIMEOUT,
        runtime.container_status(v1::ContainerStatusRequest {
            container_id: id.to_string(),
            verbose: false,
        }),
    )
    .await
    .map_err(|_| cri_failed("ContainerStatus", "timed out"))?
    .map_err(|e| cri_failed("ContainerStatus", e))?;
    resp.status
        .ok_or_else(|| cri_failed("ContainerStatus", "no status"))
}

/// Follow ends once the container is not running (exited, or removed).
struct Running {
    runtime: Arc<dyn RuntimeService>,
    id: String,
}

impl StillRunning for Running {
    async fn check(&mut self) -> bool {
        match container_status(self.runtime.as_ref(), &self.id).await {
            Ok(s) => s.state == v1::ContainerState::ContainerRunning as i32,
            Err(_) => false,
        }
    }
}

pub async fn container_logs(
    server: Arc<Server>,
    req: &Request<Incoming>,
    ns: &str,
    pod: &str,
    container: &str,
) -> Response<Body> {
    match logs_response(server, req, ns, pod, container).await {
        Ok(r) => r,
        Err(refusal) => refusal.into_response(),
    }
}

async fn logs_response(
    server: Arc<Server>,
    req: &Request<Incoming>,
    ns: &str,
    pod: &str,
    container: &str,
) -> Result<Response<Body>, Refusal> {
    let opts = LogOptions::parse(&query(req), k8s_openapi::jiff::Timestamp::now()).map_err(
        |e| match e {
            OptionsError::BadRequest(m) => Refusal(StatusCode::BAD_REQUEST, m),
            OptionsError::Invalid(m) => Refusal(StatusCode::UNPROCESSABLE_ENTITY, m),
        },
    )?;
    let found = find_containers(server.runtime.as_ref(), ns, pod, None, container).await?;
    let chosen = if opts.previous {
        found.get(1).ok_or_else(|| {
            Refusal(
                StatusCode::BAD_REQUEST,
                format!("previous terminated container \"{container}\" in pod \"{pod}\" not found"),
            )
        })?
    } else {
        &found[0]
    };
    let status = container_status(server.runtime.as_ref(), &chosen.id).await?;
    if status.log_path.is_empty() {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            format!("container \"{container}\" in pod \"{pod}\" has no log file"),
        ));
    }
    let current = std::path::PathBuf::from(&status.log_path);
    if !current.exists() && status.state == v1::ContainerState::ContainerCreated as i32 {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            format!(
                "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
            ),
        ));
    }
    let permit = server.streams.clone().try_acquire_owned().map_err(|_| {
        Refusal(
            StatusCode::TOO_MANY_REQUESTS,
            "too many log streams at once".into(),
        )
    })?;
    let files = logs::log_files(&current);
    let mut opts = opts;
    // A container that is not running has nothing more to follow.
    opts.follow &= status.state == v1::ContainerState::ContainerRunning as i32;
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let running = Running {
        runtime: server.runtime.clone(),
        id: chosen.id.clone(),
    };
    let (ns, pod, container) = (ns.to_string(), pod.to_string(), container.to_string());
    tokio::spawn(async move {
        let _permit = permit;
        if let Err(e) = logs::stream(files, opts, tx, running).await {
            tracing::warn!(%ns, %pod, %container, error = %e, "reading container logs");
        }
    });
    let body =
        StreamBody::new(ReceiverStream::new(rx).map(|b| Ok::<_, std::io::Error>(Frame::data(b))));
    let mut resp = Response::new(BodyExt::boxed(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    Ok(resp)
}
