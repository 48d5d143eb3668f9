//! TLS and mutual TLS (rustls) from PEM files, read again while serving so a renewed
//! certificate (cert-manager rotating a Secret, say) takes effect without a restart.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig, crypto};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the certificate files are read again by default.
pub const RELOAD_EVERY: Duration = Duration::from_secs(30);

/// The server's certificate and key, and the CA client certificates must be signed by
/// (mutual TLS) when there is one; checked by rustls when made.
#[derive(Clone)]
pub struct TlsConfig {
    config: Arc<ServerConfig>,
    mutual: bool,
    /// Where it was read from, to read again; `None` when made from PEM text.
    files: Option<TlsFiles>,
    reload_every: Duration,
}

#[derive(Debug, Clone)]
struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
}

/// The files' contents, to notice a change.
type Contents = (Vec<u8>, Vec<u8>, Option<Vec<u8>>);

impl TlsFiles {
    fn read(&self) -> Result<Contents, String> {
        Ok((
            read("TLS certificate", &self.cert)?,
            read("TLS key", &self.key)?,
            self.client_ca
                .as_deref()
                .map(|p| read("TLS client CA", p))
                .transpose()?,
        ))
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("mutual", &self.mutual)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

fn read(what: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
}

fn unusable(what: &str, e: impl fmt::Display) -> String {
    format!("the TLS {what} is not usable: {e}")
}

/// A rustls server configuration for gRPC (HTTP/2) from PEM text.
fn server_config(
    cert: &[u8],
    key: &[u8],
    client_ca: Option<&[u8]>,
) -> Result<ServerConfig, String> {
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unusable("certificate", e))?;
    if chain.is_empty() {
        return Err(unusable("certificate", "no PEM certificate in it"));
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| unusable("key", e))?;
    let provider = Arc::new(crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| unusable("configuration", e))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca) {
                roots
                    .add(c.map_err(|e| unusable("client CA", e))?)
                    .map_err(|e| unusable("client CA", e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| unusable("client CA", e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    // Checks too that the key is the certificate's.
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| unusable("certificate and key", e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

impl TlsConfig {
    /// From PEM text: a certificate chain, its private key, and optionally the CA that
    /// signs client certificates. Checks that rustls accepts them.
    pub fn from_pem(cert: &[u8], key: &[u8], client_ca: Option<&[u8]>) -> Result<Self, String> {
        Ok(TlsConfig {
            config: Arc::new(server_config(cert, key, client_ca)?),
            mutual: client_ca.is_some(),
            files: None,
            reload_every: RELOAD_EVERY,
        })
    }

    /// From the files `SERVICELEVEL_TLS_CERT`, `SERVICELEVEL_TLS_KEY` and
    /// `SERVICELEVEL_TLS_CLIENT_CA` name: `None` when none is set. While serving, the files
    /// are read again every [`RELOAD_EVERY`].
    pub fn from_files(
        cert: Option<&Path>,
        key: Option<&Path>,
        client_ca: Option<&Path>,
    ) -> Result<Option<Self>, String> {
        match (cert, key) {
            (None, None) if client_ca.is_none() => Ok(None),
            (Some(cert), Some(key)) => {
                let files = TlsFiles {
                    cert: cert.to_path_buf(),
                    key: key.to_path_buf(),
                    client_ca: client_ca.map(Path::to_path_buf),
                };
                let (cert, key, ca) = files.read()?;
                let mut config = TlsConfig::from_pem(&cert, &key, ca.as_deref())?;
                config.files = Some(files);
                Ok(Some(config))
            }
            _ => Err(
                "TLS needs both SERVICELEVEL_TLS_CERT and SERVICELEVEL_TLS_KEY \
                 (SERVICELEVEL_TLS_CLIENT_CA only adds client certificates to them)"
                    .to_string(),
            ),
        }
    }

    /// Reads the files again this often while serving (tests use a short interval).
    pub fn reload_every(mut self, every: Duration) -> Self {
        self.reload_every = every;
        self
    }

    /// Whether clients must present a certificate.
    pub fn mutual(&self) -> bool {
        self.mutual
    }
}

/// TLS connections accepted on a listener, and the tasks that accept them and reload the
/// certificate; both stop when this is dropped.
pub struct TlsIncoming {
    pub connections: ReceiverStream<std::io::Result<TlsStream<TcpStream>>>,
    tasks: Vec<tokio::task::AbortHandle>,
}

impl TlsIncoming {
    /// Stops accepting (connections already handed over are the server's to finish).
    pub fn stopper(&self) -> impl FnOnce() + Send + 'static {
        let tasks = self.tasks.clone();
        move || tasks.iter().for_each(tokio::task::AbortHandle::abort)
    }
}

impl tokio_stream::Stream for TlsIncoming {
    type Item = std::io::Result<TlsStream<TcpStream>>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::pin::Pin::new(&mut self.connections).poll_next(cx)
    }
}

impl Drop for TlsIncoming {
    fn drop(&mut self) {
        self.tasks.iter().for_each(tokio::task::AbortHandle::abort);
    }
}

/// Accepts TCP connections on `listener` and hands over those whose TLS handshake
/// succeeds. Each handshake runs on its own (a slow client holds up no one) for at most
/// 10 s. With certificate files, they are read again every `reload_every`; a change that
/// rustls accepts applies to the next handshakes, a change it refuses is logged and the
/// current certificate kept.
pub fn incoming(
    listener: TcpListener,
    tls: &TlsConfig,
    metrics: Arc<crate::metrics::Metrics>,
) -> TlsIncoming {
    let current = Arc::new(RwLock::new(Arc::clone(&tls.config)));
    let mut tasks = Vec::new();
    if let Some(files) = tls.files.clone() {
        let current = Arc::clone(&current);
        let every = tls.reload_every;
        metrics.tls_reloads_watched();
        let reload = tokio::spawn(async move {
            let mut last = files.read().ok();
            loop {
                tokio::time::sleep(every).await;
                let contents = match files.read() {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the TLS files again: keeping the current certificate");
                        continue;
                    }
                };
                if last.as_ref() == Some(&contents) {
                    continue;
                }
                let (cert, key, ca) = &contents;
                match server_config(cert, key, ca.as_deref()) {
                    Ok(config) => {
                        *current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
                        metrics.tls_reload(true);
                        tracing::info!(certificate = %files.cert.display(), "TLS certificate reloaded");
                    }
                    // A certificate written before its key, say: the next change is tried.
                    Err(e) => {
                        metrics.tls_reload(false);
                        tracing::warn!(error = %e, "the TLS files changed but are not usable: keeping the current certificate");
                    }
                }
                last = Some(contents);
            }
        });
        tasks.push(reload.abort_handle());
    }
    let (tx, rx) = mpsc::channel(64);
    let accept = tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors, say: wait instead of spinning.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Without it a response written as several HTTP/2 frames waits for the
            // client's delayed ACK.
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::warn!(error = %e, "cannot set TCP_NODELAY");
            }
            let acceptor = TlsAcceptor::from(Arc::clone(
                &current.read().unwrap_or_else(PoisonError::into_inner),
            ));
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    tasks.push(accept.abort_handle());
    TlsIncoming {
        connections: ReceiverStream::new(rx),
        tasks,
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
        assert!(TlsConfig::from_pem(&cert("server.crt"), b"not pem", None).is_err());
        assert!(
            TlsConfig::from_pem(&cert("server.crt"), &cert("server.key"), Some(b"not pem"))
                .is_err()
        );
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
