//! The objects a pod's env and image pulls refer to (config maps, secrets,
//! services), read from the apiserver when a container starts, as the
//! kubelet's Get strategy reads them.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::Client;
use kube::api::{Api, ListParams};

use crate::node::podspec::ObjectLookup;

const CALL_TIMEOUT: Duration = Duration::from_secs(10);

pub struct ApiLookup {
    client: Client,
}

impl ApiLookup {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// The services of `namespace` and the `kubernetes` service of
    /// `default`, for service-link env.
    pub async fn services(&self, namespace: &str) -> Result<Vec<Service>, String> {
        let list = |ns: String| {
            let api: Api<Service> = Api::namespaced(self.client.clone(), &ns);
            async move {
                tokio::time::timeout(CALL_TIMEOUT, api.list(&ListParams::default()))
                    .await
                    .map_err(|_| format!("listing services in {ns} timed out"))?
                    .map(|l| l.items)
                    .map_err(|e| format!("listing services in {ns}: {e}"))
            }
        };
        let mut out = list(namespace.to_string()).await?;
        if namespace != "default" {
            out.extend(
                list("default".to_string())
                    .await?
                    .into_iter()
                    .filter(|s| s.metadata.name.as_deref() == Some("kubernetes")),
            );
        }
        Ok(out)
    }
}

async fn get_opt<K>(api: Api<K>, what: &str, name: &str) -> Result<Option<K>, String>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    tokio::time::timeout(CALL_TIMEOUT, api.get_opt(name))
        .await
        .map_err(|_| format!("getting {what} {name:?} timed out"))?
        .map_err(|e| format!("getting {what} {name:?}: {e}"))
}

#[async_trait::async_trait]
impl ObjectLookup for ApiLookup {
    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, String> {
        get_opt(
            Api::namespaced(self.client.clone(), namespace),
            "configmap",
            name,
        )
        .await
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, String> {
        get_opt(
            Api::namespaced(self.client.clone(), namespace),
            "secret",
            name,
        )
        .await
    }
}
