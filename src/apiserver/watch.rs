//! Watch: a chunked stream of `{"type": ..., "object": ...}` lines, from a
//! resourceVersion (or from "now" with synthetic ADDED events for what
//! exists), filtered by namespace, name and selectors, with optional
//! bookmarks and Table-formatted objects for `kubectl get -w`; or, for
//! client-go's default, length-prefixed protobuf WatchEvents.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};

use crate::apiserver::context::{Body, Ctx, Target};
use crate::apiserver::error::ApiError;
use crate::apiserver::resources::Kind;
use crate::apiserver::state::{State, blocking};
use crate::apiserver::store::{Event, EventKind};
use crate::apiserver::table;
use crate::apiserver::verbs::read::{Filter, list_prefix};

/// Default server-side watch timeout (kube picks 30-60 minutes).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

struct Encoder {
    kind: &'static Kind,
    table: bool,
    /// Objects as PartialObjectMetadata.
    meta: bool,
    /// Length-prefixed protobuf WatchEvents instead of JSON lines.
    protobuf: bool,
    sent_columns: bool,
}

impl Encoder {
    fn line(&mut self, ty: &str, object: &Value) -> Bytes {
        if self.table && ty != "BOOKMARK" && ty != "ERROR" {
            let t = table::table(
                self.kind,
                std::slice::from_ref(object),
                json!({"resourceVersion": object["metadata"]["resourceVersion"]}),
                !self.sent_columns,
            );
            self.sent_columns = true;
            return self.encode(ty, &t);
        }
        if self.meta && ty != "ERROR" {
            return self.encode(ty, &crate::apiserver::partial::object_meta(object));
        }
        self.encode(ty, object)
    }

    fn encode(&self, ty: &str, object: &Value) -> Bytes {
        if self.protobuf {
            return match crate::apiserver::protobuf::watch_frame(ty, object) {
                Ok(frame) => Bytes::from(frame),
                Err(err) => {
                    tracing::warn!(error = %err, "cannot encode a watch event as protobuf; skipped");
                    Bytes::new()
                }
            };
        }
        let mut bytes: Vec<u8> = json_prefix(ty).into();
        // Writing to a Vec fails only for a non-string map key: none here.
        let _ = serde_json::to_writer(&mut bytes, object);
        bytes.extend_from_slice(b"}\n");
        Bytes::from(bytes)
    }

    /// A stored change's line, in parts: JSON watchers share the object's
    /// bytes encoded once by the store instead of each encoding a copy.
    fn event(&mut self, ty: &str, event: &Event) -> Vec<Bytes> {
        if self.table || self.meta || self.protobuf {
            return vec![self.line(ty, &event.object)];
        }
        vec![
            Bytes::from(json_prefix(ty)),
            event.json.clone(),
            Bytes::from_static(b"}\n"),
        ]
    }
}

impl Encoder {
    /// An initial ADDED line: JSON watchers share the snapshot's bytes.
    fn initial(&mut self, item: &crate::apiserver::watch_initial::Item) -> Vec<Bytes> {
        if self.table || self.meta || self.protobuf {
            return vec![self.line("ADDED", &item.object)];
        }
        vec![
            Bytes::from_static(b"{\"type\":\"ADDED\",\"object\":"),
            item.json.clone(),
            Bytes::from_static(b"}\n"),
        ]
    }
}

fn json_prefix(ty: &str) -> String {
    format!("{{\"type\":\"{ty}\",\"object\":")
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
    crate::apiserver::verbs::read::check_used_on_node(state, ctx, &t).await?;
    let filter = Filter::from_ctx(ctx, t.kind)?;
    let rv = ctx.resource_version()?.filter(|&v| v != 0);
    let send_initial = ctx.flag("sendInitialEvents") || rv.is_none();
    let bookmarks = ctx.flag("allowWatchBookmarks");
    // kube takes any int64: a negative timeout is a watch whose deadline
    // has passed, answered 200 with one ERROR event.
    let (timeout, expired) = match ctx.param("timeoutSeconds") {
        Some(s) => {
            let secs = s.parse::<i64>().map_err(|_| {
                ApiError::BadRequest(format!("strconv.ParseInt: parsing \"{s}\": invalid syntax"))
            })?;
            (Duration::from_secs(secs.max(0) as u64), secs < 0)
        }
        None => (DEFAULT_TIMEOUT, false),
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
        // The snapshot is shared with watchers starting at the same revision.
        let (snap_rev, initial) = match (rv, send_initial) {
            (Some(r), false) => (r, None),
            _ => {
                let snapshot = crate::apiserver::watch_initial::snapshot(&s.store, &prefix2)?;
                (snapshot.rev, Some(snapshot))
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
        meta: matches!(
            ctx.shape,
            crate::apiserver::partial::As::Meta | crate::apiserver::partial::As::MetaList
        ),
        protobuf: ctx.protobuf && !ctx.table,
        sent_columns: false,
    };
    let (tx, stream) = crate::apiserver::watch_buffer::channel();
    let body = StreamBody::new(futures::StreamExt::map(stream, |b| b.map(Frame::data))).boxed();
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
    if expired {
        let status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "context deadline exceeded", "reason": "InternalError", "code": 500,
        });
        let line = enc.line("ERROR", &status);
        let _ = tx.send(line).await;
        return Ok(resp);
    }
    let mut sub = match sub {
        Ok(sub) => sub,
        Err(err) => {
            // Too old: kube answers 200 with a single ERROR event (410).
            let line = enc.line("ERROR", &err.status());
            let _ = tx.send(line).await;
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
            for item in initial.iter().flat_map(|s| &s.items) {
                let object = &item.object;
                let name_ok = name_for_initial
                    .as_deref()
                    .is_none_or(|n| object["metadata"]["name"].as_str() == Some(n));
                if name_ok
                    && filter.matches(object)
                    && tx.send_parts(enc.initial(item)).await.is_err()
                {
                    return;
                }
            }
            // Done with the snapshot: the last watcher to let go frees it.
            drop(initial);
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
            visible(event, &filter).map(|k| enc.event(k.as_str(), event))
        };
        for event in std::mem::take(&mut sub.backlog) {
            last_rev = event.rev;
            if let Some(parts) = encode(&event, &mut enc)
                && tx.send_parts(parts).await.is_err()
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
                    if let Some(parts) = encode(&event, &mut enc)
                        && tx.send_parts(parts).await.is_err()
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
