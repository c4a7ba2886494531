//! Both servers, one request sent to each, their answers decoded (JSON,
//! JSON watch lines, protobuf objects and protobuf watch frames) and handed
//! to [`compare`]; kubectl steps run against each; the report of every
//! difference at the end.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use prost::Message;
use reqwest::Method;
use serde_json::{Value, json};

use super::common::stock::{self, BundledApiserver, ControlPlane, StockControlPlane};
use super::{allow, compare};

pub const JSON: &str = "application/json";
pub const PB: &str = "application/vnd.kubernetes.protobuf";
pub const MERGE: &str = "application/merge-patch+json";
pub const STRATEGIC: &str = "application/strategic-merge-patch+json";
pub const JSON_PATCH: &str = "application/json-patch+json";
pub const POM: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
pub const POM_LIST: &str = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
pub const TABLE: &str = "application/json;as=Table;g=meta.k8s.io;v=v1";

/// One request, sent the same way to both servers.
#[derive(Clone)]
pub struct Req {
    pub method: Method,
    pub path: String,
    pub content_type: &'static str,
    pub accept: String,
    pub body: Vec<u8>,
    /// Sent with no credentials at all.
    pub anonymous: bool,
}

impl Req {
    pub fn new(method: Method, path: impl Into<String>) -> Req {
        Req {
            method,
            path: path.into(),
            content_type: JSON,
            accept: JSON.into(),
            body: Vec::new(),
            anonymous: false,
        }
    }
    pub fn get(path: impl Into<String>) -> Req {
        Req::new(Method::GET, path)
    }
    pub fn delete(path: impl Into<String>) -> Req {
        Req::new(Method::DELETE, path)
    }
    pub fn post(path: impl Into<String>, body: &Value) -> Req {
        Req::new(Method::POST, path).json(body)
    }
    pub fn put(path: impl Into<String>, body: &Value) -> Req {
        Req::new(Method::PUT, path).json(body)
    }
    pub fn patch(path: impl Into<String>, content_type: &'static str, body: &Value) -> Req {
        let mut r = Req::new(Method::PATCH, path).json(body);
        r.content_type = content_type;
        r
    }
    pub fn json(mut self, body: &Value) -> Req {
        self.body = serde_json::to_vec(body).expect("json body");
        self
    }
    /// The body as protobuf, as client-go sends it by default.
    pub fn protobuf(mut self, body: &Value) -> Req {
        self.body = deckhand::apiserver::protobuf::encode(body).expect("protobuf body");
        self.content_type = PB;
        self
    }
    pub fn raw(mut self, content_type: &'static str, body: &[u8]) -> Req {
        self.body = body.to_vec();
        self.content_type = content_type;
        self
    }
    pub fn accept(mut self, accept: &str) -> Req {
        self.accept = accept.into();
        self
    }
    pub fn anonymous(mut self) -> Req {
        self.anonymous = true;
        self
    }
}

/// What came back: the status, the media type (no parameters but
/// `stream`/`as`), and the body as JSON whatever its encoding.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub status: u16,
    pub media: String,
    pub body: Value,
}

pub struct Side {
    client: kube::Client,
    http: reqwest::Client,
    url: String,
    kubeconfig: PathBuf,
    cache: tempfile::TempDir,
}

impl Side {
    async fn new(plane: &dyn ControlPlane) -> Side {
        let kubeconfig = plane.admin_kubeconfig().to_path_buf();
        let kc = kube::config::Kubeconfig::read_from(&kubeconfig).expect("kubeconfig");
        let url = kc.clusters[0]
            .cluster
            .as_ref()
            .and_then(|c| c.server.clone())
            .expect("server url");
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("kube config");
        let client = kube::Client::try_from(config).expect("kube client");
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
        Side {
            client,
            http,
            url,
            kubeconfig,
            cache: tempfile::tempdir().expect("cache dir"),
        }
    }

    pub async fn send(&self, req: &Req) -> Outcome {
        let fut = async {
            if req.anonymous {
                let resp = self
                    .http
                    .request(req.method.clone(), format!("{}{}", self.url, req.path))
                    .header("Accept", &req.accept)
                    .header("Content-Type", req.content_type)
                    .body(req.body.clone())
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let status = resp.status().as_u16();
                let ctype = header(resp.headers());
                let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
                return Ok::<_, String>((status, ctype, bytes.to_vec()));
            }
            let method = http::Method::from_bytes(req.method.as_str().as_bytes()).unwrap();
            let request = http::Request::builder()
                .method(method)
                .uri(&req.path)
                .header("Accept", &req.accept)
                .header("Content-Type", req.content_type)
                .body(kube::client::Body::from(req.body.clone()))
                .map_err(|e| e.to_string())?;
            let resp = self.client.send(request).await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let ctype = header(resp.headers());
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok((status, ctype, bytes.to_vec()))
        };
        match tokio::time::timeout(Duration::from_secs(90), fut).await {
            Ok(Ok((status, ctype, bytes))) => Outcome {
                status,
                media: media(&ctype),
                body: decode_body(&ctype, &bytes),
            },
            Ok(Err(e)) => Outcome {
                status: 0,
                media: String::new(),
                body: json!(format!("transport error: {e}")),
            },
            Err(_) => Outcome {
                status: 0,
                media: String::new(),
                body: json!("no answer in 90 s"),
            },
        }
    }

