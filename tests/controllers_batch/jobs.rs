//! The Job controller: completions with parallelism, failures backing off
//! to backoffLimit, podFailurePolicy FailJob, ttlSecondsAfterFinished.

use std::time::{Duration, Instant};

use deckhand::controllers::job::{self, JobConfig, plan::Backoff};
use k8s_openapi::api::batch::v1::{Job, JobCondition};
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};

use crate::harness::{self, Plane, Running, active, finish, make_ready, pods, wait};

fn job(name: &str, spec: Value) -> Job {
    let mut full = json!({
        "template": {"spec": {"restartPolicy": "Never", "containers": [harness::container()]}},
    });
    for (k, v) in spec.as_object().into_iter().flatten() {
        full[k] = v.clone();
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": full})).unwrap()
}

fn condition<'a>(j: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    j.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

async fn get(api: &Api<Job>, name: &str) -> Job {
    api.get(name).await.unwrap()
}

const SHORT: Backoff = Backoff {
    base: Duration::from_secs(3),
    max: Duration::from_secs(8),
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_against_the_stock_apiserver() {
    let Some(plane) = Plane::start("jobs_against_the_stock_apiserver") else {
        return;
    };
    let client = plane.client().await;
    let _jobs = Running::spawn(job::run(
        client.clone(),
        JobConfig { backoff: SHORT },
        harness::never(),
    ));
    completions_with_parallelism(&client).await;
    failures_back_off_to_the_limit(&client).await;
    fail_job_rule_and_ttl(&client).await;
    drop(plane);
}

async fn completions_with_parallelism(client: &kube::Client) {
    let ns = "job-complete";
    harness::namespace(client, ns).await;
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    let created = api
        .create(
            &PostParams::default(),
            &job("pi", json!({"completions": 3, "parallelism": 2})),
        )
        .await
        .unwrap();
    let uid = created.metadata.uid.clone().unwrap();
    let sel = "batch.kubernetes.io/job-name=pi";
    let mut finished = 0;
    while finished < 3 {
        let running = wait("a running pod of pi", || async {
            let all = pods(client, ns, sel).await;
            let running: Vec<_> = all.into_iter().filter(active).collect();
            (!running.is_empty()).then_some(running)
        })
        .await;
        assert!(
            running.len() <= 2,
            "parallelism 2: {} pods run",
            running.len()
        );
        let p = &running[0];
        let meta = &p.metadata;
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Job", uid.as_str(), Some(true))
        );
        assert!(
            meta.finalizers
                .iter()
                .flatten()
                .any(|f| f == "batch.kubernetes.io/job-tracking")
        );
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels["batch.kubernetes.io/controller-uid"], uid);
        assert_eq!(labels["job-name"], "pi");
        assert!(meta.name.as_ref().unwrap().starts_with("pi-"));
        make_ready(client, ns, meta.name.as_ref().unwrap()).await;
        wait("status.ready", || async {
            let j = get(&api, "pi").await;
            (j.status.as_ref()?.ready? >= 1).then_some(())
        })
        .await;
        finish(client, ns, meta.name.as_ref().unwrap(), 0).await;
        finished += 1;
        wait("the success counted", || async {
            let j = get(&api, "pi").await;
            let st = j.status.as_ref()?;
            (st.succeeded.unwrap_or(0) >= finished).then_some(())
        })
        .await;
    }
    let done = wait("pi Complete", || async {
        let j = get(&api, "pi").await;
        condition(&j, "Complete").is_some().then_some(j)
    })
    .await;
    let st = done.status.as_ref().unwrap();
    assert_eq!(st.succeeded, Some(3));
    assert_eq!(st.active, None);
    assert!(st.completion_time.is_some() && st.start_time.is_some());
    let unc = st.uncounted_terminated_pods.as_ref().unwrap();
    assert!(unc.succeeded.is_none() && unc.failed.is_none());
    let met = condition(&done, "SuccessCriteriaMet").expect("SuccessCriteriaMet");
    assert_eq!(met.reason.as_deref(), Some("CompletionsReached"));
    let all = pods(client, ns, sel).await;
    assert_eq!(all.len(), 3, "no pod more than completions");
    assert!(
        all.iter()
            .all(|p| p.metadata.finalizers.iter().flatten().next().is_none())
    );
}

