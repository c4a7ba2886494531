//! Capability names and the effective set (defaults, adds, drops, ALL).

use super::*;

/// Parses a CRI capability name (`NET_ADMIN` or `CAP_NET_ADMIN`); `ALL` is
/// handled by the caller.
pub(super) fn capability(name: &str) -> Result<Capability, SpecError> {
    let bare = name.trim().to_ascii_uppercase();
    let bare = bare.strip_prefix("CAP_").unwrap_or(&bare);
    Capability::from_str(bare).map_err(|_| invalid(format!("unknown capability {name:?}")))
}

/// Every capability this node can grant: known to the kernel (and to the
/// caps crate) and still in our own bounding set. runc fails a start with
/// EPERM for any other (root here lacks CAP_SYS_RESOURCE), so "ALL" and
/// privileged mean these, as containerd's "all current capabilities" does.
pub fn available_capabilities() -> Vec<Capability> {
    let supported = caps::runtime::thread_all_supported();
    let bounding = caps::read(None, caps::CapSet::Bounding).unwrap_or_else(|_| supported.clone());
    let mut known: Vec<caps::Capability> = supported.intersection(&bounding).copied().collect();
    known.sort_by_key(|c| c.index());
    known
        .into_iter()
        .filter_map(|c| capability(&c.to_string()).ok())
        .collect()
}

/// The effective capability set: defaults (or all available when
/// privileged), plus adds, minus drops; `ALL` in add or drop means every
/// available capability. Asking for one the node cannot grant is refused
/// here, with its name, rather than by runc at start.
pub fn capabilities(
    privileged: bool,
    requested: Option<&cri::Capability>,
    available: &[Capability],
) -> Result<Vec<Capability>, SpecError> {
    let grantable = |cap: Capability| {
        if available.contains(&cap) {
            Ok(cap)
        } else {
            Err(invalid(format!(
                "capability {cap} is not available on this node (not in its bounding set)"
            )))
        }
    };
    let mut set: Vec<Capability> = if privileged {
        available.to_vec()
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .copied()
            .filter(|c| available.contains(c))
            .collect()
    };
    let Some(requested) = requested else {
        return Ok(set);
    };
    let is_all = |names: &[String]| names.iter().any(|n| n.eq_ignore_ascii_case("ALL"));
    if is_all(&requested.add_capabilities) {
        set = available.to_vec();
    } else {
        for name in &requested.add_capabilities {
            let cap = grantable(capability(name)?)?;
            if !set.contains(&cap) {
                set.push(cap);
            }
        }
    }
    if is_all(&requested.drop_capabilities) {
        // Dropping ALL keeps only what is added explicitly, as containerd does.
        set.clear();
        for name in requested
            .add_capabilities
            .iter()
            .filter(|n| !n.eq_ignore_ascii_case("ALL"))
        {
            set.push(grantable(capability(name)?)?);
        }
    } else {
        for name in &requested.drop_capabilities {
            let cap = capability(name)?;
            set.retain(|c| *c != cap);
        }
    }
    Ok(set)
}
