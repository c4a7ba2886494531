//! RunPodSandbox: makes the resources of a record in order, saving the
//! record before each, and rolls back on failure.

use super::*;

impl SandboxManager {
    /// RunPodSandbox. Runs to completion in its own task: a caller that
    /// gives up (a kubelet timeout drops the gRPC future) must not cut a
    /// creation or its rollback short and leak what was made so far.
    pub async fn run(
        self: &Arc<Self>,
        request: cri::RunPodSandboxRequest,
    ) -> Result<String, SandboxError> {
        let manager = self.clone();
        detached(async move { manager.run_to_end(request).await }).await
    }

    pub(super) async fn run_to_end(
        self: &Arc<Self>,
        request: cri::RunPodSandboxRequest,
    ) -> Result<String, SandboxError> {
        let plan = Plan::from_request(request)?;
        if plan.userns.is_some()
            && let Err(why) = self.user_namespaces_supported().await
        {
            return Err(SandboxError::InvalidArgument(format!(
                "user namespaces are not available on this node: {why}"
            )));
        }
        let id = new_id();
        let reserved = record::reserved_name(&plan.name, &plan.namespace, &plan.uid, plan.attempt);
        {
            let mut names = self.names.lock();
            if let Some(owner) = names.get(&reserved) {
                return Err(SandboxError::AlreadyExists(format!(
                    "pod sandbox name {reserved:?} is reserved for {owner}"
                )));
            }
            names.insert(reserved.clone(), id.clone());
        }
        let network = if plan.network_mode == cri::NamespaceMode::Node as i32 {
            None
        } else {
            match self
                .step(Step::LoadNetwork, self.kernel.load_network())
                .await
            {
                Ok(list) => Some(list),
                Err(e) => {
                    self.names.lock().remove(&reserved);
                    return Err(e);
                }
            }
        };
        let mut record = plan.record(id.clone(), &self.config.run_dir, network);
        let started = std::time::Instant::now();
        match self.create(&mut record, &plan).await {
            Ok(handle) => {
                tracing::info!(%id, pod = %reserved, ip = ?record.ips.first(), elapsed = ?started.elapsed(), "sandbox ready");
                self.insert(record, Some(handle));
                Ok(id)
            }
            Err(e) => {
                tracing::warn!(%id, error = %e, "RunPodSandbox failed; rolling back");
                if let Err(re) = self.release(&mut record, None, true).await {
                    tracing::error!(%id, error = %re, "rollback incomplete");
                }
                self.names.lock().remove(&reserved);
                Err(e)
            }
        }
    }

    /// Makes every resource in `record`, saving it before each step so that
    /// [`Self::release`] can undo any prefix of them.
    pub(super) async fn create(
        &self,
        record: &mut SandboxRecord,
        plan: &Plan,
    ) -> Result<InfraHandle, SandboxError> {
        self.save(record).await?;
        let kernel = &self.kernel;
        self.step(Step::Dir, kernel.make_dir(record.dir.join("ns")))
            .await?;

        if let Some(cg) = record.cgroup.clone() {
            self.step(Step::Cgroup, kernel.create_cgroup(cg)).await?;
        }

        let spawn = InfraSpawn {
            args: InfraArgs {
                namespaces: record.namespaces.clone(),
                hostname: record.owns(NsKind::Uts).then(|| record.hostname.clone()),
            },
            cgroup: record.cgroup.clone(),
            userns: record.userns.clone(),
        };
        let infra = self.step(Step::Infra, kernel.spawn_infra(spawn)).await?;
        record.infra = Some(infra);
        self.save(record).await?;
        let handle = kernel
            .watch_infra(infra)
            .map_err(|e| SandboxError::failed("watching infra process", e))?;

        let pinned: Vec<(PathBuf, NsKind)> = record
            .namespaces
            .iter()
            .map(|k| (record.ns_path(*k), *k))
            .collect();
        self.step(Step::Pin, kernel.pin_namespaces(infra.pid, pinned.clone()))
            .await?;
        self.step(
            Step::Sysctls,
            kernel.apply_sysctls(pinned, plan.sysctls.clone()),
        )
        .await?;

        if let Some(network) = record.network.as_mut() {
            network.attached = true;
            self.save(record).await?;
            let (ips, result, loopback) = self.attach(record).await?;
            let network = record.network.as_mut().expect("network set");
            network.result = Some(result);
            network.loopback = loopback;
            record.ips = ips;
        }

        self.step(
            Step::Files,
            kernel.write_files(record.clone(), plan.dns.clone()),
        )
        .await?;
        record.state = SandboxState::Ready;
        self.save(record).await?;
        Ok(handle)
    }

    pub(super) fn attachment(
        &self,
        record: &SandboxRecord,
        ifname: &str,
        ports: Vec<PortMapping>,
    ) -> Attachment {
        Attachment {
            container_id: record.id.clone(),
            netns: record.ns_path(NsKind::Net),
            ifname: ifname.to_string(),
            args: vec![
                ("K8S_POD_NAMESPACE".into(), record.namespace.clone()),
                ("K8S_POD_NAME".into(), record.name.clone()),
                ("K8S_POD_INFRA_CONTAINER_ID".into(), record.id.clone()),
                ("K8S_POD_UID".into(), record.uid.clone()),
            ],
            port_mappings: ports,
        }
    }

    /// CNI ADD: loopback (when the plugin exists, as containerd does), then
    /// the pod network on eth0.
    pub(super) async fn attach(
        &self,
        record: &SandboxRecord,
    ) -> Result<(Vec<String>, serde_json::Value, bool), SandboxError> {
        let network = record.network.as_ref().expect("network planned");
        let loopback = self.kernel.has_loopback();
        if loopback {
            let att = self.attachment(record, "lo", vec![]);
            self.step(Step::CniAdd, self.kernel.cni_add(loopback_list(), att))
                .await?;
        }
        let att = self.attachment(record, "eth0", network.port_mappings.clone());
        let result = self
            .step(Step::CniAdd, self.kernel.cni_add(network.list.clone(), att))
            .await?;
        Ok((cni::result_ips(&result, "eth0"), result, loopback))
    }
}

/// containerd's loopback network, run with ifname `lo`.
pub(super) fn loopback_list() -> NetworkList {
    NetworkList {
        name: "cni-loopback".into(),
        cni_version: "0.3.1".into(),
        plugins: vec![serde_json::json!({"type": "loopback"})],
        source: PathBuf::new(),
    }
}
