//! Watch: a chunked stream of `{"type": ..., "object": ...}` lines, from a
//! resourceVersion (or from "now" with synthetic ADDED events for what
//! exists), filtered by namespace, name and selectors, with optional
//! bookmarks and Table-formatted objects for `kubectl get -w`; or, for
//! client-go's default, length-prefixed protobuf WatchEvents.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::apiserver::State;
use crate::apiserver::error::ApiError;
use crate::apiserver::handlers::{Filter, blocking, list_prefix};
use crate::apiserver::http::{Body, Ctx, Target};
use crate::apiserver::resources::Kind;
use crate::apiserver::store::{Event, EventKind};
use crate::apiserver::table;

/// Default server-side watch timeout (kube picks 30-60 minutes).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

struct Encoder {
    kind: &'static Kind,
    table: bool,
    /// Length-prefixed protobuf WatchEvents instead of JSON lines.
    protobuf: bool,
    sent_columns: bool,
}

impl Encoder {
    fn line(&mut self, ty: &str, object: &Value) -> Bytes {
        let object = if self.table && ty != "BOOKMARK" && ty != "ERROR" {
            let t = table::table(
                self.kind,
                std::slice::from_ref(object),
                json!({"resourceVersion": object["metadata"]["resourceVersion"]}),
                !self.sent_columns,
            );
            self.sent_columns = true;
            t
        } else {
            object.clone()
        };
        if self.protobuf {
            return match crate::apiserver::protobuf::watch_frame(ty, &object) {
                Ok(frame) => Bytes::from(frame),
                Err(err) => {
                    tracing::warn!(error = %err, "cannot encode a watch event as protobuf; skipped");
                    Bytes::new()
                }
            };
        }
        let mut bytes =
            serde_json::to_vec(&json!({"type": ty, "object": object})).unwrap_or_default();
        bytes.push(b'\n');
        Bytes::from(bytes)
    }
}

fn bookmark(kind: &Kind, rev: u64, initial_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": rev.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"kind": kind.kind, "apiVersion": kind.api_version(), "metadata": meta})
}

/// How an event looks to a watcher with this filter: objects moving into or
/// out of the selection appear as ADDED / DELETED.
fn visible(event: &Event, filter: &Filter) -> Option<EventKind> {
    let now = event.kind != EventKind::Deleted && filter.matches(&event.object);
    let before = event.prev.as_ref().is_some_and(|p| filter.matches(p));
    match (before, now) {
        (false, true) => Some(EventKind::Added),
        (true, true) => Some(EventKind::Modified),
        (true, false) => Some(EventKind::Deleted),
        (false, false) => None,
    }
}

pub async fn watch(state: &Arc<State>, ctx: &Ctx, t: Target) -> Result<Response<Body>, ApiError> {
    crate::apiserver::handlers::check_used_on_node(state, ctx, &t).await?;
    let filter = Filter::from_ctx(ctx, t.kind)?;
    let rv = match ctx.param("resourceVersion") {
        None | Some("0") => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| ApiError::BadRequest(format!("invalid resource version: {v}")))?,
        ),
    };
    let send_initial = ctx.flag("sendInitialEvents") || rv.is_none();
    let bookmarks = ctx.flag("allowWatchBookmarks");
    let timeout = match ctx.param("timeoutSeconds") {
        Some(s) => Duration::from_secs(
            s.parse::<u64>()
                .map_err(|_| ApiError::BadRequest(format!("invalid timeoutSeconds: {s}")))?,
        ),
        None => DEFAULT_TIMEOUT,
    };
    let prefix = list_prefix(&t);
    // A single object (`GET .../pods/x?watch=1`) watches just that name.
    let name = if t.name.is_empty() {
        None
    } else {
        Some(t.name.clone())
    };
    let prefix2 = prefix.clone();
    let start = blocking(state, move |s| {
        // Snapshot then subscribe from the snapshot's revision: every later
        // change is in the subscription's backlog, none is missed or doubled.
        let (snap_rev, initial) = match (rv, send_initial) {
            (Some(r), false) => (r, Vec::new()),
            _ => {
                let (rev, items) = s.store.list(&prefix2, None, usize::MAX)?;
                (rev, items)
            }
        };
        let from = if send_initial {
            snap_rev
        } else {
            rv.unwrap_or(snap_rev)
        };
        let sub = s.store.subscribe(from);
        Ok((from, initial, sub))
    })
    .await?;
    let (from, initial, sub) = start;
    let mut enc = Encoder {
        kind: t.kind,
        table: ctx.table,
        protobuf: ctx.protobuf && !ctx.table,
        sent_columns: false,
    };
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let body = StreamBody::new(futures::StreamExt::map(stream, |b| {
        Ok::<_, Infallible>(Frame::data(b))
    }))
    .boxed();
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(if enc.protobuf {
            crate::apiserver::protobuf::WATCH_MEDIA_TYPE
        } else {
            "application/json"
        }),
    );
    let mut sub = match sub {
        Ok(sub) => sub,
        Err(err) => {
            // Too old: kube answers 200 with a single ERROR event (410).
            let line = enc.line("ERROR", &err.status());
            tokio::spawn(async move {
                let _ = tx.send(line).await;
            });
            return Ok(resp);
        }
    };
    let kind = t.kind;
    let wanted = move |e: &Event| {
        e.in_collection(&prefix)
            && name
                .as_deref()
                .is_none_or(|n| e.object["metadata"]["name"].as_str() == Some(n))
    };
    let filter = Arc::new(filter);
    let name_for_initial = if t.name.is_empty() {
        None
    } else {
        Some(t.name.clone())
    };
    let bookmark_every = state.bookmark_interval;
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last_rev = from;
        if send_initial {
            for (_, object) in &initial {
                let name_ok = name_for_initial
                    .as_deref()
                    .is_none_or(|n| object["metadata"]["name"].as_str() == Some(n));
                if name_ok
                    && filter.matches(object)
                    && tx.send(enc.line("ADDED", object)).await.is_err()
                {
                    return;
                }
            }
            if bookmarks
                && tx
                    .send(enc.line("BOOKMARK", &bookmark(kind, from, true)))
                    .await
                    .is_err()
            {
                return;
            }
        }
        // What this watcher sees of a committed change, if anything.
        let encode = |event: &Event, enc: &mut Encoder| {
            if !wanted(event) {
                return None;
            }
            visible(event, &filter).map(|k| enc.line(k.as_str(), &event.object))
        };
        for event in std::mem::take(&mut sub.backlog) {
            last_rev = event.rev;
            if let Some(line) = encode(&event, &mut enc)
                && tx.send(line).await.is_err()
            {
                return;
            }
        }
        let mut tick = tokio::time::interval(bookmark_every);
        tick.tick().await;
        loop {
            tokio::select! {
                event = sub.live.recv() => {
                    // None: we fell too far behind and were dropped; ending
                    // the stream makes the client re-watch or re-list.
                    let Some(event) = event else { return };
                    last_rev = event.rev;
                    if let Some(line) = encode(&event, &mut enc)
                        && tx.send(line).await.is_err()
                    {
                        return;
                    }
                }
                _ = tick.tick(), if bookmarks => {
                    if tx.send(enc.line("BOOKMARK", &bookmark(kind, last_rev, false))).await.is_err() {
                        return;
                    }
                }
                _ = tx.closed() => return,
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    });
    Ok(resp)
}
