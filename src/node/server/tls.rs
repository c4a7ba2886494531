//! The kubelet API's TLS: the serving certificate from `--tls-cert-file` /
//! `--tls-private-key-file`, else a self-signed one kept in `--cert-dir`
//! (`kubelet.crt`, `kubelet.key`, as the kubelet names them) for the node's
//! names and IPs; client certificates verified against `--client-ca-file`
//! when one is given (optional: bearer tokens are the other way in).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("making the self-signed serving certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client CA {path}: {message}")]
    ClientCa { path: PathBuf, message: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.into(),
        source,
    }
}

/// Where the serving certificate comes from.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub cert_dir: PathBuf,
    pub client_ca_file: Option<PathBuf>,
}

/// The self-signed certificate's names: the node's name, its IPs, and
/// loopback, as the kubelet's own self-signed certificate covers
/// (`<hostname>@<timestamp>` as the issuer; the names suffice here).
pub fn serving_names(node_name: &str, ips: &[String]) -> Vec<String> {
    let mut names = vec![node_name.to_string(), "localhost".into()];
    names.extend(ips.iter().cloned());
    names.push("127.0.0.1".into());
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| !n.is_empty() && seen.insert(n.clone()));
    names
}

/// The PEM certificate chain and key to serve with.
pub fn serving_pem(settings: &TlsSettings, names: &[String]) -> Result<(String, String), TlsError> {
    if let (Some(cert), Some(key)) = (&settings.cert_file, &settings.key_file) {
        let c = std::fs::read_to_string(cert).map_err(io(cert))?;
        let k = std::fs::read_to_string(key).map_err(io(key))?;
        return Ok((c, k));
    }
    let dir = &settings.cert_dir;
    let (crt, key, stamp) = (
        dir.join("kubelet.crt"),
        dir.join("kubelet.key"),
        dir.join("kubelet.names"),
    );
    let wanted = names.join(",");
    if let (Ok(c), Ok(k), Ok(s)) = (
        std::fs::read_to_string(&crt),
        std::fs::read_to_string(&key),
        std::fs::read_to_string(&stamp),
    ) && s == wanted
    {
        return Ok((c, k));
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(
        DnType::CommonName,
        format!(
            "{}@deckhand",
            names.first().map(String::as_str).unwrap_or("node")
        ),
    );
    params.subject_alt_names = names
        .iter()
        .map(|s| match s.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName(s.clone().try_into()?)),
        })
        .collect::<Result<_, rcgen::Error>>()?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let keypair = KeyPair::generate()?;
    let cert = params.self_signed(&keypair)?;
    let (c, k) = (cert.pem(), keypair.serialize_pem());
    write(&key, &k, 0o600)?;
    write(&crt, &c, 0o644)?;
    write(&stamp, &wanted, 0o644)?;
    Ok((c, k))
}

/// Temp file + rename: a crash never leaves half a key.
fn write(path: &Path, data: &str, mode: u32) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(path))?;
    f.write_all(data.as_bytes()).map_err(io(path))?;
    f.sync_all().map_err(io(path))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// The server's rustls config. HTTP/1.1 only: exec, attach and
/// port-forward are connection upgrades, which HTTP/2 does not carry.
pub fn server_config(
    settings: &TlsSettings,
    names: &[String],
) -> Result<rustls::ServerConfig, TlsError> {
    let (cert_pem, key_pem) = serving_pem(settings, names)?;
    let shown = settings
        .cert_file
        .clone()
        .unwrap_or_else(|| settings.cert_dir.join("kubelet.crt"));
    let pem_err = |e: &dyn std::fmt::Display| TlsError::Pem {
        path: shown.clone(),
        message: e.to_string(),
    };
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(&e))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| pem_err(&e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match &settings.client_ca_file {
        Some(path) => {
            let ca_err = |e: &dyn std::fmt::Display| TlsError::ClientCa {
                path: path.clone(),
                message: e.to_string(),
            };
            let pem = std::fs::read(path).map_err(io(path))?;
            let mut roots = rustls::RootCertStore::empty();
            for ca in CertificateDer::pem_slice_iter(&pem) {
                roots
                    .add(ca.map_err(|e| ca_err(&e))?)
                    .map_err(|e| ca_err(&e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| ca_err(&e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_self_signed_certificate_is_kept_until_the_names_change() {
        let dir = tempfile::tempdir().unwrap();
        let settings = TlsSettings {
            cert_file: None,
            key_file: None,
            cert_dir: dir.path().join("pki"),
            client_ca_file: None,
        };
        let names = serving_names("n1", &["10.0.0.5".into()]);
        assert_eq!(names, ["n1", "localhost", "10.0.0.5", "127.0.0.1"]);
        let (a, _) = serving_pem(&settings, &names).unwrap();
        let (b, _) = serving_pem(&settings, &names).unwrap();
        assert_eq!(a, b, "kept across restarts");
        let (c, _) = serving_pem(&settings, &serving_names("n2", &[])).unwrap();
        assert_ne!(a, c, "new names, new certificate");
        server_config(&settings, &names).expect("a usable rustls config");
    }
}
