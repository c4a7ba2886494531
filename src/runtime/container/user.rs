//! Which uid, gid and groups a container process runs as, from the CRI
//! security context, the image's `User`, and the image's /etc/passwd and
//! /etc/group, resolved the way runc and containerd do.

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, sorted, without duplicates.
    pub additional_gids: Vec<u32>,
    /// The user's name when /etc/passwd has one (for `id -nu`, HOME, ...).
    pub home: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("user {0:?} is not in the image's /etc/passwd")]
    UnknownUser(String),
    #[error("group {0:?} is not in the image's /etc/group")]
    UnknownGroup(String),
    #[error("run_as_group needs run_as_user or run_as_username")]
    GroupWithoutUser,
}

/// How supplementary groups from the image combine with the pod's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SupplementalGroupsPolicy {
    /// The user's groups from the image's /etc/group, plus the pod's.
    Merge,
    /// Only the primary group and the pod's.
    Strict,
}

pub struct UserRequest<'a> {
    pub run_as_user: Option<i64>,
    pub run_as_username: &'a str,
    pub run_as_group: Option<i64>,
    pub supplemental_groups: &'a [i64],
    pub policy: SupplementalGroupsPolicy,
    /// The image config's `User` (`uid`, `name`, `uid:gid`, `name:group`).
    pub image_user: &'a str,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 7 || line.starts_with('#') {
            return None;
        }
        Some(PasswdEntry {
            name: fields[0],
            uid: fields[2].parse().ok()?,
            gid: fields[3].parse().ok()?,
            home: fields[5],
        })
    })
}

/// (name, gid, members)
fn group_entries(group: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    group.lines().filter_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 4 || line.starts_with('#') {
            return None;
        }
        let members = fields[3].split(',').filter(|m| !m.is_empty()).collect();
        Some((fields[0], fields[2].parse().ok()?, members))
    })
}

/// Resolves the process identity. `passwd` and `group` are the image's files
/// (empty when the image has none).
pub fn resolve(
    request: &UserRequest<'_>,
    passwd: &str,
    group: &str,
) -> Result<ResolvedUser, UserError> {
    let (image_user, image_group) = match request.image_user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (request.image_user, None),
    };
    let explicit_user = request.run_as_user.is_some() || !request.run_as_username.is_empty();
    // As containerd: a group alone is refused, whatever the image says.
    if request.run_as_group.is_some() && !explicit_user {
        return Err(UserError::GroupWithoutUser);
    }
    // The user: the pod's uid, the pod's name, else the image's, else root.
    let user_spec = match (request.run_as_user, request.run_as_username) {
        (Some(uid), _) => uid.to_string(),
        (None, name) if !name.is_empty() => name.to_string(),
        _ if !image_user.is_empty() => image_user.to_string(),
        _ => "0".to_string(),
    };
    let entry = match user_spec.parse::<u32>() {
        Ok(uid) => passwd_entries(passwd)
            .find(|e| e.uid == uid)
            .map(|e| (e.uid, Some(e.gid), e.name, e.home)),
        Err(_) => Some(
            passwd_entries(passwd)
                .find(|e| e.name == user_spec)
                .map(|e| (e.uid, Some(e.gid), e.name, e.home))
                .ok_or_else(|| UserError::UnknownUser(user_spec.clone()))?,
        ),
    };
    let uid = match (&entry, user_spec.parse::<u32>()) {
        (_, Ok(uid)) => uid,
        (Some((uid, ..)), Err(_)) => *uid,
        (None, Err(_)) => return Err(UserError::UnknownUser(user_spec)),
    };
    let user_name = entry.as_ref().map(|(_, _, name, _)| *name);

    // The primary group: the pod's, else the image's group part (only when the
    // user also came from the image), else the user's passwd group, else 0.
    let gid = match request.run_as_group {
        Some(gid) => gid as u32,
        None => match image_group.filter(|_| !explicit_user) {
            Some(g) => match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => group_entries(group)
                    .find(|(name, ..)| *name == g)
                    .map(|(_, gid, _)| gid)
                    .ok_or_else(|| UserError::UnknownGroup(g.to_string()))?,
            },
            None => entry.as_ref().and_then(|(_, gid, ..)| *gid).unwrap_or(0),
        },
    };

    let mut additional: Vec<u32> = request
        .supplemental_groups
        .iter()
        .map(|g| *g as u32)
        .collect();
    if request.policy == SupplementalGroupsPolicy::Merge {
        additional.push(gid);
        if let Some(name) = user_name {
            additional.extend(
                group_entries(group)
                    .filter(|(_, _, members)| members.contains(&name))
                    .map(|(_, gid, _)| gid),
            );
        }
    } else {
        additional.push(gid);
    }
    additional.sort_unstable();
    additional.dedup();
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids: additional,
        home: entry.map(|(_, _, _, home)| home.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nwww-data:x:33:33:www-data:/var/www:/bin/false\ndefault-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwww-data:x:33:\ndefault-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n";

    fn request<'a>(image_user: &'a str) -> UserRequest<'a> {
        UserRequest {
            run_as_user: None,
            run_as_username: "",
            run_as_group: None,
            supplemental_groups: &[],
            policy: SupplementalGroupsPolicy::Merge,
            image_user,
        }
    }

    #[test]
    fn root_by_default_and_numeric_users_need_no_passwd_entry() {
        let r = resolve(&request(""), PASSWD, GROUP).unwrap();
        assert_eq!((r.uid, r.gid, r.additional_gids), (0, 0, vec![0]));
        let mut req = request("");
        req.run_as_user = Some(1001);
        req.run_as_group = Some(1002);
        let r = resolve(&req, PASSWD, GROUP).unwrap();
        assert_eq!((r.uid, r.gid), (1001, 1002));
    }

    #[test]
    fn names_resolve_through_the_image_files() {
        let mut req = request("");
        req.run_as_username = "nobody";
        let r = resolve(&req, PASSWD, GROUP).unwrap();
        assert_eq!((r.uid, r.gid), (65534, 65534));
        let r = resolve(&request("www-data:1004"), PASSWD, GROUP).unwrap();
        assert_eq!((r.uid, r.gid), (33, 1004));
        assert_eq!(
            resolve(&request("ghost"), PASSWD, GROUP),
            Err(UserError::UnknownUser("ghost".into()))
        );
    }

    #[test]
    fn supplemental_groups_merge_or_strict() {
        let mut req = request("1000");
        req.supplemental_groups = &[1234];
        let r = resolve(&req, PASSWD, GROUP).unwrap();
        assert_eq!(
            (r.uid, r.gid, r.additional_gids.clone()),
            (1000, 1000, vec![1000, 1234, 50000])
        );
        req.policy = SupplementalGroupsPolicy::Strict;
        let r = resolve(&req, PASSWD, GROUP).unwrap();
        assert_eq!(r.additional_gids, vec![1000, 1234]);
    }

    #[test]
    fn a_group_without_a_user_is_refused() {
        let mut req = request("");
        req.run_as_group = Some(5);
        assert_eq!(
            resolve(&req, PASSWD, GROUP),
            Err(UserError::GroupWithoutUser)
        );
    }
}
