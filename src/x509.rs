//! Reading X.509 client certificates the way Kubernetes authenticators do:
//! the subject's CN names the user and each O is a group. A leaf: both the
//! apiserver's and the kubelet API's authenticators call it, it imports
//! nothing of ours.

/// Who a certificate's subject names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// The first CommonName.
    pub user: String,
    /// Every Organization, in order.
    pub groups: Vec<String>,
}

/// The subject of a DER certificate; None when it does not parse or has no
/// CommonName. The certificate must already have been verified.
pub fn subject(der: &[u8]) -> Option<Subject> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let user = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(String::from))
        .collect();
    Some(Subject { user, groups })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair};

    fn cert(cn: Option<&str>, orgs: &[&str]) -> Vec<u8> {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        for o in orgs {
            params.distinguished_name.push(DnType::OrganizationName, *o);
        }
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn cn_is_the_user_and_each_o_a_group() {
        // rcgen's DistinguishedName holds one value per type, so one O.
        let s = subject(&cert(Some("alice"), &["system:masters"])).unwrap();
        assert_eq!(s.user, "alice");
        assert_eq!(s.groups, ["system:masters"]);
        assert_eq!(subject(&cert(Some("bob"), &[])).unwrap().groups.len(), 0);
    }

    #[test]
    fn no_cn_or_no_certificate_is_none() {
        assert_eq!(subject(&cert(None, &["dev"])), None);
        assert_eq!(subject(b"not a certificate"), None);
        assert_eq!(subject(&[]), None);
    }
}