    /// kubectl against this side: (exit code, stdout, stderr).
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> (Option<i32>, String, String) {
        let mut all = vec!["--cache-dir", self.cache.path().to_str().unwrap()];
        all.extend_from_slice(args);
        let (ok, out, err) = stock::kubectl_with_stdin(&self.kubeconfig, &all, stdin);
        (Some(if ok { 0 } else { 1 }), out, err)
    }
}

fn header(headers: &http::HeaderMap) -> String {
    headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// The media type with only the parameters that change the meaning.
fn media(ctype: &str) -> String {
    let mut parts = ctype.split(';').map(str::trim);
    let mut out = parts.next().unwrap_or("").to_string();
    for p in parts {
        if p.starts_with("stream=") || p.starts_with("as=") {
            out.push(';');
            out.push_str(p);
        }
    }
    out
}

fn decode_body(ctype: &str, bytes: &[u8]) -> Value {
    if ctype.starts_with(PB) {
        if ctype.contains("stream=watch") {
            return decode_pb_watch(bytes);
        }
        return decode_pb(bytes);
    }
    let text = String::from_utf8_lossy(bytes);
    if let Ok(v) = serde_json::from_str::<Value>(&text) {
        return v;
    }
    // A JSON watch stream: one event a line.
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| json!(l)))
        .collect();
    if lines.len() > 1 || (lines.len() == 1 && lines[0].is_object()) {
        return Value::Array(lines);
    }
    json!(text.trim())
}

fn decode_pb(bytes: &[u8]) -> Value {
    use k8s_pb::apimachinery::pkg::runtime::Unknown;
    let Some(rest) = bytes.strip_prefix(b"k8s\0") else {
        return json!("protobuf without the k8s magic");
    };
    let Ok(unknown) = Unknown::decode(rest) else {
        return json!("undecodable protobuf envelope");
    };
    let tm = unknown.type_meta.unwrap_or_default();
    let (v, k) = (
        tm.api_version.unwrap_or_default(),
        tm.kind.unwrap_or_default(),
    );
    deckhand::apiserver::protobuf::decode(bytes, &v, &k)
        .unwrap_or_else(|e| json!(format!("undecodable protobuf {v} {k}: {e}")))
}

