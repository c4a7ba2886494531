//! A request as the verbs see it: its target (kind, namespace, name,
//! subresource), its context (user, query, body, negotiated format, node
//! restrictions), and the response builders in the negotiated format.

use std::collections::HashMap;
use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use serde_json::Value;

use crate::apiserver::auth::User;
use crate::apiserver::error::ApiError;
pub use crate::apiserver::error::MAX_BODY;
use crate::apiserver::resources::Kind;

pub type Body = BoxBody<Bytes, Infallible>;

/// What a resource request addresses.
#[derive(Debug, Clone)]
pub struct Target {
    pub kind: &'static Kind,
    pub namespace: String,
    pub name: String,
    pub subresource: String,
}

/// Everything about a request but its target.
pub struct Ctx {
    pub user: User,
    pub query: HashMap<String, String>,
    pub body: Bytes,
    pub content_type: String,
    pub table: bool,
    /// The negotiated shape (`as=` of the Accept header).
    pub shape: crate::apiserver::partial::As,
    /// Answer in Kubernetes protobuf (the client asked for it first).
    pub protobuf: bool,
    pub warnings: Vec<String>,
    /// Set when a node may act only on pods bound to it.
    pub pod_node: Option<String>,
    /// Set when a create is allowed only for an object of this name.
    pub create_name: Option<String>,
    /// Set when a read is allowed only of one object this node's pods use.
    pub used_on_node: Option<String>,
    /// The field manager of a write: `fieldManager`, else the client's
    /// User-Agent up to its first `/` (as kube-apiserver defaults it).
    pub manager: String,
}

impl Ctx {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(self.param(key), Some("true" | "1"))
    }

    /// `resourceVersion`, if given: a number, or a 400 worded as kube's
    /// (it reports Go's strconv error).
    pub fn resource_version(&self) -> Result<Option<u64>, ApiError> {
        self.param("resourceVersion")
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    ApiError::BadRequest(format!(
                        "invalid resource version: resourceVersion: Invalid value: \"{v}\": strconv.ParseUint: parsing \"{v}\": invalid syntax"
                    ))
                })
            })
            .transpose()
    }
}

/// The request's query parameters, decoded.
pub fn query_pairs<C: FromIterator<(String, String)>>(uri: &http::Uri) -> C {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

pub fn full(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)).boxed());
    *resp.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

pub fn json(status: StatusCode, body: &Value) -> Response<Body> {
    full(
        status,
        "application/json",
        serde_json::to_vec(body).unwrap_or_default(),
    )
}

/// A body in the negotiated format: protobuf when the client asked for it
/// first, else JSON.
pub fn reply(protobuf: bool, status: StatusCode, body: &Value) -> Response<Body> {
    if protobuf {
        match crate::apiserver::protobuf::encode(body) {
            Ok(bytes) => return full(status, crate::apiserver::protobuf::MEDIA_TYPE, bytes),
            Err(err) => tracing::warn!(error = %err, "cannot encode protobuf; answering in JSON"),
        }
    }
    json(status, body)
}

impl Ctx {
    /// An object or list reply, as a Table or in the negotiated format.
    pub fn reply(&self, status: StatusCode, body: &Value) -> Response<Body> {
        use crate::apiserver::partial::{As, shape};
        if matches!(self.shape, As::Meta | As::MetaList) {
            return match shape(self.shape, body) {
                Ok(b) => reply(self.protobuf, status, &b),
                Err(err) => error(&err, false),
            };
        }
        reply(self.protobuf && !self.table, status, body)
    }
}

pub fn error(err: &ApiError, protobuf: bool) -> Response<Body> {
    let mut resp = reply(protobuf, err.code(), &err.status());
    // kube-apiserver sends the retry delay as a header too (client-go
    // waits on it).
    if let ApiError::TooManyRequests {
        retry_after_seconds: Some(secs),
        ..
    } = err
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}
