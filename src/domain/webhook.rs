//! Webhooks out: what a subscription asks for, where it may deliver, and when a failed
//! delivery is tried again. Pure: the worker (`app::webhooks`) does the I/O.

use core::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::names::ResourceId;

/// The kinds of alert a subscription may receive, as the alert log names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    Warning,
    Breach,
    Escalation,
    /// A timer moved the ticket to a status: an auto-closure.
    Move,
    Retraction,
}

impl AlertKind {
    pub const ALL: [AlertKind; 5] = [
        AlertKind::Warning,
        AlertKind::Breach,
        AlertKind::Escalation,
        AlertKind::Move,
        AlertKind::Retraction,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Warning => "warning",
            AlertKind::Breach => "breach",
            AlertKind::Escalation => "escalation",
            AlertKind::Move => "move",
            AlertKind::Retraction => "retraction",
        }
    }

    pub fn parse(s: &str) -> Option<AlertKind> {
        AlertKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A subscription: which alerts go where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionSpec {
    /// Only this organisation's alerts; every organisation's when `None`.
    #[serde(default)]
    pub organization: Option<ResourceId>,
    /// The kinds delivered, never empty.
    pub kinds: Vec<AlertKind>,
    /// Where alerts are POSTed (checked by [`destination`]).
    pub url: String,
    /// Whether deliveries run; a subscription disabled for failing says why elsewhere.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

impl SubscriptionSpec {
    pub fn wants(&self, organization: &str, kind: &str) -> bool {
        self.organization
            .as_ref()
            .is_none_or(|o| o.as_str() == organization)
            && AlertKind::parse(kind).is_some_and(|k| self.kinds.contains(&k))
    }
}

/// What the server allows as a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DestinationPolicy {
    /// Plain `http://` URLs (otherwise `https://` only).
    pub allow_http: bool,
    /// Loopback, private, link-local and other non-public addresses.
    pub allow_private: bool,
}

/// A destination URL's parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub https: bool,
    /// The host as written (a name, or an address; IPv6 without its brackets).
    pub host: String,
}

/// Checks a destination URL as written: `https://` (or `http://` where allowed), a host,
/// no user information; a host that is an address must be a public one unless allowed.
/// Names are checked again when connecting, on the addresses they resolve to.
pub fn destination(url: &str, policy: DestinationPolicy) -> Result<Destination, String> {
    if url.len() > 2048 {
        return Err("must be at most 2048 characters".into());
    }
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        if !policy.allow_http {
            return Err("must be an https:// URL (plain http is off on this server)".into());
        }
        (false, r)
    } else {
        return Err("must start with https://".into());
    };
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not hold spaces or control characters".into());
    }
    if url.contains('#') {
        return Err("must not have a fragment".into());
    }
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err("must not carry user information".into());
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default().to_string()
    } else {
        authority
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(authority)
            .to_string()
    };
    if host.is_empty() {
        return Err("must name a host".into());
    }
    let lower = host.to_ascii_lowercase();
    if !policy.allow_private && (lower == "localhost" || lower.ends_with(".localhost")) {
        return Err(
            "must not be a loopback address (this server refuses private destinations)".into(),
        );
    }
    if let Ok(ip) = host.parse::<IpAddr>()
        && !allowed_address(ip, policy)
    {
        return Err(format!(
            "{ip} is not a public address (this server refuses private destinations)"
        ));
    }
    Ok(Destination { https, host })
}

/// Whether a delivery may connect to `ip`: public addresses always; loopback, private,
/// link-local, shared, documentation, multicast and unspecified ones only where allowed.
pub fn allowed_address(ip: IpAddr, policy: DestinationPolicy) -> bool {
    policy.allow_private || public(ip)
}

fn public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                // 100.64.0.0/10, carrier-grade NAT (shared address space).
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                // 192.0.0.0/24, protocol assignments; 198.18.0.0/15, benchmarking.
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // fc00::/7 unique local, fe80::/10 link-local, 2001:db8::/32 documentation.
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                // 64:ff9b::/96 NAT64 can reach private IPv4 space.
                || (s[0] == 0x0064 && s[1] == 0xff9b))
        }
    }
}

/// How long to wait after the `attempt`-th failure (1 for the first): doubling from
/// `base` up to `cap`, then jittered into its upper half (`jitter` in [0, 1)) so that
/// receivers coming back are not met by every sender at once.
pub fn backoff(attempt: u32, base: Duration, cap: Duration, jitter: f64) -> Duration {
    let doubled = base
        .checked_mul(1u32 << attempt.saturating_sub(1).min(30))
        .unwrap_or(cap)
        .min(cap);
    doubled.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: DestinationPolicy = DestinationPolicy {
        allow_http: false,
        allow_private: false,
    };

    #[test]
    fn destinations_are_https_public_hosts() {
        let d = destination("https://hooks.example.com/sl?x=1", STRICT).expect("fine");
        assert_eq!(d.host, "hooks.example.com");
        assert!(d.https);
        assert!(destination("https://hooks.example.com:8443/x", STRICT).is_ok());
        for bad in [
            "http://hooks.example.com/",
            "ftp://x",
            "https://",
            "https://user:pw@hooks.example.com/",
            "https://127.0.0.1/",
            "https://10.1.2.3/",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/",
            "https://[fe80::1]:8080/",
            "https://[::ffff:192.168.0.1]/",
            "https://localhost:8080/",
            "https://hooks.example.com/#frag",
            "https://hooks.example.com/a b",
        ] {
            assert!(destination(bad, STRICT).is_err(), "{bad}");
        }
        let open = DestinationPolicy {
            allow_http: true,
            allow_private: true,
        };
        assert!(destination("http://127.0.0.1:9000/hook", open).is_ok());
    }

    #[test]
    fn only_public_addresses_are_allowed_by_default() {
        for ip in ["8.8.8.8", "2606:4700::1111", "93.184.216.34"] {
            assert!(public(ip.parse().expect("ip")), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(!public(ip.parse().expect("ip")), "{ip}");
        }
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter_in_the_upper_half() {
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(3600);
        assert_eq!(backoff(1, base, cap, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(1, base, cap, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(4, base, cap, 1.0), Duration::from_secs(8));
        assert_eq!(backoff(40, base, cap, 1.0), cap);
        let d = backoff(3, base, cap, 0.5);
        assert!(d >= Duration::from_secs(2) && d <= Duration::from_secs(4));
    }

    #[test]
    fn a_subscription_wants_its_organisation_and_kinds() {
        let spec = SubscriptionSpec {
            organization: Some(ResourceId::parse("acme").expect("id")),
            kinds: vec![AlertKind::Breach],
            url: "https://x.example".into(),
            enabled: true,
        };
        assert!(spec.wants("acme", "breach"));
        assert!(!spec.wants("acme", "warning"));
        assert!(!spec.wants("globex", "breach"));
        let all = SubscriptionSpec {
            organization: None,
            ..spec
        };
        assert!(all.wants("globex", "breach"));
    }
}