fn decode_pb_watch(mut bytes: &[u8]) -> Value {
    use k8s_pb::apimachinery::pkg::apis::meta::v1::WatchEvent;
    let mut events = Vec::new();
    while bytes.len() >= 4 {
        let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        if bytes.len() < 4 + len {
            events.push(json!("truncated frame"));
            break;
        }
        let frame = &bytes[4..4 + len];
        bytes = &bytes[4 + len..];
        match WatchEvent::decode(frame) {
            Ok(e) => {
                let raw = e.object.and_then(|o| o.raw).unwrap_or_default();
                events.push(json!({"type": e.r#type, "object": decode_pb(&raw)}));
            }
            Err(_) => events.push(json!("undecodable watch event")),
        }
    }
    Value::Array(events)
}

/// The bundled apiserver and the stock control plane, side by side.
pub struct Pair {
    pub deckhand: Side,
    pub stock: Side,
    _bundled: BundledApiserver,
    _stock: StockControlPlane,
}

impl Pair {
    pub async fn start() -> Pair {
        let stock_plane = tokio::task::spawn_blocking(|| StockControlPlane::start("parity-node"))
            .await
            .expect("start the stock control plane");
        let bundled = tokio::task::spawn_blocking(|| BundledApiserver::start("parity-node"))
            .await
            .expect("start the bundled apiserver");
        Pair {
            deckhand: Side::new(&bundled).await,
            stock: Side::new(&stock_plane).await,
            _bundled: bundled,
            _stock: stock_plane,
        }
    }

    /// Send to both, compare, and hand back both answers.
    pub async fn check(&self, report: &mut Report, step: &str, req: Req) -> (Outcome, Outcome) {
        let (d, s) = tokio::join!(self.deckhand.send(&req), self.stock.send(&req));
        report.compare(step, &d, &s);
        (d, s)
    }

    /// Send to both and compare only the parts at `pointers` (and the
    /// status): for objects a stock controller also writes (a Deployment's
    /// status, a ReplicaSet it creates) while the request's own effect is
    /// what is compared.
    pub async fn check_at(
        &self,
        report: &mut Report,
        step: &str,
        req: Req,
        pointers: &[&str],
    ) -> (Outcome, Outcome) {
        let (d, s) = tokio::join!(self.deckhand.send(&req), self.stock.send(&req));
        let only = |o: &Outcome| {
            let mut picked = serde_json::Map::new();
            for p in pointers {
                // Keyed by the path itself, so a pointer into the picked
                // body reads as one into the whole (for the allow-list).
                picked.insert(
                    p.trim_start_matches('/').replace('/', "."),
                    o.body.pointer(p).cloned().unwrap_or(Value::Null),
                );
            }
            Outcome {
                status: o.status,
                media: o.media.clone(),
                body: Value::Object(picked),
            }
        };
        report.compare(step, &only(&d), &only(&s));
        (d, s)
    }

    /// Send until `done` holds on each side (or a minute passes), then
    /// compare the last answers: for what a controller does later.
    pub async fn poll(
        &self,
        report: &mut Report,
        step: &str,
        req: Req,
        done: impl Fn(&Outcome) -> bool,
    ) -> (Outcome, Outcome) {
        let (d, s) = tokio::join!(
            poll_side(&self.deckhand, &req, &done),
            poll_side(&self.stock, &req, &done)
        );
        report.compare(step, &d, &s);
        (d, s)
    }

    /// The same kubectl command on both; compares exit codes and output.
    pub fn kubectl(&self, report: &mut Report, step: &str, args: &[&str], stdin: Option<&str>) {
        let d = self.deckhand.kubectl(args, stdin);
        let s = self.stock.kubectl(args, stdin);
        let as_outcome = |(code, out, err): (Option<i32>, String, String)| Outcome {
            status: code.map(|c| c as u16).unwrap_or(999),
            media: "kubectl".into(),
            body: json!({
                "stdout": serde_json::from_str::<Value>(&out).unwrap_or_else(|_| json!(compare::scrub_text(&out))),
                "stderr": compare::scrub_text(&err),
            }),
        };
        report.compare(step, &as_outcome(d), &as_outcome(s));
    }
}

async fn poll_side(side: &Side, req: &Req, done: &impl Fn(&Outcome) -> bool) -> Outcome {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let out = side.send(req).await;
        if done(&out) || Instant::now() > deadline {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

struct Diff {
    step: String,
    pointer: String,
    deckhand: String,
    stock: String,
    allowed: Option<&'static str>,
}

#[derive(Default)]
pub struct Report {
    last: Option<Instant>,
    steps: usize,
    kinds: BTreeSet<String>,
    diffs: Vec<Diff>,
}

impl Report {
    fn compare(&mut self, step: &str, d: &Outcome, s: &Outcome) {
        // A slow step (a server waiting on something) is worth a line.
        let now = Instant::now();
        if let Some(last) = self.last.replace(now)
            && now - last > Duration::from_secs(5)
        {
            eprintln!("api_parity: step {step:?} took {:?}", now - last);
        }
        self.steps += 1;
        if let Some(kind) = s.body.get("kind").and_then(Value::as_str) {
            self.kinds.insert(kind.trim_end_matches("List").to_string());
        }
        let mut found = Vec::new();
        if d.status != s.status {
            found.push((
                "/@status".to_string(),
                d.status.to_string(),
                s.status.to_string(),
            ));
        }
        if d.media != s.media && s.status != 0 {
            found.push(("/@media".to_string(), d.media.clone(), s.media.clone()));
        }
        let (mut db, mut sb) = (d.body.clone(), s.body.clone());
        compare::normalise(&mut db);
        compare::normalise(&mut sb);
        compare::diff(&db, &sb, String::new(), &mut found);
        for (pointer, dv, sv) in found {
            let allowed = allow::allowed(step, &pointer);
            self.diffs.push(Diff {
                step: step.to_string(),
                pointer,
                deckhand: dv,
                stock: sv,
                allowed,
            });
        }
    }

    pub fn finish(self) {
        let mut text = String::new();
        let mut failing = 0;
        for d in &self.diffs {
            let tag = match d.allowed {
                Some(why) => format!("allowed ({why})"),
                None => {
                    failing += 1;
                    "DIFFERS".to_string()
                }
            };
            text.push_str(&format!(
                "{tag}: {} {}\n    deckhand: {}\n    stock:    {}\n",
                d.step, d.pointer, d.deckhand, d.stock
            ));
        }
        let summary = format!(
            "api_parity: {} steps, {} kinds ({}), {} differences, {} failing",
            self.steps,
            self.kinds.len(),
            self.kinds.iter().cloned().collect::<Vec<_>>().join(", "),
            self.diffs.len(),
            failing
        );
        {
            use std::io::Write;
            let _ = writeln!(std::io::stderr().lock(), "{text}{summary}");
        }
        if let Ok(path) = std::env::var("API_PARITY_REPORT") {
            let _ = std::fs::write(path, format!("{text}{summary}\n"));
        }
        assert_eq!(failing, 0, "{text}{summary}");
    }
}
