//! The apiserver's decoders: bodies (JSON, YAML, Kubernetes protobuf),
//! patches (JSON, merge, strategic, apply), label and field selectors, the
//! query values of a list (resourceVersion, continue, limit), request
//! paths, and the typed round trip, defaults and validation every created
//! object goes through.

use proptest::prelude::*;
use serde_json::{Value, json};

use deckhand::apiserver::patch::{self, PatchType};
use deckhand::apiserver::protobuf;
use deckhand::apiserver::resources;
use deckhand::apiserver::selectors::{FieldSelector, LabelSelector};

use crate::{bounded, config, edits, json_value, key, mutate, tricky_text};

/// Kinds whose objects clients write most.
const KINDS: &[&str] = &[
    "pods",
    "configmaps",
    "secrets",
    "services",
    "namespaces",
    "nodes",
    "serviceaccounts",
    "endpointslices",
    "roles",
    "leases",
    "events",
];

fn kind(resource: &str) -> &'static resources::Kind {
    resources::by_name(resource).expect("a served kind")
}

/// A valid-looking object of `resource`'s kind with random contents.
fn object_of(resource: &'static str) -> impl Strategy<Value = Value> {
    (
        "[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?",
        prop::collection::btree_map("[a-z0-9./-]{1,12}", tricky_text(4), 0..4),
        prop::collection::btree_map(key(), json_value(), 0..4),
    )
        .prop_map(move |(name, labels, body)| {
            let k = kind(resource);
            let mut object = json!({
                "apiVersion": k.api_version(),
                "kind": k.kind,
                "metadata": {"name": name, "namespace": "default", "labels": labels},
            });
            for (field, value) in body {
                if field != "metadata" && field != "apiVersion" && field != "kind" {
                    object[field] = value;
                }
            }
            object
        })
}

fn any_object() -> impl Strategy<Value = (&'static str, Value)> {
    prop::sample::select(KINDS.to_vec())
        .prop_flat_map(|resource| (Just(resource), object_of(resource)))
}

fn pod() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "labels": {"app": "a"},
                     "finalizers": ["x/y"], "annotations": {"k": "v"}},
        "spec": {"containers": [
            {"name": "c", "image": "busybox", "env": [{"name": "A", "value": "1"}],
             "ports": [{"containerPort": 80, "protocol": "TCP"}]},
            {"name": "d", "image": "busybox"}],
            "volumes": [{"name": "v", "emptyDir": {}}]}})
}

