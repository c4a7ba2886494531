//! The verbs' pure halves against odd client input.

use std::time::SystemTime;

use serde_json::json;

use crate::apiserver::context::Target;
use crate::apiserver::kinds;
use crate::apiserver::meta::meta_str;
use crate::apiserver::patch::{self, PatchType};
use crate::apiserver::resources;
use crate::apiserver::table;
use crate::apiserver::verbs::create::prepare_create;
use crate::apiserver::verbs::decode::{FieldValidation, normalize};
use crate::apiserver::verbs::update::{Fields, merge_update};

/// Odd shapes in every position a client controls must come back as
/// errors or normalized objects, never as a panic.
#[test]
fn odd_bodies_never_panic() {
    let odd = [
        json!(null),
        json!([]),
        json!("s"),
        json!(1),
        json!({}),
        json!({"metadata": null}),
        json!({"metadata": []}),
        json!({"metadata": "x"}),
        json!({"metadata": {"name": 5}}),
        json!({"metadata": {"name": "a", "labels": {"k": 1}}}),
        json!({"metadata": {"name": "a", "labels": {"bad key!": "v"}}}),
        json!({"metadata": {"name": "a"}, "spec": []}),
        json!({"metadata": {"name": "a"}, "spec": {"containers": [null, 1, {}]}}),
        json!({"metadata": {"name": "a"}, "spec": {"ports": [{"port": "x"}]}}),
        json!({"metadata": {"name": "a"}, "status": "x"}),
        json!({"metadata": {"generateName": "g-"}, "data": {"k": "v"}}),
        json!({"apiVersion": "v2", "metadata": {"name": "a"}}),
    ];
    let patches: [&[u8]; 6] = [
        b"[{\"op\":\"replace\",\"path\":\"\",\"value\":null}]",
        b"{\"spec\":{\"containers\":[{\"$patch\":\"delete\"}]}}",
        b"{\"$setElementOrder/x\":[1],\"$retainKeys\":[1],\"metadata\":{\"$deleteFromPrimitiveList/finalizers\":5}}",
        b"{\"metadata\":{\"ownerReferences\":[{\"$patch\":\"replace\"}]}}",
        b"{}",
        b"\x00\xff",
    ];
    for kind in resources::KINDS {
        for body in &odd {
            for mode in [FieldValidation::Strict, FieldValidation::Warn] {
                if let Ok((object, _)) = normalize(kind, mode, body.clone())
                    && let Ok(object) = prepare_create(kind, "default", object)
                {
                    let _ = table::row(kind, &object, SystemTime::now());
                    for p in patches {
                        for ty in [
                            PatchType::Json,
                            PatchType::Merge,
                            PatchType::Strategic,
                            PatchType::Apply,
                        ] {
                            if let Ok(patched) = patch::apply(kind.resource, &object, p, ty)
                                && let Ok((mut new, _)) = normalize(kind, mode, patched)
                            {
                                kinds::apply_defaults(kind, &mut new);
                                for sub in ["", "status"] {
                                    let t = Target {
                                        kind,
                                        namespace: "default".into(),
                                        name: meta_str(&object, "name").into(),
                                        subresource: sub.into(),
                                    };
                                    let _ = merge_update(
                                        &t,
                                        &object,
                                        new.clone(),
                                        &Fields::Updated { manager: "m" },
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
