//! The HTTP client of alert webhooks (`app::webhooks::WebhookSender`): HTTP/1.1 over
//! rustls (the Mozilla roots, no system store to depend on), redirects never followed,
//! and every address checked at connect time, after DNS resolution, against the
//! destination policy, so a name that resolves (or is re-pointed) to a private address
//! is refused: no DNS rebinding past the check.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use prost::bytes::Bytes;

use crate::app::webhooks::WebhookSender;
use crate::domain::webhook::{DestinationPolicy, allowed_address};

/// Resolves names, keeping only the addresses the policy allows.
#[derive(Clone)]
pub struct CheckedResolver {
    policy: DestinationPolicy,
}

impl tower::Service<Name> for CheckedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = all
                .iter()
                .copied()
                .filter(|a| allowed_address(a.ip(), policy))
                .collect();
            if allowed.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "{host} resolves to no allowed address ({}): private destinations are refused",
                        all.iter()
                            .map(|a| a.ip().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            Ok(allowed.into_iter())
        })
    }
}

type Https = hyper_rustls::HttpsConnector<HttpConnector<CheckedResolver>>;

/// Posts alert webhooks.
pub struct WebhookClient {
    client: Client<Https, Full<Bytes>>,
}

impl WebhookClient {
    pub fn new(policy: DestinationPolicy) -> WebhookClient {
        let mut http = HttpConnector::new_with_resolver(CheckedResolver { policy });
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        http.set_nodelay(true);
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls = tokio_rustls::rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth());
        let tls = match tls {
            Ok(t) => t,
            // The ring provider supports the default versions; this cannot happen.
            Err(e) => {
                tracing::error!(error = %e, "webhooks: TLS configuration");
                tokio_rustls::rustls::ClientConfig::builder()
                    .with_root_certificates(tokio_rustls::rustls::RootCertStore::empty())
                    .with_no_client_auth()
            }
        };
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        WebhookClient { client }
    }
}

impl WebhookSender for WebhookClient {
    fn post(
        &self,
        url: &str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<u16, String>> + Send>> {
        let mut req = http::Request::post(url);
        for (n, v) in &headers {
            req = req.header(n.as_str(), v.as_str());
        }
        let req = req.body(Full::new(Bytes::from(body)));
        let client = self.client.clone();
        Box::pin(async move {
            let req = req.map_err(|e| format!("bad request: {e}"))?;
            let resp = client.request(req).await.map_err(|e| {
                let mut text = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    text.push_str(": ");
                    text.push_str(&s.to_string());
                    source = s.source();
                }
                text
            })?;
            let status = resp.status().as_u16();
            // Read (and drop) the body, at most 64 KiB, so the connection can be reused.
            let _ = http_body_util::Limited::new(resp.into_body(), 64 * 1024)
                .collect()
                .await;
            Ok(status)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr as _;

    use tower::Service as _;

    use super::*;

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused_at_connect_time() {
        let strict = DestinationPolicy::default();
        let name = Name::from_str("localhost").expect("a name");
        let refused = CheckedResolver { policy: strict }
            .call(name.clone())
            .await
            .expect_err("loopback only");
        assert_eq!(refused.kind(), std::io::ErrorKind::PermissionDenied);
        assert!(refused.to_string().contains("127.0.0.1"), "{refused}");
        let open = DestinationPolicy {
            allow_http: true,
            allow_private: true,
        };
        let addrs: Vec<SocketAddr> = CheckedResolver { policy: open }
            .call(name)
            .await
            .expect("allowed")
            .collect();
        assert!(addrs.iter().any(|a| a.ip().is_loopback()));
    }
}
