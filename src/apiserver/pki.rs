//! The server's PKI, created on first start and kept in the data dir: a CA,
//! a serving certificate signed by it, and an admin client certificate
//! (group system:masters) for the kubeconfig we write. Client certificates
//! are how kube-apiserver's users authenticate, so we do it the same way:
//! the subject CN is the user, each O is a group.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, pem::PemObject};

use super::client_certs::LenientVerifier;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tls: {0}")]
    Tls(String),
}

pub struct Pki {
    dir: PathBuf,
    ca_params: CertificateParams,
    ca_key: KeyPair,
    pub ca_pem: String,
}

fn read(path: &Path) -> Result<Option<String>, PkiError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Io {
            path: path.into(),
            source,
        }),
    }
}

/// Write via a temp file + rename so a crash never leaves half a key.
fn write(path: &Path, data: &str, private: bool) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let io = |source| PkiError::Io {
        path: path.into(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(io)?;
    f.write_all(data.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn ca_params() -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "deckhand-ca");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

impl Pki {
    /// Load the CA from `dir`, creating it on first start.
    pub fn load_or_create(dir: &Path) -> Result<Pki, PkiError> {
        std::fs::create_dir_all(dir).map_err(|source| PkiError::Io {
            path: dir.into(),
            source,
        })?;
        let params = ca_params()?;
        let (crt, key) = (dir.join("ca.crt"), dir.join("ca.key"));
        let (ca_pem, ca_key) = match (read(&crt)?, read(&key)?) {
            (Some(pem), Some(key)) => (pem, KeyPair::from_pem(&key)?),
            _ => {
                let key = KeyPair::generate()?;
                let cert = params.self_signed(&key)?;
                write(&key_path(dir, "ca"), &key.serialize_pem(), true)?;
                write(&crt, &cert.pem(), false)?;
                (cert.pem(), key)
            }
        };
        Ok(Pki {
            dir: dir.into(),
            ca_params: params,
            ca_key,
            ca_pem,
        })
    }

    /// Issue a certificate + key signed by the CA.
    pub fn issue(
        &self,
        common_name: &str,
        organizations: &[&str],
        sans: &[String],
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<(String, String), PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        for o in organizations {
            params.distinguished_name.push(DnType::OrganizationName, *o);
        }
        params.subject_alt_names = sans
            .iter()
            .map(|s| match s.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName(s.clone().try_into()?)),
            })
            .collect::<Result<_, rcgen::Error>>()?;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate()?;
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// The serving certificate for `sans`, reused across restarts unless the
    /// names it must cover changed.
    pub fn serving(&self, sans: &[String]) -> Result<(String, String), PkiError> {
        self.kept("server", &sans.join(","), || {
            self.issue(
                "deckhand-apiserver",
                &[],
                sans,
                ExtendedKeyUsagePurpose::ServerAuth,
            )
        })
    }

    /// The admin client certificate (system:masters), kept across restarts.
    pub fn admin(&self) -> Result<(String, String), PkiError> {
        self.kept("admin", "admin", || {
            self.issue(
                "kubernetes-admin",
                &["system:masters"],
                &[],
                ExtendedKeyUsagePurpose::ClientAuth,
            )
        })
    }

    /// A node's client certificate: user `system:node:<name>` in group
    /// `system:nodes`, the identity kubelets use. Kept across restarts.
    pub fn node(&self, name: &str) -> Result<(String, String), PkiError> {
        self.kept(&format!("node-{name}"), name, || {
            self.issue(
                &format!("system:node:{name}"),
                &["system:nodes"],
                &[],
                ExtendedKeyUsagePurpose::ClientAuth,
            )
        })
    }

    /// The client certificate this server shows kubelets (user
    /// kube-apiserver-kubelet-client in system:masters, as kubeadm names it).
    pub fn kubelet_client(&self) -> Result<(String, String), PkiError> {
        self.kept("kubelet-client", "kubelet-client", || {
            self.issue(
                "kube-apiserver-kubelet-client",
                &["system:masters"],
                &[],
                ExtendedKeyUsagePurpose::ClientAuth,
            )
        })
    }

    /// TLS for talking to kubelets: our kubelet-client certificate, and the
    /// kubelet's serving certificate checked against `ca_pem` if given.
    /// Without one it is not checked, as kube-apiserver does without
    /// `--kubelet-certificate-authority` (kubelets' default certificates
    /// are self-signed).
    pub fn kubelet_client_config(
        &self,
        ca_pem: Option<&str>,
    ) -> Result<rustls::ClientConfig, PkiError> {
        let tls = |e: &dyn std::fmt::Display| PkiError::Tls(e.to_string());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (cert_pem, key_pem) = self.kubelet_client()?;
        let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| tls(&e))?;
        let key = PrivateKeyDer::Pkcs8(
            PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| tls(&e))?,
        );
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls(&e))?;
        let builder = match ca_pem {
            Some(pem) => {
                let mut roots = rustls::RootCertStore::empty();
                for ca in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                    roots.add(ca.map_err(|e| tls(&e))?).map_err(|e| tls(&e))?;
                }
                builder.with_root_certificates(roots)
            }
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(UncheckedKubeletCert(provider))),
        };
        let mut config = builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| tls(&e))?;
        // Upgrades (exec, attach, port-forward) are HTTP/1.1 only.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// The service-account signing key (P-256, PKCS#8 DER), made on
    /// first start and kept in `sa.key`: tokens outlive restarts.
    pub fn service_account_key(&self) -> Result<Vec<u8>, PkiError> {
        let path = key_path(&self.dir, "sa");
        let key = match read(&path)? {
            Some(pem) => KeyPair::from_pem(&pem)?,
            None => {
                let key = KeyPair::generate()?;
                write(&path, &key.serialize_pem(), true)?;
                key
            }
        };
        Ok(key.serialize_der())
    }

    fn kept(
        &self,
        name: &str,
        stamp: &str,
        make: impl FnOnce() -> Result<(String, String), PkiError>,
    ) -> Result<(String, String), PkiError> {
        let crt = self.dir.join(format!("{name}.crt"));
        let key = key_path(&self.dir, name);
        let stamp_path = self.dir.join(format!("{name}.names"));
        if let (Some(c), Some(k), Some(s)) = (read(&crt)?, read(&key)?, read(&stamp_path)?)
            && s == stamp
        {
            return Ok((c, k));
        }
        let (c, k) = make()?;
        write(&key, &k, true)?;
        write(&crt, &c, false)?;
        write(&stamp_path, stamp, false)?;
        Ok((c, k))
    }

    /// TLS config: our serving cert, and client certificates verified
    /// against our CA but optional, since bearer tokens are the other way in.
    /// The serving TLS config, and the verifier that tells (after the
    /// handshake) whether a client's certificate chain is the cluster CA's.
    pub fn server_config(
        &self,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<(rustls::ServerConfig, Arc<LenientVerifier>), PkiError> {
        let tls = |e: &dyn std::fmt::Display| PkiError::Tls(e.to_string());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(ca.map_err(|e| tls(&e))?).map_err(|e| tls(&e))?;
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| tls(&e))?;
        let verifier = Arc::new(LenientVerifier::new(verifier));
        let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| tls(&e))?;
        let key = PrivateKeyDer::Pkcs8(
            PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| tls(&e))?,
        );
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls(&e))?
            .with_client_cert_verifier(verifier.clone())
            .with_single_cert(certs, key)
            .map_err(|e| tls(&e))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok((config, verifier))
    }
}

/// Accepts any kubelet serving certificate but still checks the handshake
/// signatures (so the peer holds the key of the certificate it sent).
#[derive(Debug)]
struct UncheckedKubeletCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for UncheckedKubeletCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn key_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.key"))
}

/// A kubeconfig for `server` with the client cert embedded.
pub fn kubeconfig(server: &str, ca_pem: &str, cert_pem: &str, key_pem: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: deckhand
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: admin
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: deckhand
  context:
    cluster: deckhand
    user: admin
current-context: deckhand
",
        ca = b64(ca_pem),
        cert = b64(cert_pem),
        key = b64(key_pem),
    )
}

pub fn write_file(path: &Path, data: &str, private: bool) -> Result<(), PkiError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| PkiError::Io {
            path: parent.into(),
            source,
        })?;
    }
    write(path, data, private)
}