async fn failures_back_off_to_the_limit(client: &kube::Client) {
    let ns = "job-backoff";
    harness::namespace(client, ns).await;
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    api.create(
        &PostParams::default(),
        &job("flaky", json!({"completions": 1, "backoffLimit": 1})),
    )
    .await
    .unwrap();
    let sel = "job-name=flaky";
    let mut gaps = Vec::new();
    for round in 0..2 {
        let p = wait("a running flaky pod", || async {
            pods(client, ns, sel).await.into_iter().find(active)
        })
        .await;
        finish(client, ns, p.metadata.name.as_deref().unwrap(), 1).await;
        let failed_at = Instant::now();
        if round == 0 {
            wait("a replacement pod", || async {
                pods(client, ns, sel).await.into_iter().find(active)
            })
            .await;
            gaps.push(failed_at.elapsed());
        }
    }
    assert!(
        // finishedAt is kept to the second, so the 3 s may look 2.
        gaps[0] >= Duration::from_millis(1800),
        "re-created after the back-off (3 s), not at once: {gaps:?}"
    );
    let failed = wait("flaky Failed", || async {
        let j = get(&api, "flaky").await;
        condition(&j, "Failed").is_some().then_some(j)
    })
    .await;
    let cond = condition(&failed, "Failed").unwrap();
    assert_eq!(cond.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(
        cond.message.as_deref(),
        Some("Job has reached the specified backoff limit")
    );
    assert!(condition(&failed, "FailureTarget").is_some());
    let st = failed.status.unwrap();
    assert_eq!(st.failed, Some(2));
    assert_eq!(st.completion_time, None);
    assert_eq!(pods(client, ns, sel).await.len(), 2);
}

async fn fail_job_rule_and_ttl(client: &kube::Client) {
    let ns = "job-policy";
    harness::namespace(client, ns).await;
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    let spec = json!({
        "completions": 2, "parallelism": 2, "backoffLimit": 6, "ttlSecondsAfterFinished": 2,
        "podFailurePolicy": {"rules": [
            {"action": "FailJob", "onExitCodes": {"containerName": "c", "operator": "In", "values": [42]}},
        ]},
    });
    api.create(&PostParams::default(), &job("strict", spec))
        .await
        .unwrap();
    let sel = "job-name=strict";
    let running = wait("two strict pods", || async {
        let r: Vec<_> = pods(client, ns, sel)
            .await
            .into_iter()
            .filter(active)
            .collect();
        (r.len() == 2).then_some(r)
    })
    .await;
    let name = running[0].metadata.name.clone().unwrap();
    finish(client, ns, &name, 42).await;
    let failed = wait("strict Failed", || async {
        let j = get(&api, "strict").await;
        condition(&j, "Failed").is_some().then_some(j)
    })
    .await;
    let cond = condition(&failed, "Failed").unwrap();
    assert_eq!(cond.reason.as_deref(), Some("PodFailurePolicy"));
    assert_eq!(
        cond.message.as_deref(),
        Some(format!("Container c for pod {ns}/{name} failed with exit code 42 matching FailJob rule at index 0").as_str())
    );
    assert!(
        pods(client, ns, sel).await.iter().all(|p| !active(p)),
        "the other pod is stopped"
    );
    wait("strict deleted after its TTL", || async {
        match api.get_opt("strict").await.unwrap() {
            None => Some(()),
            Some(j) => j.metadata.deletion_timestamp.map(|_| ()),
        }
    })
    .await;
}
