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
            let mut names = self.names.lock().unwrap();
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
            let dir = self.config.cni_conf_dir.clone();
            match blocking(move || cni::load_default(&dir))
                .await
                .and_then(|r| r.map_err(|e| SandboxError::failed("network plugin not ready", e)))
            {
                Ok(list) => Some(list),
                Err(e) => {
                    self.names.lock().unwrap().remove(&reserved);
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
                self.names.lock().unwrap().remove(&reserved);
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
        let dir = record.dir.join("ns");
        blocking(move || std::fs::create_dir_all(dir))
            .await?
            .map_err(|e| SandboxError::failed("creating sandbox dir", e))?;

        if let Some(cg) = record.cgroup.clone() {
            blocking(move || cgroup::create(&cg))
                .await?
                .map_err(|e| SandboxError::failed("creating pod cgroup", e))?;
        }

        let args = InfraArgs {
            namespaces: record.namespaces.clone(),
            hostname: record.owns(NsKind::Uts).then(|| record.hostname.clone()),
        };
        let exe = self.config.infra_exe.clone();
        let cg = record.cgroup.clone();
        let userns = record.userns.clone();
        let infra = blocking(move || {
            let maps = userns
                .as_ref()
                .map(|u| (u.uids.as_slice(), u.gids.as_slice()));
            infra::spawn(&exe, &args, cg.as_deref(), maps)
        })
        .await?;
        let infra = infra.map_err(|e| SandboxError::failed("starting infra process", e))?;
        record.infra = Some(infra);
        self.save(record).await?;
        let handle =
            watch_infra(infra).map_err(|e| SandboxError::failed("watching infra process", e))?;

        let pinned: Vec<(PathBuf, NsKind)> = record
            .namespaces
            .iter()
            .map(|k| (record.ns_path(*k), *k))
            .collect();
        let pins = pinned.clone();
        blocking(move || {
            pins.iter()
                .try_for_each(|(path, kind)| ns::pin(infra.pid, *kind, path))
        })
        .await?
        .map_err(|e| SandboxError::failed("pinning namespace", e))?;

        let sysctls = plan.sysctls.clone();
        blocking(move || sysctl::apply(&pinned, &sysctls))
            .await?
            .map_err(|e| match e {
                sysctl::SysctlError::InvalidName(_) | sysctl::SysctlError::NotNamespaced(_) => {
                    SandboxError::InvalidArgument(e.to_string())
                }
                e => SandboxError::failed("applying sysctls", e),
            })?;

        if let Some(network) = record.network.as_mut() {
            network.attached = true;
            self.save(record).await?;
            let (ips, result, loopback) = self.attach(record).await?;
            let network = record.network.as_mut().expect("network set");
            network.result = Some(result);
            network.loopback = loopback;
            record.ips = ips;
        }

        let (rec, dns) = (record.clone(), plan.dns.clone());
        blocking(move || write_files(&rec, dns.as_ref())).await??;
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

    pub(super) fn exec(&self) -> cni::Exec {
        cni::Exec {
            bin_dirs: self.config.cni_bin_dirs.clone(),
            timeout: self.config.cni_timeout,
        }
    }

    /// CNI ADD: loopback (when the plugin exists, as containerd does), then
    /// the pod network on eth0.
    pub(super) async fn attach(
        &self,
        record: &SandboxRecord,
    ) -> Result<(Vec<String>, serde_json::Value, bool), SandboxError> {
        let network = record.network.as_ref().expect("network planned");
        let exec = self.exec();
        let loopback = self
            .config
            .cni_bin_dirs
            .iter()
            .any(|d| d.join("loopback").is_file());
        if loopback {
            exec.add(&loopback_list(), &self.attachment(record, "lo", vec![]))
                .await
                .map_err(|e| SandboxError::failed("setting up loopback", e))?;
        }
        let att = self.attachment(record, "eth0", network.port_mappings.clone());
        let result = exec.add(&network.list, &att).await.map_err(|e| {
            SandboxError::failed(&format!("CNI ADD on network {:?}", network.list.name), e)
        })?;
        Ok((cni::result_ips(&result, "eth0"), result, loopback))
    }
}

/// resolv.conf, hostname and hosts in the sandbox dir. Blocking.
pub(super) fn write_files(
    record: &SandboxRecord,
    dns: Option<&cri::DnsConfig>,
) -> Result<(), SandboxError> {
    let write = |name: &str, body: &str| {
        std::fs::write(record.dir.join(name), body)
            .map_err(|e| SandboxError::failed(&format!("writing {name}"), e))
    };
    let resolv = match files::resolv_conf(dns) {
        Some(r) => r,
        None => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
    };
    write("resolv.conf", &resolv)?;
    write("hostname", &format!("{}\n", record.hostname))?;
    let hosts = if record.owns(NsKind::Net) {
        files::hosts(&record.hostname, &record.ips)
    } else {
        std::fs::read_to_string("/etc/hosts").unwrap_or_default()
    };
    write("hosts", &hosts)
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
