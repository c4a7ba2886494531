//! Shared by the unit tests: pods from JSON (as the API serves them) and an
//! in-memory ObjectLookup.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};

use super::ObjectLookup;

pub fn pod(value: serde_json::Value) -> Pod {
    serde_json::from_value(value).expect("test pod parses")
}

/// A pod "web" in "ns" with uid "uid-1" and the given spec.
pub fn pod_with_spec(spec: serde_json::Value) -> Pod {
    pod(serde_json::json!({
        "metadata": {"name": "web", "namespace": "ns", "uid": "uid-1"},
        "spec": spec,
    }))
}

pub fn first_container(pod: &Pod) -> &Container {
    &pod.spec.as_ref().unwrap().containers[0]
}

#[derive(Default)]
pub struct FakeLookup {
    pub config_maps: HashMap<(String, String), ConfigMap>,
    pub secrets: HashMap<(String, String), Secret>,
    /// every lookup made, as "configmap ns/name" / "secret ns/name"
    pub calls: Mutex<Vec<String>>,
    /// when set, every lookup fails with this message
    pub fail: Option<String>,
}

impl FakeLookup {
    pub fn with_config_map(mut self, ns: &str, name: &str, data: &[(&str, &str)]) -> Self {
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": ns},
            "data": data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>(),
        }))
        .unwrap();
        self.config_maps.insert((ns.into(), name.into()), cm);
        self
    }

    pub fn with_secret(mut self, ns: &str, name: &str, data: &[(&str, &str)]) -> Self {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": ns},
            "data": data.iter().map(|(k, v)| (k.to_string(), b64.encode(v))).collect::<HashMap<_, _>>(),
        }))
        .unwrap();
        self.secrets.insert((ns.into(), name.into()), secret);
        self
    }
}

#[async_trait::async_trait]
impl ObjectLookup for FakeLookup {
    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, String> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("configmap {namespace}/{name}"));
        if let Some(msg) = &self.fail {
            return Err(msg.clone());
        }
        Ok(self
            .config_maps
            .get(&(namespace.to_string(), name.to_string()))
            .cloned())
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, String> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("secret {namespace}/{name}"));
        if let Some(msg) = &self.fail {
            return Err(msg.clone());
        }
        Ok(self
            .secrets
            .get(&(namespace.to_string(), name.to_string()))
            .cloned())
    }
}
