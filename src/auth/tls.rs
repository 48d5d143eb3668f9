//! TLS and mutual TLS (rustls) from PEM files.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use super::Security;

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server's certificate and key, and the CA client certificates must be signed by
/// (mutual TLS) when there is one.
#[derive(Clone)]
pub struct TlsConfig {
    identity: Identity,
    client_ca: Option<Certificate>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("mutual", &self.client_ca.is_some())
            .finish_non_exhaustive()
    }
}

fn read(what: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
}

fn describe(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

impl TlsConfig {
    /// From PEM text: a certificate chain, its private key, and optionally the CA that
    /// signs client certificates. Checks that rustls accepts them.
    pub fn from_pem(cert: &[u8], key: &[u8], client_ca: Option<&[u8]>) -> Result<Self, String> {
        let config = TlsConfig {
            identity: Identity::from_pem(cert, key),
            client_ca: client_ca.map(Certificate::from_pem),
        };
        Server::builder()
            .tls_config(config.server_config())
            .map_err(|e| {
                format!(
                    "the TLS certificate, key or client CA is not usable: {}",
                    describe(&e)
                )
            })?;
        Ok(config)
    }

    /// From the files `SERVICELEVEL_TLS_CERT`, `SERVICELEVEL_TLS_KEY` and
    /// `SERVICELEVEL_TLS_CLIENT_CA` name: `None` when none is set.
    pub fn from_files(
        cert: Option<&Path>,
        key: Option<&Path>,
        client_ca: Option<&Path>,
    ) -> Result<Option<Self>, String> {
        match (cert, key) {
            (None, None) if client_ca.is_none() => Ok(None),
            (Some(cert), Some(key)) => {
                let cert = read("TLS certificate", cert)?;
                let key = read("TLS key", key)?;
                let ca = client_ca.map(|p| read("TLS client CA", p)).transpose()?;
                TlsConfig::from_pem(&cert, &key, ca.as_deref()).map(Some)
            }
            _ => Err(
                "TLS needs both SERVICELEVEL_TLS_CERT and SERVICELEVEL_TLS_KEY \
                 (SERVICELEVEL_TLS_CLIENT_CA only adds client certificates to them)"
                    .to_string(),
            ),
        }
    }

    /// Whether clients must present a certificate.
    pub fn mutual(&self) -> bool {
        self.client_ca.is_some()
    }

    pub fn server_config(&self) -> ServerTlsConfig {
        let config = ServerTlsConfig::new()
            .identity(self.identity.clone())
            .timeout(HANDSHAKE_TIMEOUT);
        match &self.client_ca {
            Some(ca) => config.client_ca_root(ca.clone()),
            None => config,
        }
    }
}

/// The server builder, with TLS when `security` has it.
pub fn server_builder(security: &Security) -> Result<Server, tonic::transport::Error> {
    match &security.tls {
        Some(tls) => Server::builder().tls_config(tls.server_config()),
        None => Ok(Server::builder()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(name: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/certs")
            .join(name);
        std::fs::read(path).unwrap()
    }

    #[test]
    fn certificates_are_checked_at_start() {
        let ok = TlsConfig::from_pem(&cert("server.crt"), &cert("server.key"), None).unwrap();
        assert!(!ok.mutual());
        let mutual = TlsConfig::from_pem(
            &cert("server.crt"),
            &cert("server.key"),
            Some(&cert("ca.crt")),
        )
        .unwrap();
        assert!(mutual.mutual());
        // The key of another certificate.
        assert!(TlsConfig::from_pem(&cert("server.crt"), &cert("client.key"), None).is_err());
        assert!(TlsConfig::from_pem(b"not pem", &cert("server.key"), None).is_err());
    }

    #[test]
    fn files_come_in_pairs() {
        assert!(TlsConfig::from_files(None, None, None).unwrap().is_none());
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/certs");
        let (crt, key, ca) = (
            dir.join("server.crt"),
            dir.join("server.key"),
            dir.join("ca.crt"),
        );
        assert!(
            TlsConfig::from_files(Some(&crt), Some(&key), Some(&ca))
                .unwrap()
                .is_some_and(|t| t.mutual())
        );
        let err = TlsConfig::from_files(Some(&crt), None, None).unwrap_err();
        assert!(err.contains("SERVICELEVEL_TLS_KEY"), "{err}");
        assert!(TlsConfig::from_files(None, None, Some(&ca)).is_err());
        let err =
            TlsConfig::from_files(Some(&crt), Some(&dir.join("missing.key")), None).unwrap_err();
        assert!(err.contains("missing.key"), "{err}");
    }
}