/// Bodies: JSON objects, their YAML spelling and protobuf encodings, each
/// also mutated byte-wise.
fn body_seed() -> impl Strategy<Value = Vec<u8>> {
    let yaml_seeds = prop::sample::select(vec![
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: v\n",
        "a: &a [1, 2]\nb: [*a, *a]\nc: !!binary aGVsbG8=\n",
        "- a\n- b: c\n  d: [e, {f: g}]\n",
        "a: 'x'\nb: \"\\u0000\"\n<<: {c: d}\n? complex\n: key\n",
        "%YAML 1.2\n---\na: 1\n...\n---\nb: 2\n",
    ]);
    prop_oneof![
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        yaml_seeds.prop_map(|s| s.as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 0..256),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// JSON and YAML bodies: yaml_object (which also reads JSON) answers Ok
    /// with a mapping or a clean 400.
    #[test]
    fn fuzz_body_yaml(seed in body_seed(), edits in edits()) {
        let body = mutate(seed, &edits);
        let result = bounded("yaml body", move || patch::yaml_object(&body));
        if let Ok(v) = result {
            prop_assert!(v.is_object());
        }
    }

    /// A JSON object's text reads back the same through the YAML decoder
    /// (JSON is YAML), for object keys as Kubernetes names them.
    #[test]
    fn fuzz_body_json_is_yaml((_, object) in any_object()) {
        let text = serde_json::to_vec(&object).unwrap();
        // YAML streams are printable Unicode (so go-yaml, under kube's YAML
        // decoding, refuses the rest as well): the rest is a clean 400.
        prop_assume!(String::from_utf8_lossy(&text).chars().all(yaml_printable));
        let back = bounded("json as yaml", move || patch::yaml_object(&text));
        prop_assert_eq!(back.ok(), Some(object));
    }

    /// Protobuf bodies: a mutated encoding of a valid object, or random
    /// bytes behind the magic, decode to an object or a clean error.
    #[test]
    fn fuzz_body_protobuf((resource, object) in any_object(), edits in edits(), raw in prop::collection::vec(any::<u8>(), 0..128)) {
        let k = kind(resource);
        let encoded = protobuf::encode(&object).unwrap_or_else(|_| {
            let mut v = b"k8s\0".to_vec();
            v.extend(&raw);
            v
        });
        let body = mutate(encoded, &edits);
        let api_version = k.api_version();
        bounded("protobuf body", move || {
            let _ = protobuf::decode(&body, &api_version, k.kind);
            let _ = protobuf::decode_delete_options(&body);
        });
    }

    /// A ConfigMap or Secret survives JSON -> protobuf -> JSON.
    #[test]
    fn fuzz_protobuf_round_trip(
        name in "[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?",
        labels in prop::collection::btree_map("[a-z0-9./-]{1,20}", any::<String>(), 0..4),
        data in prop::collection::btree_map("[-._a-zA-Z0-9]{1,20}", any::<String>(), 0..6),
    ) {
        let object = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default", "labels": labels},
            "data": data});
        let mut object = object;
        // Protobuf has no empty map (Go's omitempty drops them in JSON too).
        for field in ["/metadata/labels", "/data"] {
            if object.pointer(field).and_then(Value::as_object).is_some_and(|m| m.is_empty()) {
                let (parent, name) = field.rsplit_once('/').unwrap();
                let parent = if parent.is_empty() { &mut object } else { object.pointer_mut(parent).unwrap() };
                parent.as_object_mut().unwrap().remove(name);
            }
        }
        let encoded = protobuf::encode(&object).unwrap();
        let decoded = protobuf::decode(&encoded, "v1", "ConfigMap").unwrap();
        prop_assert_eq!(decoded, object);
    }

    /// JSON patches: random op lists (paths into a pod, values, froms).
    #[test]
    fn fuzz_patch_json(ops in prop::collection::vec(json_patch_op(), 0..8), edits in edits()) {
        let body = mutate(serde_json::to_vec(&ops).unwrap(), &edits);
        bounded("json patch", move || {
            let _ = patch::apply("pods", &pod(), &body, PatchType::Json);
        });
    }

    /// Merge patches: Ok or a clean error; applying one twice is applying
    /// it once (RFC 7386 patches are idempotent).
    #[test]
    fn fuzz_patch_merge(p in json_value(), (_, original) in any_object()) {
        let body = serde_json::to_vec(&p).unwrap();
        let (once, twice) = bounded("merge patch", move || {
            let once = patch::apply("pods", &original, &body, PatchType::Merge);
            let twice = once.as_ref().ok().map(|o| patch::apply("pods", o, &body, PatchType::Merge));
            (once, twice)
        });
        if let (Ok(once), Some(twice)) = (once, twice) {
            prop_assert_eq!(twice.ok(), Some(once));
        }
    }

    /// Strategic merge and apply patches, with directives, over a pod and
    /// over random objects, and as mutated bytes.
    #[test]
    fn fuzz_patch_strategic(p in json_value(), (resource, original) in any_object(), edits in edits(), on_pod in any::<bool>()) {
        let body = mutate(serde_json::to_vec(&p).unwrap(), &edits);
        bounded("strategic patch", move || {
            let (resource, original) = if on_pod { ("pods", pod()) } else { (resource, original) };
            let _ = patch::apply(resource, &original, &body, PatchType::Strategic);
            let _ = patch::apply(resource, &original, &body, PatchType::Apply);
        });
    }

    /// Label selectors: any string parses or is a clean 400; a parsed one
    /// matches objects without panicking.
    #[test]
    fn fuzz_label_selector(s in tricky_text(12), object in json_value()) {
        bounded("label selector", move || {
            if let Ok(selector) = LabelSelector::parse(&s) {
                selector.matches(&object);
                selector.matches(&json!({"metadata": {"labels": object}}));
            }
        });
    }

    /// A selector built from valid requirements parses, and selects the
    /// labels it was built from.
    #[test]
    fn fuzz_label_selector_valid(reqs in prop::collection::vec((label_key(), "([a-z0-9]([-._a-z0-9]{0,6}[a-z0-9])?)?"), 1..5)) {
        let text = reqs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
        let labels: serde_json::Map<String, Value> = reqs.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        let unique = labels.len() == reqs.len();
        let selector = LabelSelector::parse(&text);
        prop_assert!(selector.is_ok(), "{text}: {:?}", selector.err());
        if unique {
            prop_assert!(selector.unwrap().matches(&json!({"metadata": {"labels": labels}})), "{}", text);
        }
    }

    /// Field selectors against each kind's field labels.
    #[test]
    fn fuzz_field_selector(s in tricky_text(10), resource in prop::sample::select(KINDS.to_vec()), object in json_value()) {
        bounded("field selector", move || {
            if let Ok(selector) = FieldSelector::parse(&s, kind(resource)) {
                selector.matches(&object);
                let _ = selector.name();
            }
        });
    }

    /// Continue tokens: random and mutated tokens are a clean 400; a token
    /// we issued reads back as the key it names.
    #[test]
    fn fuzz_continue_token(rev in any::<u64>(), key in tricky_text(6), junk in tricky_text(8), edits in edits()) {
        use deckhand::apiserver::list_query::{decode_continue, encode_continue};
        let prefix = "/registry/configmaps/default/";
        let start = format!("{prefix}{key}");
        let token = encode_continue(rev, &start);
        prop_assert_eq!(decode_continue(&token, prefix).ok(), Some(start));
        let mutated = String::from_utf8_lossy(&mutate(token.into_bytes(), &edits)).into_owned();
        bounded("continue token", move || {
            let _ = decode_continue(&mutated, prefix);
            let _ = decode_continue(&junk, prefix);
        });
    }

    /// resourceVersion, limit and timeoutSeconds as a client may spell them.
    #[test]
    fn fuzz_list_query(rv in tricky_text(4), limit in tricky_text(3)) {
        let ctx = ctx_with(&[("resourceVersion", &rv), ("limit", &limit)]);
        let parsed = ctx.resource_version();
        if let Ok(Some(n)) = parsed {
            prop_assert_eq!(n.to_string().parse::<u64>().ok(), Some(n));
        }
        if let Ok(n) = rv.parse::<u64>() {
            prop_assert_eq!(parsed.ok(), Some(Some(n)));
        }
        let parsed_limit = deckhand::apiserver::list_query::limit(ctx.param("limit"));
        if let Ok(n) = limit.parse::<i64>() {
            prop_assert_eq!(parsed_limit.ok(), Some(usize::try_from(n).unwrap_or(0)));
        }
    }

    /// Request paths: any path routes to a target or a clean 404.
    #[test]
    fn fuzz_request_path(segments in prop::collection::vec(prop_oneof![
        prop::sample::select(vec!["api", "apis", "v1", "namespaces", "default", "pods", "configmaps",
            "apps", "status", "log", "exec", "binding", "", "..", "%2F", "nodes", "proxy"]).prop_map(str::to_string),
        tricky_text(3),
    ], 0..8)) {
        let path = format!("/{}", segments.join("/"));
        bounded("request path", move || {
            let _ = deckhand::apiserver::http::parse_path(&path);
        });
    }

    /// A created object's path: the typed round trip, defaults and
    /// validation, on random contents of each kind.
    #[test]
    fn fuzz_object_validation((resource, object) in any_object()) {
        bounded("object validation", move || {
            let k = kind(resource);
            if let Ok(mut typed) = (k.roundtrip)(object.clone()) {
                deckhand::apiserver::kinds::apply_defaults(k, &mut typed);
                let _ = deckhand::apiserver::kinds::validate(k, &typed);
                let _ = resources::unknown_fields(&object, &typed);
            }
            let mut raw = object;
            deckhand::apiserver::kinds::apply_defaults(k, &mut raw);
            let _ = deckhand::apiserver::kinds::validate(k, &raw);
        });
    }
}

