//! The pod network `up` uses: the machine's CNI config when it has one
//! (a cluster's CNI, or a package's), else a default one written into the
//! data dir: bridge `deckhand0` + host-local (10.85.0.0/16, its leases
//! under the data dir) + portmap, as containerd's and CRI-O's packages ship.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The machine's CNI config dir.
pub const SYSTEM_CONF_DIR: &str = "/etc/cni/net.d";

/// Whether `dir` holds a network config (what the runtime would load).
pub fn has_config(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            [".conf", ".conflist", ".json"]
                .iter()
                .any(|ext| name.ends_with(ext))
        })
}

/// The default network's conflist, with host-local's leases in `ipam_dir`.
pub fn default_conflist(ipam_dir: &Path) -> String {
    serde_json::to_string_pretty(&serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "deckhand",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "deckhand0",
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": "10.85.0.0/16"}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": ipam_dir,
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    }))
    .expect("a JSON literal serializes")
}

/// The CNI config dir to use: `chosen` if given, else the machine's if it
/// has a network, else `<D>/cni/net.d` with the default one written.
/// Returns the dir and whether the default was installed.
pub fn conf_dir(chosen: Option<&Path>, data_dir: &Path) -> anyhow::Result<(PathBuf, bool)> {
    if let Some(dir) = chosen {
        return Ok((dir.to_path_buf(), false));
    }
    let system = Path::new(SYSTEM_CONF_DIR);
    if has_config(system) {
        return Ok((system.to_path_buf(), false));
    }
    let dir = data_dir.join("cni").join("net.d");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = dir.join("10-deckhand.conflist");
    let text = default_conflist(&data_dir.join("cni").join("ipam"));
    std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
    Ok((dir, true))
}

/// A bridge pod network: the host's address on it and the pods' subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeNetwork {
    pub gateway: std::net::Ipv4Addr,
    pub subnet: String,
}

/// The pod network of `dir` (its first config, in the order the runtime
/// loads them) when it is a `bridge` plugin with `isGateway` and a subnet:
/// the gateway given, or host-local's default (the subnet's first
/// address). None for other networks: the cluster DNS then has no address
/// every pod reaches.
pub fn bridge_network(dir: &Path) -> Option<BridgeNetwork> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.to_string_lossy();
            [".conf", ".conflist", ".json"]
                .iter()
                .any(|ext| name.ends_with(ext))
        })
        .collect();
    files.sort();
    let conf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(files.first()?).ok()?).ok()?;
    let plugins = match conf["plugins"].as_array() {
        Some(list) => list.clone(),
        None => vec![conf],
    };
    let bridge = plugins
        .iter()
        .find(|p| p["type"] == "bridge" && p["isGateway"] == true)?;
    let ipam = &bridge["ipam"];
    let range = ipam["ranges"][0][0]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let subnet = range.get("subnet").or(ipam.get("subnet"))?.as_str()?;
    let (addr, len) = subnet.split_once('/')?;
    let (addr, len) = (
        addr.parse::<std::net::Ipv4Addr>().ok()?,
        len.parse::<u32>().ok()?,
    );
    let given = range
        .get("gateway")
        .or(ipam.get("gateway"))
        .and_then(|g| g.as_str());
    let gateway = match given {
        Some(g) => g.parse().ok()?,
        None => {
            let mask = u32::MAX.checked_shl(32u32.saturating_sub(len)).unwrap_or(0);
            (u32::from(addr) & mask | 1).into()
        }
    };
    Some(BridgeNetwork {
        gateway,
        subnet: subnet.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_is_the_bridges_given_or_its_subnets_first_address() {
        let dir = tempfile::tempdir().unwrap();
        let gateway = |d: &Path| bridge_network(d).map(|n| n.gateway);
        assert_eq!(gateway(dir.path()), None);
        std::fs::write(
            dir.path().join("10-deckhand.conflist"),
            default_conflist(Path::new("/i")),
        )
        .unwrap();
        assert_eq!(
            bridge_network(dir.path()),
            Some(BridgeNetwork {
                gateway: [10, 85, 0, 1].into(),
                subnet: "10.85.0.0/16".into()
            })
        );
        // An earlier file wins; a given gateway beats the subnet's first.
        let given = r#"{"cniVersion":"0.4.0","name":"n","type":"bridge","isGateway":true,
            "ipam":{"type":"host-local","subnet":"10.7.0.0/24","gateway":"10.7.0.254"}}"#;
        std::fs::write(dir.path().join("05-given.conf"), given).unwrap();
        assert_eq!(gateway(dir.path()), Some([10, 7, 0, 254].into()));
        // Not a gateway bridge: no address.
        let flannel = r#"{"name":"cbr0","plugins":[{"type":"flannel"}]}"#;
        std::fs::write(dir.path().join("01-flannel.conflist"), flannel).unwrap();
        assert_eq!(gateway(dir.path()), None);
    }

    #[test]
    fn an_empty_machine_gets_the_default_network_in_the_data_dir() {
        let data = tempfile::tempdir().unwrap();
        if has_config(Path::new(SYSTEM_CONF_DIR)) {
            // This machine has a network: that one is used.
            let (dir, installed) = conf_dir(None, data.path()).unwrap();
            assert_eq!(dir, Path::new(SYSTEM_CONF_DIR));
            assert!(!installed);
        }
        let chosen = tempfile::tempdir().unwrap();
        assert!(!has_config(chosen.path()));
        let (dir, installed) = conf_dir(Some(chosen.path()), data.path()).unwrap();
        assert_eq!((dir.as_path(), installed), (chosen.path(), false));
        let text = default_conflist(Path::new("/d/cni/ipam"));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let types: Vec<&str> = v["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["bridge", "portmap"]);
        assert_eq!(v["plugins"][0]["ipam"]["type"], "host-local");
        assert_eq!(v["plugins"][0]["ipam"]["dataDir"], "/d/cni/ipam");
    }
}
