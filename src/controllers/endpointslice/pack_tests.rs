use super::*;
use serde_json::json;

fn svc() -> Service {
    serde_json::from_value(
        json!({"metadata": {"name": "web", "namespace": "ns", "uid": "svc-uid",
        "labels": {"app": "web"}},
        "spec": {"clusterIP": "10.96.0.10", "ipFamilies": ["IPv4"],
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}),
    )
    .unwrap()
}

fn ep(i: u32) -> Endpoint {
    Endpoint {
        addresses: vec![std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string()],
        conditions: Some(EndpointConditions {
            ready: Some(true),
            serving: Some(true),
            terminating: Some(false),
        }),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            uid: Some(format!("pod-{i}")),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn http() -> Vec<EndpointPort> {
    vec![EndpointPort {
        name: Some("http".into()),
        port: Some(80),
        protocol: Some("TCP".into()),
        app_protocol: None,
    }]
}

fn desired(n: u32) -> BTreeMap<String, Desired> {
    let eps = (0..n).map(|i| (http(), ep(i))).collect();
    BTreeMap::from([("IPv4".to_string(), group(eps))])
}

/// The plan's creations, named as the apiserver would.
fn apply(plan: Plan, mut existing: Vec<EndpointSlice>) -> Vec<EndpointSlice> {
    existing.retain(|s| !plan.delete.contains(s.metadata.name.as_ref().unwrap()));
    for u in plan.update {
        let i = existing
            .iter()
            .position(|s| s.metadata.name == u.metadata.name)
            .unwrap();
        existing[i] = u;
    }
    for (n, mut c) in plan.create.into_iter().enumerate() {
        c.metadata.name = Some(format!("web-{}-{n}", existing.len()));
        existing.push(c);
    }
    existing
}

#[test]
fn one_hundred_fifty_endpoints_make_two_slices() {
    let s = svc();
    let plan = plan(&s, &[], &desired(150));
    assert_eq!(plan.create.len(), 2);
    let mut sizes: Vec<usize> = plan.create.iter().map(|s| s.endpoints.len()).collect();
    sizes.sort();
    assert_eq!(sizes, [50, 100]);
    let first = &plan.create[0];
    assert_eq!(first.metadata.generate_name.as_deref(), Some("web-"));
    let labels = first.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[SERVICE_NAME_LABEL], "web");
    assert_eq!(labels[MANAGED_BY_LABEL], MANAGED_BY);
    assert_eq!(labels["app"], "web");
    let owner = &first.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("Service", "svc-uid", Some(true))
    );
}

#[test]
fn changes_update_slices_in_place() {
    let s = svc();
    let slices = apply(plan(&s, &[], &desired(150)), vec![]);
    let refs: Vec<&EndpointSlice> = slices.iter().collect();
    // Nothing changed: nothing to do.
    let same = plan(&s, &refs, &desired(150));
    assert!(
        same.create.is_empty() && same.update.is_empty() && same.delete.is_empty(),
        "{}",
        summary(&same)
    );
    // One endpoint fewer and one not ready: one or two updates, no create.
    let mut d = desired(149);
    let group = d.get_mut("IPv4").unwrap().values_mut().next().unwrap();
    group.1[3].conditions.as_mut().unwrap().ready = Some(false);
    let p = plan(&s, &refs, &d);
    assert!(
        p.create.is_empty() && p.delete.is_empty(),
        "{}",
        summary(&p)
    );
    assert!(!p.update.is_empty());
    let after = apply(p, slices.clone());
    assert_eq!(after.len(), 2);
    let total: usize = after.iter().map(|s| s.endpoints.len()).sum();
    assert_eq!(total, 149);
    // Down to 10: one slice emptied is reused or deleted, never more than 100.
    let refs: Vec<&EndpointSlice> = after.iter().collect();
    let p = plan(&s, &refs, &desired(10));
    let fewer = apply(p, after.clone());
    assert!(fewer.iter().all(|s| s.endpoints.len() <= MAX_PER_SLICE));
    let total: usize = fewer.iter().map(|s| s.endpoints.len()).sum();
    assert_eq!(total, 10);
}

#[test]
fn no_endpoints_keep_one_placeholder() {
    let s = svc();
    let p = plan(
        &s,
        &[],
        &BTreeMap::from([("IPv4".to_string(), Desired::new())]),
    );
    assert_eq!(p.create.len(), 1);
    assert!(p.create[0].endpoints.is_empty() && p.create[0].ports.is_none());
    let slices = apply(p, vec![]);
    let refs: Vec<&EndpointSlice> = slices.iter().collect();
    let again = plan(
        &s,
        &refs,
        &BTreeMap::from([("IPv4".to_string(), Desired::new())]),
    );
    assert!(
        again.create.is_empty() && again.delete.is_empty() && again.update.is_empty(),
        "{}",
        summary(&again)
    );
    // Endpoints again: the placeholder is reused, not deleted and recreated.
    let p = plan(&s, &refs, &desired(3));
    assert!(
        p.create.is_empty() && p.delete.is_empty(),
        "{}",
        summary(&p)
    );
    assert_eq!(p.update[0].endpoints.len(), 3);
    assert_eq!(p.update[0].ports.as_deref(), Some(http().as_slice()));
}

#[test]
fn slices_of_another_service_uid_are_deleted() {
    let s = svc();
    let mut stale = apply(plan(&s, &[], &desired(2)), vec![]);
    stale[0].metadata.owner_references.as_mut().unwrap()[0].uid = "old-uid".into();
    let refs: Vec<&EndpointSlice> = stale.iter().collect();
    let p = plan(&s, &refs, &desired(2));
    assert_eq!(p.delete, vec![stale[0].metadata.name.clone().unwrap()]);
    assert_eq!(p.create.len(), 1);
}