/// A valid label key: an optional DNS-subdomain prefix and a name.
fn label_key() -> impl Strategy<Value = String> {
    (
        prop::option::of("[a-z]([-a-z0-9]{0,5}[a-z0-9])?(\\.[a-z]([-a-z0-9]{0,5}[a-z0-9])?){0,2}"),
        "[a-zA-Z0-9]([-._a-zA-Z0-9]{0,8}[a-zA-Z0-9])?",
    )
        .prop_map(|(prefix, name)| match prefix {
            Some(prefix) => format!("{prefix}/{name}"),
            None => name,
        })
}

/// YAML 1.2's printable set (c-printable).
fn yaml_printable(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{7e}' | '\u{85}' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
}

fn json_patch_op() -> impl Strategy<Value = Value> {
    let path = prop::collection::vec(
        prop_oneof![
            prop::sample::select(vec![
                "metadata",
                "labels",
                "spec",
                "containers",
                "0",
                "1",
                "-",
                "env",
                "name",
                "image",
                "finalizers",
                "annotations",
                "~1",
                "~0",
                "99999999999999999999",
            ])
            .prop_map(str::to_string),
            tricky_text(2),
        ],
        0..5,
    )
    .prop_map(|parts| parts.iter().map(|p| format!("/{p}")).collect::<String>());
    (
        prop::sample::select(vec![
            "add", "remove", "replace", "move", "copy", "test", "bogus",
        ]),
        path.clone(),
        path,
        json_value(),
    )
        .prop_map(
            |(op, path, from, value)| json!({"op": op, "path": path, "from": from, "value": value}),
        )
}

