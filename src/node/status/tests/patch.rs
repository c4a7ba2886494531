//! Transition times and the status patch.

use serde_json::json;

use super::*;

#[test]
fn transition_times_are_kept_while_the_status_is_unchanged() {
    let p = one("Always");
    let i = Inputs::new(ready_sb(), vec![cri("app", 0, 1, None, "")]);
    let first = i.status(&p, 10);
    let p2 = with_status(p.clone(), first.clone());
    let second = i.status(&p2, 50);
    assert_eq!(first, second, "nothing changed, not even times");
    assert_eq!(status_patch(&first, &second), None);
    assert_eq!(second.start_time, Some(at(10)), "startTime kept once set");
    // Ready goes False: only its (and ContainersReady's) transition time moves.
    let stopped = Inputs::new(ready_sb(), vec![cri("app", 0, 1, Some(1), "Error")]);
    let third = stopped.status(&p2, 60);
    assert_eq!(cond(&third, "Ready").last_transition_time, Some(at(60)));
    assert_eq!(
        cond(&third, "ContainersReady").last_transition_time,
        Some(at(60))
    );
    assert_eq!(
        cond(&third, "PodScheduled").last_transition_time,
        Some(at(10))
    );
    assert_eq!(
        cond(&third, "Initialized").last_transition_time,
        Some(at(10))
    );
}

#[test]
fn status_patch_is_a_strategic_merge_patch_with_uid() {
    let p = one("Always");
    let pending = Inputs::new(vec![], vec![]).status(&p, 0);
    let p2 = with_status(p.clone(), pending.clone());
    let running = Inputs::new(ready_sb(), vec![cri("app", 0, 1, None, "")]).status(&p2, 10);
    let patch = pod_status_patch(&p2, &running).unwrap();
    assert_eq!(patch["metadata"], json!({"uid": "u1"}));
    let st = &patch["status"];
    assert_eq!(st["phase"], "Running");
    assert_eq!(st["podIP"], "10.88.0.5");
    assert_eq!(st["podIPs"], json!([{"ip": "10.88.0.5"}]));
    // Conditions merge by type: only the changed ones, plus the order directive.
    let changed: Vec<_> = st["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        changed,
        ["PodReadyToStartContainers", "Ready", "ContainersReady"]
    );
    assert_eq!(
        st["conditions"][0],
        json!({"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": "2023-11-14T22:13:30Z"})
    );
    assert_eq!(
        st["$setElementOrder/conditions"].as_array().unwrap().len(),
        5
    );
    // Container statuses are atomic: the whole list.
    assert_eq!(st["containerStatuses"].as_array().unwrap().len(), 1);
    assert!(
        st.get("startTime").is_none(),
        "unchanged fields are left out"
    );
    assert!(pod_status_patch(&with_status(p, running.clone()), &running).is_none());
}

#[test]
fn status_patch_removes_and_deletes() {
    let old: PodStatus = serde_json::from_value(json!({
        "phase": "Running", "podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}],
        "conditions": [{"type": "A", "status": "True"}, {"type": "B", "status": "True"}]}))
    .unwrap();
    let new: PodStatus = serde_json::from_value(json!({
        "phase": "Running", "podIPs": [{"ip": "10.0.0.1"}],
        "conditions": [{"type": "A", "status": "True"}]}))
    .unwrap();
    let patch = status_patch(&old, &new).unwrap();
    assert_eq!(
        patch,
        json!({"status": {
            "podIP": null,
            "podIPs": [{"$patch": "delete", "ip": "fd00::1"}],
            "$setElementOrder/podIPs": [{"ip": "10.0.0.1"}],
            "conditions": [{"$patch": "delete", "type": "B"}],
            "$setElementOrder/conditions": [{"type": "A"}],
        }})
    );
}
