//! Scopes, and which one each RPC needs: the one table every call is checked against.

use std::fmt;
use std::str::FromStr;

/// A permission an API client holds. Each RPC needs exactly one; none implies another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Read tickets, their clocks and quotes; the deadline queries.
    TicketsRead,
    /// Create tickets, record their events, move them to another policy.
    TicketsWrite,
    /// Read calendars, organisations, policies and plans.
    PoliciesRead,
    /// Change calendars, organisations, policies and plans; import packs.
    PoliciesAdmin,
    /// Read hours contracts, balances, ledger entries and statements.
    LedgerRead,
    /// Record usage and holds.
    LedgerWrite,
    /// Set hours contracts; adjust balances, reverse entries, lock periods.
    LedgerAdmin,
    /// Watch the alert stream.
    AlertsRead,
    /// Read connections (webhooks in) and their inboxes.
    ConnectionsRead,
    /// Create, change and archive connections, rotate their secrets, replay deliveries.
    ConnectionsAdmin,
    /// Read alert webhook subscriptions and their deliveries.
    WebhooksRead,
    /// Create, change and delete alert webhook subscriptions, rotate their secrets,
    /// replay deliveries.
    WebhooksAdmin,
}

impl Scope {
    /// Every scope, in a fixed order.
    pub const ALL: [Scope; 12] = [
        Scope::TicketsRead,
        Scope::TicketsWrite,
        Scope::PoliciesRead,
        Scope::PoliciesAdmin,
        Scope::LedgerRead,
        Scope::LedgerWrite,
        Scope::LedgerAdmin,
        Scope::AlertsRead,
        Scope::ConnectionsRead,
        Scope::ConnectionsAdmin,
        Scope::WebhooksRead,
        Scope::WebhooksAdmin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::TicketsRead => "tickets:read",
            Scope::TicketsWrite => "tickets:write",
            Scope::PoliciesRead => "policies:read",
            Scope::PoliciesAdmin => "policies:admin",
            Scope::LedgerRead => "ledger:read",
            Scope::LedgerWrite => "ledger:write",
            Scope::LedgerAdmin => "ledger:admin",
            Scope::AlertsRead => "alerts:read",
            Scope::ConnectionsRead => "connections:read",
            Scope::ConnectionsAdmin => "connections:admin",
            Scope::WebhooksRead => "webhooks:read",
            Scope::WebhooksAdmin => "webhooks:admin",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scope name that is not one of [`Scope::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope {0:?}: expected one of {list}", list = scope_list())]
pub struct UnknownScope(pub String);

fn scope_list() -> String {
    Scope::ALL.map(Scope::as_str).join(", ")
}

impl FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(s: &str) -> Result<Scope, UnknownScope> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| UnknownScope(s.to_string()))
    }
}

/// A set of scopes.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Scopes(u16);

impl Scopes {
    pub fn all() -> Scopes {
        Scope::ALL.into_iter().collect()
    }

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn insert(&mut self, scope: Scope) {
        self.0 |= scope.bit();
    }

    pub fn remove(&mut self, scope: Scope) {
        self.0 &= !scope.bit();
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// The names, as stored and printed.
    pub fn names(self) -> Vec<String> {
        self.iter().map(|s| s.as_str().to_string()).collect()
    }

    /// Parses a comma-separated list (`tickets:read,ledger:read`); `all` is every scope.
    pub fn parse_list(s: &str) -> Result<Scopes, UnknownScope> {
        let mut scopes = Scopes::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part == "all" {
                scopes = Scopes::all();
            } else {
                scopes.insert(part.parse()?);
            }
        }
        Ok(scopes)
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Scopes {
        let mut scopes = Scopes::default();
        for s in iter {
            scopes.insert(s);
        }
        scopes
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(","))
    }
}

/// Which organisations an RPC touches, for clients restricted to some.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// One organisation's data (named in the request, or the ticket's): the handler checks
    /// it; list and stream RPCs must name an allowed organisation, or are filtered.
    Organization,
    /// Reads of the shared catalogue (calendars, policies, plans): any client with the
    /// scope.
    SharedRead,
    /// Changes to what every organisation shares (calendars, policies, plans, packs):
    /// refused to clients restricted to organisations.
    SharedWrite,
}

/// One RPC of the API: its path, the scope it needs and what it reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Method {
    pub path: &'static str,
    pub scope: Scope,
    pub reach: Reach,
}

const fn m(path: &'static str, scope: Scope, reach: Reach) -> Method {
    Method { path, scope, reach }
}

use Reach::{Organization as Org, SharedRead, SharedWrite};
use Scope::*;

/// Every RPC of `servicelevel.v1`. A method missing here is refused to every caller, and
/// the tests fail for it (they read the methods from the descriptor set).
pub const METHODS: &[Method] = &[
    // Tickets.
    m(
        "/servicelevel.v1.TicketService/CreateTicket",
        TicketsWrite,
        Org,
    ),
    m("/servicelevel.v1.TicketService/GetTicket", TicketsRead, Org),
    m(
        "/servicelevel.v1.TicketService/ListTickets",
        TicketsRead,
        Org,
    ),
    m(
        "/servicelevel.v1.TicketService/RecordEvent",
        TicketsWrite,
        Org,
    ),
    m(
        "/servicelevel.v1.TicketService/MoveTicketPolicy",
        TicketsWrite,
        Org,
    ),
    m(
        "/servicelevel.v1.TicketService/BatchUpsertTickets",
        TicketsWrite,
        Org,
    ),
    m(
        "/servicelevel.v1.TicketService/QuoteDeadlines",
        TicketsRead,
        Org,
    ),
    m(
        "/servicelevel.v1.DeadlineService/ListDueClocks",
        TicketsRead,
        Org,
    ),
    m(
        "/servicelevel.v1.DeadlineService/ListBreachedClocks",
        TicketsRead,
        Org,
    ),
    m(
        "/servicelevel.v1.DeadlineService/ListAtRiskClocks",
        TicketsRead,
        Org,
    ),
    m(
        "/servicelevel.v1.DeadlineService/ExplainDeadline",
        TicketsRead,
        Org,
    ),
    m(
        "/servicelevel.v1.DeadlineService/ReportAttainment",
        TicketsRead,
        Org,
    ),
    // Alerts.
    m("/servicelevel.v1.AlertService/WatchAlerts", AlertsRead, Org),
    // The catalogue.
    m(
        "/servicelevel.v1.CalendarService/CreateCalendar",
        PoliciesAdmin,
        SharedWrite,
    ),
    m(
        "/servicelevel.v1.CalendarService/GetCalendar",
        PoliciesRead,
        SharedRead,
    ),
    m(
        "/servicelevel.v1.CalendarService/ListCalendars",
        PoliciesRead,
        SharedRead,
    ),
    m(
        "/servicelevel.v1.CalendarService/UpdateCalendar",
        PoliciesAdmin,
        SharedWrite,
    ),
    m(
        "/servicelevel.v1.CalendarService/ArchiveCalendar",
        PoliciesAdmin,
        SharedWrite,
    ),
    m(
        "/servicelevel.v1.CalendarService/ImportCalendarHolidays",
        PoliciesAdmin,
        SharedWrite,
    ),
    // Previews change nothing, but read every organisation's open tickets: for the
    // administrators about to make the change.
    m(
        "/servicelevel.v1.CalendarService/PreviewCalendarUpdate",
        PoliciesAdmin,
        SharedWrite,
    ),
    m(
        "/servicelevel.v1.PolicyService/CreatePolicy",
        PoliciesAdmin,
        SharedWrite,
    ),
    m(
        "/servicelevel.v1.PolicyService/GetPolicy",
        PoliciesRead,
        SharedRead,
    ),
    m(
        "/servicelevel.v1.PolicyService/ListPolicies",
        PoliciesRead,
        SharedRead,
    ),
    m(
        "/servicelevel.v1.PolicyService/UpdatePolicy",
        PoliciesAdmin,
        SharedWrite,
    ),
    m(
        "/servicelevel.v1.PolicyService/ArchivePolicy",
        PoliciesAdmin,
        SharedWrite,
    ),
    m(
        "/servicelevel.v1.PolicyService/PreviewPolicyUpdate",
        PoliciesAdmin,
        SharedWrite,
    ),
    m(
        "/servicelevel.v1.PackService/ImportPack",
        PoliciesAdmin,
        SharedWrite,
    ),
    m(
        "/servicelevel.v1.OrganizationService/CreateOrganization",
        PoliciesAdmin,
        Org,
    ),
    m(
        "/servicelevel.v1.OrganizationService/GetOrganization",
        PoliciesRead,
        Org,
    ),
    m(
        "/servicelevel.v1.OrganizationService/ListOrganizations",
        PoliciesRead,
        Org,
    ),
    m(
        "/servicelevel.v1.OrganizationService/UpdateOrganization",
        PoliciesAdmin,
        Org,
    ),
    // Changes nothing, but reads the organisation's open tickets: for whoever may
    // make the update.
    m(
        "/servicelevel.v1.OrganizationService/PreviewOrganizationUpdate",
        PoliciesAdmin,
        Org,
    ),
    m(
        "/servicelevel.v1.OrganizationService/ArchiveOrganization",
        PoliciesAdmin,
        Org,
    ),
    // Connections (webhooks in): one organisation's each, checked by the handler.
    m(
        "/servicelevel.v1.ConnectionService/CreateConnection",
        ConnectionsAdmin,
        Org,
    ),
    m(
        "/servicelevel.v1.ConnectionService/GetConnection",
        ConnectionsRead,
        Org,
    ),
    m(
        "/servicelevel.v1.ConnectionService/ListConnections",
        ConnectionsRead,
        Org,
    ),
    m(
        "/servicelevel.v1.ConnectionService/UpdateConnection",
        ConnectionsAdmin,
        Org,
    ),
    m(
        "/servicelevel.v1.ConnectionService/ArchiveConnection",
        ConnectionsAdmin,
        Org,
    ),
    m(
        "/servicelevel.v1.ConnectionService/AddConnectionSecret",
        ConnectionsAdmin,
        Org,
    ),
    m(
        "/servicelevel.v1.ConnectionService/RemoveConnectionSecret",
        ConnectionsAdmin,
        Org,
    ),
    m(
        "/servicelevel.v1.ConnectionService/ListInboxDeliveries",
        ConnectionsRead,
        Org,
    ),
    m(
        "/servicelevel.v1.ConnectionService/GetInboxDelivery",
        ConnectionsRead,
        Org,
    ),
    m(
        "/servicelevel.v1.ConnectionService/ReplayInboxDelivery",
        ConnectionsAdmin,
        Org,
    ),
    m(
        "/servicelevel.v1.ConnectionService/ReplayInboxDeliveries",
        ConnectionsAdmin,
        Org,
    ),
    // Alert webhooks out: one organisation's (or, for unrestricted clients, every
    // organisation's) each, checked by the handler.
    m(
        "/servicelevel.v1.WebhookService/CreateWebhookSubscription",
        WebhooksAdmin,
        Org,
    ),
    m(
        "/servicelevel.v1.WebhookService/GetWebhookSubscription",
        WebhooksRead,
        Org,
    ),
    m(
        "/servicelevel.v1.WebhookService/ListWebhookSubscriptions",
        WebhooksRead,
        Org,
    ),
    m(
        "/servicelevel.v1.WebhookService/UpdateWebhookSubscription",
        WebhooksAdmin,
        Org,
    ),
    m(
        "/servicelevel.v1.WebhookService/DeleteWebhookSubscription",
        WebhooksAdmin,
        Org,
    ),
    m(
        "/servicelevel.v1.WebhookService/AddWebhookSubscriptionSecret",
        WebhooksAdmin,
        Org,
    ),
    m(
        "/servicelevel.v1.WebhookService/RemoveWebhookSubscriptionSecret",
        WebhooksAdmin,
        Org,
    ),
    m(
        "/servicelevel.v1.WebhookService/ListWebhookDeliveries",
        WebhooksRead,
        Org,
    ),
    m(
        "/servicelevel.v1.WebhookService/GetWebhookDelivery",
        WebhooksRead,
        Org,
    ),
    m(
        "/servicelevel.v1.WebhookService/ReplayWebhookDelivery",
        WebhooksAdmin,
        Org,
    ),
    // Hours.
    m(
        "/servicelevel.v1.HoursService/CreatePlan",
        PoliciesAdmin,
        SharedWrite,
    ),
    m(
        "/servicelevel.v1.HoursService/GetPlan",
        PoliciesRead,
        SharedRead,
    ),
    m(
        "/servicelevel.v1.HoursService/ListPlans",
        PoliciesRead,
        SharedRead,
    ),
    m(
        "/servicelevel.v1.HoursService/UpdatePlan",
        PoliciesAdmin,
        SharedWrite,
    ),
    m(
        "/servicelevel.v1.HoursService/SetHoursContract",
        LedgerAdmin,
        Org,
    ),
    m(
        "/servicelevel.v1.HoursService/GetHoursContract",
        LedgerRead,
        Org,
    ),
    m(
        "/servicelevel.v1.HoursService/RecordUsage",
        LedgerWrite,
        Org,
    ),
    m(
        "/servicelevel.v1.HoursService/HoldMinutes",
        LedgerWrite,
        Org,
    ),
    m(
        "/servicelevel.v1.HoursService/CaptureHold",
        LedgerWrite,
        Org,
    ),
    m(
        "/servicelevel.v1.HoursService/ReleaseHold",
        LedgerWrite,
        Org,
    ),
    m(
        "/servicelevel.v1.HoursService/AdjustBalance",
        LedgerAdmin,
        Org,
    ),
    m(
        "/servicelevel.v1.HoursService/ReverseEntry",
        LedgerAdmin,
        Org,
    ),
    m("/servicelevel.v1.HoursService/LockPeriod", LedgerAdmin, Org),
    m("/servicelevel.v1.HoursService/GetBalance", LedgerRead, Org),
    m(
        "/servicelevel.v1.HoursService/ListLedgerEntries",
        LedgerRead,
        Org,
    ),
    m(
        "/servicelevel.v1.HoursService/GetStatement",
        LedgerRead,
        Org,
    ),
    m(
        "/servicelevel.v1.HoursService/ExportStatements",
        LedgerRead,
        Org,
    ),
];

/// What a call to a path needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Nothing: the gRPC health service (Kubernetes probes carry no token).
    Open,
    /// A valid token, whatever its scopes: server reflection, when
    /// `SERVICELEVEL_REFLECTION=token` (it is open by default).
    Authenticated,
    /// A valid token with the method's scope.
    Method(&'static Method),
    /// Nothing grants it (a method missing from [`METHODS`], an unknown path): refused
    /// to every caller, after authentication.
    Unlisted,
}

/// The access a request path (`/package.Service/Method`) needs.
pub fn access(path: &str) -> Access {
    if path.starts_with("/grpc.health.v1.Health/") {
        return Access::Open;
    }
    if path.starts_with("/grpc.reflection.v1.ServerReflection/")
        || path.starts_with("/grpc.reflection.v1alpha.ServerReflection/")
    {
        return Access::Authenticated;
    }
    match METHODS.iter().find(|m| m.path == path) {
        Some(m) => Access::Method(m),
        None => Access::Unlisted,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use prost::Message as _;

    use super::*;

    /// Every method of every `servicelevel` service, from the descriptor set.
    fn described() -> BTreeSet<String> {
        let set =
            prost_types::FileDescriptorSet::decode(crate::api::pb::FILE_DESCRIPTOR_SET).unwrap();
        let mut paths = BTreeSet::new();
        for file in set.file {
            let package = file.package().to_string();
            if !package.starts_with("servicelevel.") {
                continue;
            }
            for service in &file.service {
                for method in &service.method {
                    paths.insert(format!("/{package}.{}/{}", service.name(), method.name()));
                }
            }
        }
        paths
    }

    #[test]
    fn every_rpc_has_a_scope_and_every_entry_an_rpc() {
        let described = described();
        assert!(described.len() > 40, "the descriptor set lists the API");
        let listed: BTreeSet<String> = METHODS.iter().map(|m| m.path.to_string()).collect();
        assert_eq!(listed.len(), METHODS.len(), "a method is listed twice");
        let missing: Vec<_> = described.difference(&listed).collect();
        assert!(
            missing.is_empty(),
            "RPCs without a scope in auth::scope::METHODS: {missing:?}"
        );
        let stale: Vec<_> = listed.difference(&described).collect();
        assert!(stale.is_empty(), "entries for no RPC: {stale:?}");
    }

    #[test]
    fn scopes_parse_and_print() {
        for s in Scope::ALL {
            assert_eq!(s.as_str().parse::<Scope>(), Ok(s));
        }
        let err = "tickets:delete".parse::<Scope>().unwrap_err();
        assert!(err.to_string().contains("tickets:read"), "{err}");
        let set = Scopes::parse_list("ledger:read, tickets:write,,").unwrap();
        assert!(set.contains(Scope::LedgerRead) && set.contains(Scope::TicketsWrite));
        assert!(!set.contains(Scope::TicketsRead));
        assert_eq!(set.to_string(), "tickets:write,ledger:read");
        assert_eq!(Scopes::parse_list("all").unwrap(), Scopes::all());
        assert!(Scopes::parse_list("").unwrap().is_empty());
        let mut all = Scopes::all();
        all.remove(Scope::AlertsRead);
        assert!(!all.contains(Scope::AlertsRead) && all.contains(Scope::LedgerAdmin));
    }

    #[test]
    fn paths_map_to_access() {
        assert_eq!(access("/grpc.health.v1.Health/Check"), Access::Open);
        assert_eq!(access("/grpc.health.v1.Health/Watch"), Access::Open);
        assert_eq!(
            access("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            Access::Authenticated
        );
        assert_eq!(
            access("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"),
            Access::Authenticated
        );
        match access("/servicelevel.v1.HoursService/RecordUsage") {
            Access::Method(m) => assert_eq!(m.scope, Scope::LedgerWrite),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            access("/servicelevel.v1.TicketService/DeleteEverything"),
            Access::Unlisted
        );
        assert_eq!(access("/grpc.health.v1.Healthy/Check"), Access::Unlisted);
        assert_eq!(access("/"), Access::Unlisted);
    }

    #[test]
    fn writes_of_the_shared_catalogue_need_an_admin_scope() {
        for m in METHODS {
            if m.reach == Reach::SharedWrite {
                assert_eq!(m.scope, Scope::PoliciesAdmin, "{}", m.path);
            }
        }
    }
}
