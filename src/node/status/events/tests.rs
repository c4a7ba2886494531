//! The EventCorrelator against client-go's behaviour.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::*;

fn at(secs: i64) -> Time {
    Time(Timestamp::from_second(1_700_000_000 + secs).unwrap())
}

fn pod() -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "ns1", "uid": "u1", "resourceVersion": "7"},
        "spec": {"initContainers": [{"name": "init"}], "containers": [{"name": "app"}]},
    }))
    .unwrap()
}

fn ev(reason: &str, message: &str) -> NewEvent {
    NewEvent {
        involved_object: container_ref(&pod(), "app"),
        type_: NORMAL.into(),
        reason: reason.into(),
        message: message.into(),
    }
}

#[test]
fn references_name_the_container_field() {
    let p = pod();
    assert_eq!(
        container_ref(&p, "app").field_path.as_deref(),
        Some("spec.containers{app}")
    );
    assert_eq!(
        container_ref(&p, "init").field_path.as_deref(),
        Some("spec.initContainers{init}")
    );
    let r = pod_ref(&p);
    assert_eq!(
        (
            r.kind.as_deref(),
            r.api_version.as_deref(),
            r.uid.as_deref()
        ),
        (Some("Pod"), Some("v1"), Some("u1"))
    );
    assert_eq!(r.field_path, None);
}

#[test]
fn first_event_is_created_as_the_recorder_makes_it() {
    let mut c = EventCorrelator::new("kubelet", "node1");
    let EventAction::Create(e) = c.record(ev(PULLING_IMAGE, "Pulling image \"busybox\""), at(0))
    else {
        panic!("expected a create")
    };
    assert_eq!(
        e.metadata.name.as_deref(),
        Some(format!("web.{:x}", (1_700_000_000i128) * 1_000_000_000).as_str())
    );
    assert_eq!(e.metadata.namespace.as_deref(), Some("ns1"));
    assert_eq!(e.count, Some(1));
    assert_eq!(e.first_timestamp, Some(at(0)));
    assert_eq!(e.last_timestamp, Some(at(0)));
    assert_eq!(e.type_.as_deref(), Some("Normal"));
    assert_eq!(e.reason.as_deref(), Some("Pulling"));
    let src = e.source.unwrap();
    assert_eq!(
        (src.component.as_deref(), src.host.as_deref()),
        (Some("kubelet"), Some("node1"))
    );
    assert_eq!(e.reporting_component.as_deref(), Some("kubelet"));
    assert_eq!(e.reporting_instance.as_deref(), Some("node1"));
}

#[test]
fn repeats_patch_count_and_last_timestamp() {
    let mut c = EventCorrelator::new("kubelet", "node1");
    let EventAction::Create(first) =
        c.record(ev(BACK_OFF_START_CONTAINER, "Back-off restarting"), at(0))
    else {
        panic!("expected a create")
    };
    for n in 2..=4 {
        let action = c.record(
            ev(BACK_OFF_START_CONTAINER, "Back-off restarting"),
            at(n * 10),
        );
        let EventAction::Patch {
            namespace,
            name,
            count,
            last_timestamp,
            patch,
        } = action
        else {
            panic!("expected a patch")
        };
        assert_eq!(
            (namespace.as_str(), Some(name.as_str())),
            ("ns1", first.metadata.name.as_deref())
        );
        assert_eq!(count, n as i32);
        assert_eq!(last_timestamp, at(n * 10));
        assert_eq!(
            patch,
            json!({"count": n, "lastTimestamp": serde_json::to_value(at(n * 10)).unwrap(), "message": "Back-off restarting"})
        );
    }
    // Another reason is another event.
    assert!(matches!(
        c.record(ev(KILLING_CONTAINER, "Stopping container app"), at(50)),
        EventAction::Create(_)
    ));
}

#[test]
fn ten_similar_messages_in_ten_minutes_are_combined() {
    let mut c = EventCorrelator::new("kubelet", "node1");
    for i in 0..9 {
        let action = c.record(ev(FAILED_TO_PULL_IMAGE, &format!("failed {i}")), at(i));
        assert!(
            matches!(action, EventAction::Create(_)),
            "event {i} is its own"
        );
    }
    let EventAction::Create(agg) = c.record(ev(FAILED_TO_PULL_IMAGE, "failed 9"), at(9)) else {
        panic!("expected the aggregate to be created")
    };
    assert_eq!(
        agg.message.as_deref(),
        Some("(combined from similar events): failed 9")
    );
    let EventAction::Patch {
        name, count, patch, ..
    } = c.record(ev(FAILED_TO_PULL_IMAGE, "failed 10"), at(10))
    else {
        panic!("expected the aggregate to be patched")
    };
    assert_eq!(Some(name.as_str()), agg.metadata.name.as_deref());
    assert_eq!(count, 2);
    assert_eq!(
        patch["message"],
        "(combined from similar events): failed 10"
    );
    // Eleven minutes later the similar-events window starts again.
    assert!(
        matches!(c.record(ev(FAILED_TO_PULL_IMAGE, "failed 11"), at(10 + 660)), EventAction::Create(e) if e.message.as_deref() == Some("failed 11"))
    );
}

#[test]
fn spam_filter_allows_25_then_one_per_five_minutes() {
    let mut c = EventCorrelator::new("kubelet", "node1");
    let mut sent = 0;
    for i in 0..30 {
        if !matches!(
            c.record(ev(&format!("Reason{i}"), "m"), at(0)),
            EventAction::Drop
        ) {
            sent += 1;
        }
    }
    assert_eq!(sent, 25);
    assert!(matches!(
        c.record(ev("Late", "m"), at(299)),
        EventAction::Drop
    ));
    assert!(!matches!(
        c.record(ev("Late", "m"), at(301)),
        EventAction::Drop
    ));
    // Another object has its own budget.
    let mut other = ev("Reason0", "m");
    other.involved_object.name = Some("db".into());
    other.involved_object.uid = Some("u2".into());
    assert!(matches!(c.record(other, at(301)), EventAction::Create(_)));
}

#[test]
fn two_events_in_one_second_get_two_names() {
    let mut c = EventCorrelator::new("kubelet", "node1");
    let t1 = Time(Timestamp::from_nanosecond(1_700_000_000_100_000_000).unwrap());
    let t2 = Time(Timestamp::from_nanosecond(1_700_000_000_200_000_000).unwrap());
    let (EventAction::Create(a), EventAction::Create(b)) = (
        c.record(ev(CREATED_CONTAINER, "Created container: app"), t1),
        c.record(ev(STARTED_CONTAINER, "Started container app"), t2),
    ) else {
        panic!("expected two creates")
    };
    assert_ne!(a.metadata.name, b.metadata.name);
    assert_eq!(a.metadata.name.as_deref(), Some("web.17979cfe3c1fe100"));
    assert_eq!(a.first_timestamp, Some(at(0)), "stamped to the second");
}
