//! The schema's plan for distributing by organisation (Citus; docs/scaling.md): every
//! table is either distributed by `organization` or a reference table, and a distributed
//! table's primary key and unique indexes must carry the organisation first, or be listed
//! below with the migration that will move them. A new table, or a new unique index on a
//! distributed table, fails here until it follows the plan or is listed.

use std::collections::BTreeMap;

use servicelevel::store::SqlStore;

use crate::harness::*;

/// Where a table goes when the schema is distributed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// Sharded by `organization`: its keys must lead with it.
    Distributed,
    /// Copied to every node: the shared catalogue and the service's own bookkeeping.
    Reference,
}

use Placement::{Distributed, Reference};

/// Every table of the schema, and why it is placed so.
const PLAN: [(&str, Placement); 18] = [
    ("tickets", Distributed),
    ("ticket_events", Distributed),
    ("clocks", Distributed),
    ("alerts", Distributed),
    ("hour_accounts", Distributed),
    ("ledger_entries", Distributed),
    ("connection_secrets", Distributed),
    ("inbox", Distributed),
    ("connection_tickets", Distributed),
    ("webhook_deliveries", Distributed),
    // Calendars, policies, plans, organisations, connections, subscriptions: read by
    // every organisation's writes, written rarely.
    ("resources", Reference),
    ("resource_versions", Reference),
    ("catalog_epoch", Reference),
    ("recompute_jobs", Reference),
    ("api_clients", Reference),
    // Keyed by the calling client, not an organisation; read by one write at a time.
    ("idempotency", Reference),
    ("subscription_cursors", Reference),
    ("_sqlx_migrations", Reference),
];

/// Distributed tables whose keys do not lead with the organisation yet, and what moves
/// them (docs/scaling.md). Shrinks; never grows without a plan.
const PENDING: [(&str, &str); 4] = [
    (
        "tickets.tickets_pkey",
        "a later migration: primary key (organization, id); ticket ids stay globally unique",
    ),
    (
        "ticket_events.ticket_events_pkey",
        "a later migration: an organization column, backfilled from tickets, leading the key",
    ),
    (
        "ticket_events.ticket_events_request_key",
        "the same migration as ticket_events_pkey",
    ),
    (
        "clocks.clocks_pkey",
        "a later migration: primary key (organization, ticket_id, metric, instance)",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_table_follows_the_distribution_plan() {
    let fresh = fresh_database(Db::Postgres).await;
    let store = SqlStore::connect(&fresh.direct_url, 1)
        .await
        .expect("connects");
    store.migrate().await.expect("migrates");
    let tables = store
        .strings_raw(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
        )
        .await
        .expect("tables");
    let plan: BTreeMap<&str, Placement> = PLAN.into_iter().collect();
    let unplanned: Vec<&String> = tables
        .iter()
        .filter(|t| !plan.contains_key(t.as_str()))
        .collect();
    assert!(
        unplanned.is_empty(),
        "tables without a place in the distribution plan: {unplanned:?}"
    );
    for (table, _) in PLAN {
        assert!(
            tables.iter().any(|t| t == table),
            "{table} is planned but absent"
        );
    }
    // Each unique index of each table: "table.index|first column|has organization".
    let indexes = store
        .strings_raw(
            "SELECT c.relname || '.' || i.relname || '|' || a.attname || '|' || \
               CASE WHEN EXISTS (SELECT 1 FROM unnest(ix.indkey) k \
                 JOIN pg_attribute b ON b.attrelid = c.oid AND b.attnum = k \
                 WHERE b.attname = 'organization') THEN 'yes' ELSE 'no' END \
             FROM pg_index ix \
             JOIN pg_class i ON i.oid = ix.indexrelid \
             JOIN pg_class c ON c.oid = ix.indrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ix.indkey[0] \
             WHERE n.nspname = current_schema() AND ix.indisunique",
        )
        .await
        .expect("indexes");
    let pending: BTreeMap<&str, &str> = PENDING.into_iter().collect();
    let mut wrong = Vec::new();
    let mut still_pending = Vec::new();
    for line in &indexes {
        let mut parts = line.split('|');
        let (Some(name), Some(first), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let table = name.split('.').next().unwrap_or_default();
        if plan.get(table) != Some(&Distributed) {
            continue;
        }
        let leads = first == "organization";
        match (leads, pending.contains_key(name)) {
            (true, true) => wrong.push(format!(
                "{name} leads with organization now: take it off PENDING"
            )),
            (false, false) => wrong.push(format!("{name} does not lead with organization")),
            (false, true) => still_pending.push(name.to_string()),
            (true, false) => {}
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // Every pending entry names an index that exists.
    for name in pending.keys() {
        assert!(
            still_pending.iter().any(|p| p == name),
            "{name} is listed as pending but no such index exists"
        );
    }
    // Distributed tables hold the column the plan shards by, except the one pending its
    // migration.
    for (table, place) in PLAN {
        if place != Distributed || table == "ticket_events" {
            continue;
        }
        let has = store
            .strings_raw(&format!(
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = '{table}' \
                 AND column_name = 'organization'"
            ))
            .await
            .expect("columns");
        assert_eq!(has.len(), 1, "{table} has no organization column");
    }
    store.close().await;
    fresh.remove().await;
}
