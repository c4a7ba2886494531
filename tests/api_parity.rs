//! The differential suite (issue 16): the same requests, in the same order,
//! to the bundled apiserver and to the stock kube-apiserver v1.36.2 of
//! ../shared/k8s (with its kube-controller-manager, whose namespace and
//! service-account controllers are part of what a client sees). Responses
//! are normalised (uids, resourceVersions, timestamps, generated names,
//! allocated IPs and ports) and compared field by field; a difference fails
//! the suite unless it is on [`allow::ALLOWED`], where each entry says why
//! deckhand differs on purpose. Skips plainly without the stock binaries.

mod common;

#[path = "api_parity/allow.rs"]
mod allow;
#[path = "api_parity/compare.rs"]
mod compare;
#[path = "api_parity/harness.rs"]
mod harness;
#[path = "api_parity/steps_core.rs"]
mod steps_core;
#[path = "api_parity/steps_lifecycle.rs"]
mod steps_lifecycle;
#[path = "api_parity/steps_validation.rs"]
mod steps_validation;
#[path = "api_parity/steps_workloads.rs"]
mod steps_workloads;
#[path = "api_parity/workload_cases.rs"]
mod workload_cases;

use harness::{Pair, Report};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundled_apiserver_answers_as_kube_apiserver() {
    if let Err(why) = common::stock::k8s_bin() {
        common::say_skipped("api_parity", &why);
        return;
    }
    let pair = Pair::start().await;
    let mut report = Report::default();
    steps_core::run(&pair, &mut report).await;
    steps_validation::run(&pair, &mut report).await;
    steps_lifecycle::run(&pair, &mut report).await;
    steps_workloads::run(&pair, &mut report).await;
    report.finish();
}