fn ctx_with(pairs: &[(&str, &str)]) -> deckhand::apiserver::context::Ctx {
    deckhand::apiserver::context::Ctx {
        user: deckhand::apiserver::auth::User {
            name: "fuzz".into(),
            uid: String::new(),
            groups: Vec::new(),
        },
        query: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: Default::default(),
        content_type: String::new(),
        table: false,
        shape: Default::default(),
        protobuf: false,
        warnings: Vec::new(),
        pod_node: None,
        create_name: None,
        used_on_node: None,
        manager: String::new(),
    }
}

/// Found by fuzz_patch_json: a JSON patch whose later op fails made the
/// json-patch crate's undo of the earlier ops panic ("unable to undo
/// applied patches"), a panic on a client's PATCH. Now a clean 422.
#[test]
fn regression_json_patch_undo() {
    let ops = br#"[{"op":"copy","from":"","path":"/"},{"op":"move","from":"/","path":""},{"op":"remove","path":""}]"#;
    let err = patch::apply("pods", &pod(), ops, PatchType::Json).unwrap_err();
    assert_eq!(
        err.code(),
        http::StatusCode::UNPROCESSABLE_ENTITY,
        "{err:?}"
    );
}

/// Found by fuzz_object_validation: a ConfigMap value (or a Secret's or
/// binaryData's) that is short and ends in '=' underflowed the data size
/// check: a panic in a debug build, a false "too long" 422 in release.
#[test]
fn regression_short_value_ending_in_equals() {
    for resource in ["configmaps", "secrets"] {
        let k = kind(resource);
        let object = json!({"apiVersion": "v1", "kind": k.kind,
            "metadata": {"name": "a", "namespace": "default"},
            "data": {"k": "=", "l": "a="}, "binaryData": {"m": "=="}});
        let causes = deckhand::apiserver::kinds::validate(k, &object);
        assert!(
            causes.iter().all(|c| c.reason != "FieldValueTooLong"),
            "{resource}: {causes:?}"
        );
    }
}
