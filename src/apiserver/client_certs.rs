//! Client certificates as kube-apiserver treats them: a certificate from an
//! unknown CA does not fail the TLS handshake (kube answers such a request
//! 401 with a Status, and lets a bearer token on the same request count).
//! So the handshake accepts any certificate whose holder proves it has the
//! key, and the connection's user comes from it only if the strict
//! verifier, run again after the handshake, accepts its chain.

use std::sync::Arc;

use rustls::DistinguishedName;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};

/// Offers client authentication; never fails the handshake on the chain.
#[derive(Debug)]
pub struct LenientVerifier {
    strict: Arc<dyn ClientCertVerifier>,
}

impl LenientVerifier {
    pub fn new(strict: Arc<dyn ClientCertVerifier>) -> Self {
        Self { strict }
    }

    /// Whether the chain a client presented is one the cluster CA signed.
    pub fn trusted(&self, certs: &[CertificateDer<'_>]) -> bool {
        let Some((end_entity, intermediates)) = certs.split_first() else {
            return false;
        };
        self.strict
            .verify_client_cert(end_entity, intermediates, UnixTime::now())
            .is_ok()
    }
}

impl ClientCertVerifier for LenientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.strict.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Checked again by `trusted` once the handshake is done.
        Ok(ClientCertVerified::assertion())
    }

    // The handshake signatures are checked for real: they prove the client
    // holds the certificate's key.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.strict.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.strict.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.strict.supported_verify_schemes()
    }
}
