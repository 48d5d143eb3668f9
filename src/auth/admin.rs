//! Managing API clients: what `servicelevel client ...` does, and the bootstrap admin.

use chrono::{DateTime, SecondsFormat, Utc};

use super::scope::Scopes;
use super::token;
use crate::domain::names::ResourceId;
use crate::store::{ApiClientRecord, Store, StoreError};

/// The name of the admin client made from `SERVICELEVEL_BOOTSTRAP_ADMIN_TOKEN_HASH`.
pub const BOOTSTRAP_ADMIN: &str = "bootstrap-admin";

/// What `client create` asks for, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewClient {
    pub name: ResourceId,
    pub scopes: Scopes,
    /// `None`: every organisation.
    pub organizations: Option<Vec<ResourceId>>,
}

impl NewClient {
    /// From the command line: a name, comma-separated scopes (`all` for every one) and
    /// organisations (`acme` or `organizations/acme`; none for every organisation).
    pub fn parse(name: &str, scopes: &str, organizations: &[String]) -> Result<NewClient, String> {
        let name = ResourceId::parse(name).map_err(|e| format!("client name {name:?}: {e}"))?;
        let scopes = Scopes::parse_list(scopes).map_err(|e| e.to_string())?;
        if scopes.is_empty() {
            return Err("a client needs at least one scope (--scopes)".into());
        }
        let organizations = if organizations.is_empty() {
            None
        } else {
            let mut orgs = organizations
                .iter()
                .map(|o| {
                    let id = o.trim().strip_prefix("organizations/").unwrap_or(o.trim());
                    ResourceId::parse(id).map_err(|e| format!("organization {o:?}: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            orgs.sort();
            orgs.dedup();
            Some(orgs)
        };
        Ok(NewClient {
            name,
            scopes,
            organizations,
        })
    }
}

fn store_error(e: StoreError) -> String {
    match e {
        StoreError::AlreadyExists(what) => {
            format!("{what} already exists (names are never reused, even after a revocation)")
        }
        e => e.to_string(),
    }
}

/// Creates a client; returns it and its token, which exists nowhere else.
pub async fn create_client<S: Store>(
    store: &S,
    new: &NewClient,
    now: DateTime<Utc>,
) -> Result<(ApiClientRecord, String), String> {
    let id = token::new_client_id();
    let secret = token::new_token(&id)?;
    let record = ApiClientRecord {
        id,
        name: new.name.clone(),
        token_hash: token::hash(&secret),
        scopes: new.scopes.names(),
        organizations: new.organizations.clone(),
        created_at: now,
        revoked_at: None,
    };
    store
        .insert_api_client(&record)
        .await
        .map_err(store_error)?;
    Ok((record, secret))
}

/// Every client, one line each: name, id, scopes, organisations, created, revoked.
pub async fn list_clients<S: Store>(store: &S) -> Result<Vec<String>, String> {
    let clients = store.list_api_clients().await.map_err(store_error)?;
    Ok(clients.iter().map(describe).collect())
}

/// The header row `client list` prints above the clients (tab-separated like them).
pub const LIST_HEADER: &str = "NAME\tID\tSCOPES\tORGANIZATIONS\tCREATED\tSTATE";

/// A client as `client list` prints it (tab-separated).
pub fn describe(c: &ApiClientRecord) -> String {
    let orgs = match &c.organizations {
        None => "*".to_string(),
        Some(orgs) => orgs
            .iter()
            .map(ResourceId::as_str)
            .collect::<Vec<_>>()
            .join(","),
    };
    let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    format!(
        "{}\t{}\t{}\t{}\tcreated {}\t{}",
        c.name,
        c.id,
        c.scopes.join(","),
        orgs,
        time(c.created_at),
        c.revoked_at
            .map_or_else(|| "active".to_string(), |t| format!("revoked {}", time(t)))
    )
}

/// Revokes a client by name: its token stops working within the authentication cache's
/// lifetime ([`super::CACHE_TTL`]).
pub async fn revoke_client<S: Store>(
    store: &S,
    name: &str,
    now: DateTime<Utc>,
) -> Result<ApiClientRecord, String> {
    store
        .revoke_api_client(name, now)
        .await
        .map_err(|e| match e {
            StoreError::NotFound(_) => format!("no API client is named {name:?}"),
            e => store_error(e),
        })
}

/// The SHA-256 hex of a token read from standard input, without its line ending.
pub fn hash_token_input(input: &str) -> Result<String, String> {
    let token = input
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(input);
    if token.trim().is_empty() {
        return Err("no token on standard input".into());
    }
    Ok(token::hash(token))
}

/// What the bootstrap did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// A client with that hash exists already (active or revoked): nothing to do.
    Present { name: String },
    /// Made an admin client with every scope.
    Created { name: String },
}

/// Makes the first admin client from a token hash (`SERVICELEVEL_BOOTSTRAP_ADMIN_TOKEN_HASH`)
/// unless a client holds that hash already: idempotent across restarts and replicas
/// starting together, and a revoked bootstrap client stays revoked. It is named
/// `bootstrap-admin`, or `bootstrap-admin-<first 8 digits of the hash>` when that name
/// belongs to an earlier hash (the Secret was changed).
pub async fn bootstrap<S: Store>(
    store: &S,
    token_hash: &str,
    now: DateTime<Utc>,
) -> Result<Bootstrap, String> {
    let hash = token::parse_hash(token_hash)
        .map_err(|e| format!("SERVICELEVEL_BOOTSTRAP_ADMIN_TOKEN_HASH: {e}"))?;
    let present = |c: ApiClientRecord| Bootstrap::Present {
        name: c.name.to_string(),
    };
    if let Some(c) = store
        .api_client_by_token_hash(&hash)
        .await
        .map_err(store_error)?
    {
        return Ok(present(c));
    }
    let taken = store
        .list_api_clients()
        .await
        .map_err(store_error)?
        .iter()
        .any(|c| c.name.as_str() == BOOTSTRAP_ADMIN);
    let name = if taken {
        format!("{BOOTSTRAP_ADMIN}-{}", &hash[..8])
    } else {
        BOOTSTRAP_ADMIN.to_string()
    };
    let record = ApiClientRecord {
        id: token::new_client_id(),
        name: ResourceId::parse(&name).map_err(|e| e.to_string())?,
        token_hash: hash.clone(),
        scopes: Scopes::all().names(),
        organizations: None,
        created_at: now,
        revoked_at: None,
    };
    match store.insert_api_client(&record).await {
        Ok(()) => Ok(Bootstrap::Created { name }),
        // Another replica made it first.
        Err(StoreError::AlreadyExists(_)) => match store
            .api_client_by_token_hash(&hash)
            .await
            .map_err(store_error)?
        {
            Some(c) => Ok(present(c)),
            None => Err(format!(
                "cannot create the bootstrap admin: the name {name} is taken"
            )),
        },
        Err(e) => Err(store_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Scope;

    #[test]
    fn new_clients_are_checked() {
        let c = NewClient::parse(
            "crm",
            "tickets:read,tickets:write",
            &["organizations/acme".into(), "globex".into(), "acme".into()],
        )
        .unwrap();
        assert_eq!(c.name.as_str(), "crm");
        assert!(c.scopes.contains(Scope::TicketsWrite));
        let orgs: Vec<&str> = c
            .organizations
            .as_ref()
            .unwrap()
            .iter()
            .map(ResourceId::as_str)
            .collect();
        assert_eq!(orgs, ["acme", "globex"]);
        assert_eq!(
            NewClient::parse("ops", "all", &[]).unwrap().scopes,
            Scopes::all()
        );
        assert!(
            NewClient::parse("ops", "all", &[])
                .unwrap()
                .organizations
                .is_none()
        );
        assert!(NewClient::parse("Bad Name", "all", &[]).is_err());
        assert!(NewClient::parse("crm", "", &[]).is_err());
        assert!(NewClient::parse("crm", "tickets:nope", &[]).is_err());
        assert!(NewClient::parse("crm", "all", &["Acme Inc".into()]).is_err());
    }

    #[test]
    fn token_input_loses_its_line_ending_only() {
        assert_eq!(hash_token_input("abc\n"), Ok(token::hash("abc")));
        assert_eq!(hash_token_input("abc\r\n"), Ok(token::hash("abc")));
        assert_eq!(hash_token_input("abc"), Ok(token::hash("abc")));
        assert_eq!(hash_token_input("abc \n"), Ok(token::hash("abc ")));
        assert!(hash_token_input("\n").is_err());
    }
}
