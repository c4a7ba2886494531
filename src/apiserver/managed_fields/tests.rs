//! Unit tests of field ownership.

use super::*;

fn a<'x>(manager: &'x str, force: bool) -> Apply<'x> {
    Apply {
        resource: "configmaps",
        api_version: "v1",
        manager,
        subresource: "",
        force,
        now: "2026-01-01T00:00:00Z",
    }
}

#[test]
fn sets_round_trip_through_fields_v1() {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"},
        "finalizers": ["x"]},
        "spec": {"containers": [{"name": "c", "image": "i", "args": ["1", "2"]}]}});
    let set = field_set("pods", &pod, false);
    let v1 = to_fields_v1(&set);
    assert_eq!(
        v1["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"],
        json!({".": {}, "f:args": {}, "f:image": {}, "f:name": {}})
    );
    assert_eq!(v1["f:metadata"]["f:finalizers"], json!({"v:\"x\"": {}}));
    assert!(v1["f:metadata"].get("f:name").is_none());
    assert_eq!(from_fields_v1(&v1), set);
    let item: Path = vec![
        "f:spec".into(),
        "f:containers".into(),
        "k:{\"name\":\"c\"}".into(),
        "f:image".into(),
    ];
    assert_eq!(get(&pod, &item), Some(&json!("i")));
    assert_eq!(display(&item), ".spec.containers[name=\"c\"].image");
}

#[test]
fn conflicts_force_and_removal() {
    let cfg_a = json!({"metadata": {"name": "m"}, "data": {"x": "1", "y": "2"}});
    let live = apply(&a("a", false), None, &cfg_a).unwrap();
    assert_eq!(live["data"], json!({"x": "1", "y": "2"}));
    // Same value from another manager: shared, no conflict.
    let live = apply(&a("b", false), Some(&live), &json!({"data": {"x": "1"}})).unwrap();
    // Different value: conflict, unless forced.
    let err = apply(&a("b", false), Some(&live), &json!({"data": {"y": "3"}})).unwrap_err();
    assert!(err.to_string().contains("conflict with \"a\""), "{err}");
    let live = apply(&a("b", true), Some(&live), &json!({"data": {"y": "3"}})).unwrap();
    assert_eq!(live["data"]["y"], "3");
    // b's last apply dropped x, so x goes when a stops applying it.
    let live = apply(&a("a", false), Some(&live), &json!({"data": {}})).unwrap();
    assert_eq!(live["data"], json!({"y": "3"}));
    // A repeated apply changes nothing.
    let again = apply(&a("b", false), Some(&live), &json!({"data": {"y": "3"}})).unwrap();
    assert_eq!(again, live);
}
