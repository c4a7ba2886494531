//! The CronJob controller with the Job controller: jobs named for their
//! scheduled minute, Forbid while one runs, lastSuccessfulTime, history.

use deckhand::controllers::{cronjob, job};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;

use crate::harness::{self, Plane, Running, active, finish, pods, wait};

fn complete(j: &Job) -> bool {
    j.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Complete" && c.status == "True")
        })
}

async fn jobs_of(client: &kube::Client, ns: &str) -> Vec<Job> {
    let mut v = Api::<Job>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    v.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    v
}

/// Finishes the running pod of job `name` successfully.
async fn finish_job(client: &kube::Client, ns: &str, name: &str) {
    let sel = format!("job-name={name}");
    let pod = wait(&format!("the pod of {name}"), || async {
        pods(client, ns, &sel).await.into_iter().find(active)
    })
    .await;
    finish(client, ns, pod.metadata.name.as_deref().unwrap(), 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cronjobs_against_the_stock_apiserver() {
    let Some(plane) = Plane::start("cronjobs_against_the_stock_apiserver") else {
        return;
    };
    let client = plane.client().await;
    let _jobs = Running::spawn(job::run(
        client.clone(),
        Default::default(),
        harness::never(),
    ));
    let _cronjobs = Running::spawn(cronjob::run(client.clone(), harness::never()));
    let ns = "cron";
    harness::namespace(&client, ns).await;
    let cj: CronJob = serde_json::from_value(json!({
        "metadata": {"name": "tick"},
        "spec": {
            "schedule": "@every 2s", "concurrencyPolicy": "Forbid", "timeZone": "Etc/UTC",
            "successfulJobsHistoryLimit": 1,
            "jobTemplate": {"metadata": {"labels": {"app": "tick"}}, "spec": {"template": {"spec": {
                "restartPolicy": "Never", "containers": [harness::container()]}}}},
        },
    }))
    .unwrap();
    let api: Api<CronJob> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &cj).await.unwrap();

    let first = wait("the first job", || async {
        jobs_of(&client, ns).await.into_iter().next()
    })
    .await;
    let name = first.metadata.name.clone().unwrap();
    let minutes: i64 = name.strip_prefix("tick-").unwrap().parse().unwrap();
    let stamp = &first.metadata.annotations.as_ref().unwrap()[cronjob::SCHEDULED_ANNOTATION];
    let at: jiff::Timestamp = stamp.parse().unwrap();
    assert_eq!(
        at.as_second() / 60,
        minutes,
        "named for its scheduled minute ({stamp})"
    );
    assert_eq!(first.metadata.labels.as_ref().unwrap()["app"], "tick");
    let owner = &first.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("CronJob", Some(true))
    );
    let status = wait("tick's status", || async {
        let c = api.get("tick").await.unwrap();
        c.status
            .filter(|s| s.active.as_ref().is_some_and(|a| a.len() == 1))
    })
    .await;
    assert!(status.last_schedule_time.is_some());

    // Forbid: nothing new while the first runs.
    wait("a JobAlreadyActive event", || async {
        let events = Api::<Event>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .unwrap();
        events
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("JobAlreadyActive"))
    })
    .await;
    assert_eq!(jobs_of(&client, ns).await.len(), 1);

    finish_job(&client, ns, &name).await;
    let second = wait("a second job", || async {
        jobs_of(&client, ns)
            .await
            .into_iter()
            .find(|j| j.metadata.name.as_deref() != Some(&name))
    })
    .await;
    let st = wait("lastSuccessfulTime", || async {
        api.get("tick")
            .await
            .unwrap()
            .status
            .filter(|s| s.last_successful_time.is_some())
    })
    .await;
    assert!(st.last_schedule_time.unwrap().0 >= at);

    // History: once the second completes, the first goes (limit 1).
    finish_job(&client, ns, second.metadata.name.as_deref().unwrap()).await;
    wait("the first job deleted", || async {
        let jobs = jobs_of(&client, ns).await;
        let first_left = jobs.iter().any(|j| {
            j.metadata.name.as_deref() == Some(&name) && j.metadata.deletion_timestamp.is_none()
        });
        (!first_left).then_some(())
    })
    .await;
    let done = jobs_of(&client, ns)
        .await
        .into_iter()
        .filter(|j| complete(j) && j.metadata.deletion_timestamp.is_none())
        .count();
    assert!(done <= 1, "{done} complete jobs kept");
    drop(plane);
}
