//! Ledger writes on Postgres in few statements. A group decided on folds kept in memory
//! is written in one (`post_group_pg`: its own transaction, each account's part only if
//! nothing it was decided on moved). A group decided the long way takes two inside its
//! transaction: one opens it (claims the keys, reads earlier answers, locks the accounts,
//! reads the catalogue epoch), one closes it (entries, account numbers, released claims,
//! answers). Each statement costs the server about as much CPU as the database's work for
//! it, so a group of writes spread over many accounts was bound by its round trips
//! (docs/performance.md).

use std::collections::HashMap;

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{AnyPool, Arguments as _, AssertSqlSafe, Row};

use super::{SqlTx, db_error, keys_of_rows, parse, placeholders, unique_as, us};
use crate::domain::ledger::Entry;
use crate::domain::names::ResourceId;
use crate::store::{
    AccountEntries, Claim, GroupStart, IdempotencyKey, PostedAccount, StoreError, StoreResult,
    StoreTx,
};

/// Statement text and its arguments built together, each value bound where its `?` is.
struct Statement {
    text: String,
    args: AnyArguments,
    failed: Option<String>,
}

impl Statement {
    fn new() -> Self {
        Statement {
            text: String::new(),
            args: AnyArguments::default(),
            failed: None,
        }
    }

    fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    fn add<T>(&mut self, value: T) -> &mut Self
    where
        T: for<'q> sqlx::Encode<'q, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        self.text.push('?');
        if let Err(e) = self.args.add(value) {
            self.failed.get_or_insert(e.to_string());
        }
        self
    }

    /// `(?, ?, ...)` for each item, comma separated, with `row` binding an item's values
    /// (separated by `, `).
    fn tuples<I>(&mut self, items: I, mut row: impl FnMut(&mut Self, I::Item)) -> &mut Self
    where
        I: IntoIterator,
    {
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.text.push('(');
            row(self, item);
            self.text.push(')');
        }
        self
    }

    fn key(&mut self, key: &IdempotencyKey) {
        self.add(key.client.clone())
            .push(", ")
            .add(key.method.to_string())
            .push(", ")
            .add(key.request_id.clone());
    }

    /// An entry's row: account, number, kind, period, time recorded, body.
    fn entry(
        &mut self,
        organization: &ResourceId,
        bucket: &str,
        e: &Entry,
        columns: (String, String),
    ) {
        let (kind, body) = columns;
        self.add(organization.as_str().to_string())
            .push(", ")
            .add(bucket.to_string())
            .push(", ")
            .add(e.seq as i64)
            .push(", ")
            .add(kind)
            .push(", ")
            .add(e.period.to_string())
            .push(", ")
            .add(us(e.recorded_at))
            .push(", ")
            .add(body);
    }

    fn finish(self) -> StoreResult<(String, AnyArguments)> {
        match self.failed {
            Some(e) => Err(StoreError::Corrupt(format!("a value cannot be bound: {e}"))),
            None => Ok((
                placeholders(super::Backend::Postgres, &self.text),
                self.args,
            )),
        }
    }
}

/// An entry's `kind` column and JSON body.
pub(super) fn entry_columns(e: &Entry) -> StoreResult<(String, String)> {
    let body = serde_json::to_string(e).map_err(|err| StoreError::Corrupt(err.to_string()))?;
    let kind = serde_json::to_value(e.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    Ok((kind, body))
}

impl SqlTx {
    pub(super) async fn open_group_pg(
        &mut self,
        claims: &[(IdempotencyKey, String)],
        accounts: &[(ResourceId, String)],
    ) -> StoreResult<GroupStart> {
        let mut st = Statement::new();
        let now = us(chrono::Utc::now());
        // The claims and the earlier answers read the same snapshot: a key is either
        // claimed now or was answered before (or was claimed by a transaction that
        // committed after this statement began: looked up again below). The accounts are
        // locked in key order, as `lock_accounts` does.
        st.push("WITH claimed AS (INSERT INTO idempotency (client, method, request_id, fingerprint, create_us, response) VALUES ")
            .tuples(claims, |st, (key, fingerprint)| {
                st.key(key);
                st.push(", ").add(fingerprint.clone()).push(", ").add(now).push(", NULL");
            })
            .push(" ON CONFLICT DO NOTHING RETURNING client, method, request_id), ")
            .push("locked AS (SELECT a.organization, a.bucket, a.next_seq FROM hour_accounts AS a JOIN (VALUES ")
            .tuples(accounts, |st, (org, bucket)| {
                st.add(org.as_str().to_string()).push(", ").add(bucket.clone());
            })
            .push(") AS k (organization, bucket) ON a.organization = k.organization AND a.bucket = k.bucket \
                   ORDER BY a.organization, a.bucket FOR UPDATE OF a) ")
            .push("SELECT 'claimed' AS part, client, method, request_id, NULL AS organization, NULL AS bucket, NULL::bigint AS n, NULL AS fingerprint, NULL::bytea AS response FROM claimed ")
            .push("UNION ALL SELECT 'locked', NULL, NULL, NULL, organization, bucket, next_seq, NULL, NULL FROM locked ")
            // A join, not `IN`: the planner turns a row `IN` list into an index scan on
            // the client and method with the request ids as a filter, which reads every
            // record of the client.
            .push("UNION ALL SELECT 'seen', i.client, i.method, i.request_id, NULL, NULL, NULL, i.fingerprint, i.response FROM idempotency AS i JOIN (VALUES ")
            .tuples(claims, |st, (key, _)| st.key(key))
            .push(") AS k (client, method, request_id) ON i.client = k.client AND i.method = k.method AND i.request_id = k.request_id \
                   WHERE i.response IS NOT NULL UNION ALL SELECT 'epoch', NULL, NULL, NULL, NULL, NULL, epoch, NULL, NULL FROM catalog_epoch WHERE id = 1");
        let (text, args) = st.finish()?;
        let rows = sqlx::query_with(AssertSqlSafe(text), args)
            .fetch_all(&mut *self.tx)
            .await
            .map_err(db_error)?;
        let mut parts: HashMap<String, Vec<AnyRow>> = HashMap::new();
        for row in rows {
            let part: String = row.try_get("part").map_err(db_error)?;
            parts.entry(part).or_default().push(row);
        }
        let mut take = |part: &str| parts.remove(part).unwrap_or_default();
        let asked = || claims.iter().map(|(k, _)| k);
        let claimed = keys_of_rows(&take("claimed"), asked())?;
        let seen_rows = take("seen");
        let mut answered = Vec::with_capacity(seen_rows.len());
        for (key, row) in keys_of_rows(&seen_rows, asked())?
            .into_iter()
            .zip(&seen_rows)
        {
            answered.push((
                key,
                Claim::Seen {
                    fingerprint: row.try_get("fingerprint").map_err(db_error)?,
                    response: row.try_get("response").map_err(db_error)?,
                },
            ));
        }
        let mut found: HashMap<(String, String), u64> = HashMap::new();
        for row in take("locked") {
            let org: String = row.try_get("organization").map_err(db_error)?;
            let bucket: String = row.try_get("bucket").map_err(db_error)?;
            let next: i64 = row.try_get("n").map_err(db_error)?;
            found.insert((org, bucket), parse("next_seq", u64::try_from(next))?);
        }
        let epoch: i64 = match take("epoch").first() {
            Some(row) => row.try_get("n").map_err(db_error)?,
            None => return Err(StoreError::Corrupt("no catalogue epoch".into())),
        };
        // Keys claimed by a transaction that committed while this one waited for it.
        let unknown: Vec<IdempotencyKey> = asked()
            .filter(|k| !claimed.contains(k) && !answered.iter().any(|(a, _)| a == *k))
            .cloned()
            .collect();
        answered.extend(self.answers_of(&unknown).await?);
        // New accounts: created and locked by the general path.
        let new: Vec<(ResourceId, String)> = accounts
            .iter()
            .filter(|(o, b)| !found.contains_key(&(o.as_str().to_string(), b.clone())))
            .cloned()
            .collect();
        if !new.is_empty() {
            let numbers = self.lock_accounts(&new).await?;
            for ((o, b), n) in new.into_iter().zip(numbers) {
                found.insert((o.as_str().to_string(), b), n);
            }
        }
        let next_seqs = accounts
            .iter()
            .map(|(o, b)| {
                found
                    .get(&(o.as_str().to_string(), b.clone()))
                    .copied()
                    .ok_or_else(|| StoreError::Corrupt(format!("hour account {o}/{b} not locked")))
            })
            .collect::<StoreResult<Vec<u64>>>()?;
        Ok(GroupStart {
            claimed,
            answered,
            next_seqs,
            epoch,
        })
    }

    pub(super) async fn close_group_pg(
        &mut self,
        accounts: &[AccountEntries<'_>],
        refused: &[IdempotencyKey],
        answers: &[(IdempotencyKey, String, Vec<u8>)],
    ) -> StoreResult<()> {
        let accounts: Vec<&AccountEntries<'_>> =
            accounts.iter().filter(|a| !a.entries.is_empty()).collect();
        let mut st = Statement::new();
        let mut parts = 0;
        let mut part = |st: &mut Statement, name: &str| {
            st.push(if parts == 0 { "WITH " } else { ", " })
                .push(name)
                .push(" AS (");
            parts += 1;
        };
        if !accounts.is_empty() {
            part(&mut st, "posted");
            st.push("INSERT INTO ledger_entries (organization, bucket, seq, kind, period, record_us, body) VALUES ");
            let mut rows = Vec::new();
            for a in &accounts {
                for e in a.entries {
                    rows.push((a, e, entry_columns(e)?));
                }
            }
            st.tuples(rows, |st, (a, e, columns)| {
                st.entry(a.organization, a.bucket, e, columns);
            });
            st.push(")");
            part(&mut st, "advanced");
            st.push("UPDATE hour_accounts AS a SET next_seq = v.next_seq FROM (VALUES ")
                .tuples(&accounts, |st, a| {
                    st.add(a.organization.as_str().to_string())
                        .push(", ")
                        .add(a.bucket.to_string())
                        .push(", ")
                        .add(a.next_seq() as i64);
                })
                .push(") AS v (organization, bucket, next_seq) WHERE a.organization = v.organization AND a.bucket = v.bucket)");
        }
        if !refused.is_empty() {
            part(&mut st, "released");
            st.push("DELETE FROM idempotency AS i USING (VALUES ")
                .tuples(refused, |st, key| st.key(key))
                .push(") AS k (client, method, request_id) WHERE i.response IS NULL AND i.client = k.client \
                       AND i.method = k.method AND i.request_id = k.request_id)");
        }
        if !answers.is_empty() {
            // The rows exist (claimed in this transaction): each insert meets its
            // conflict and becomes an update of the row's answer.
            let now = us(chrono::Utc::now());
            part(&mut st, "kept");
            st.push("INSERT INTO idempotency (client, method, request_id, fingerprint, response, create_us) VALUES ")
                .tuples(answers, |st, (key, fingerprint, response)| {
                    st.key(key);
                    st.push(", ")
                        .add(fingerprint.clone())
                        .push(", ")
                        .add(response.clone())
                        .push(", ")
                        .add(now);
                })
                .push(" ON CONFLICT (client, method, request_id) DO UPDATE SET response = excluded.response)");
        }
        if parts == 0 {
            return Ok(());
        }
        st.push(" SELECT 1");
        let (text, args) = st.finish()?;
        sqlx::query_with(AssertSqlSafe(text), args)
            .execute(&mut *self.tx)
            .await
            .map_err(unique_as(|| match accounts.first() {
                Some(a) => format!("an entry of {}/{}", a.organization, a.bucket),
                None => "an idempotency record".into(),
            }))?;
        Ok(())
    }
}

/// [`crate::store::Store::post_group`] in one statement, its own transaction. The
/// accounts whose number, catalogue epoch and request ids are as decided are locked (in
/// key order, as every group locks them), advanced, and get their entries and answers;
/// the others are left as they are. A request id claimed by a write still in flight makes
/// the answers' insert wait for it and then fail on the key if it was kept: the statement
/// fails as a whole.
pub(super) async fn post_group_pg(
    pool: &AnyPool,
    pooled: bool,
    epoch: i64,
    accounts: &[PostedAccount<'_>],
) -> StoreResult<Vec<bool>> {
    let mut st = Statement::new();
    let org = |a: &PostedAccount<'_>| a.organization.as_str().to_string();
    st.push("WITH v (organization, bucket, decided_at, next_seq) AS (VALUES ")
        .tuples(accounts, |st, a| {
            st.add(org(a))
                .push(", ")
                .add(a.bucket.to_string())
                .push(", ")
                .add(a.decided_at as i64)
                .push(", ")
                .add(a.next_seq() as i64);
        })
        .push("), k (organization, bucket, client, method, request_id) AS (VALUES ")
        .tuples(
            accounts
                .iter()
                .flat_map(|a| a.writes.iter().map(move |w| (a, w))),
            |st, (a, w)| {
                st.add(org(a)).push(", ").add(a.bucket.to_string()).push(", ");
                st.key(w.key);
            },
        )
        .push("), locked AS (SELECT a.organization, a.bucket FROM hour_accounts AS a JOIN v \
               ON a.organization = v.organization AND a.bucket = v.bucket WHERE a.next_seq = v.decided_at AND ")
        .add(epoch)
        .push(" = (SELECT epoch FROM catalog_epoch WHERE id = 1) AND NOT EXISTS (SELECT 1 FROM k \
               JOIN idempotency AS i ON i.client = k.client AND i.method = k.method AND i.request_id = k.request_id \
               WHERE k.organization = a.organization AND k.bucket = a.bucket) \
               ORDER BY a.organization, a.bucket FOR UPDATE OF a), \
               advanced AS (UPDATE hour_accounts AS a SET next_seq = v.next_seq FROM locked AS l JOIN v \
               ON v.organization = l.organization AND v.bucket = l.bucket \
               WHERE a.organization = l.organization AND a.bucket = l.bucket AND a.next_seq = v.decided_at \
               RETURNING a.organization, a.bucket)");
    let mut rows = Vec::new();
    for a in accounts {
        for e in a.entries {
            rows.push((a, e, entry_columns(e)?));
        }
    }
    if !rows.is_empty() {
        st.push(", posted AS (INSERT INTO ledger_entries (organization, bucket, seq, kind, period, record_us, body) \
                 SELECT e.organization, e.bucket, e.seq, e.kind, e.period, e.record_us, e.body FROM (VALUES ")
            .tuples(rows, |st, (a, e, columns)| {
                st.entry(a.organization, a.bucket, e, columns);
            })
            .push(") AS e (organization, bucket, seq, kind, period, record_us, body) JOIN advanced AS d \
                   ON d.organization = e.organization AND d.bucket = e.bucket)");
    }
    let answers: Vec<_> = accounts
        .iter()
        .flat_map(|a| {
            a.writes
                .iter()
                .filter_map(move |w| w.answer.as_ref().map(|answer| (a, w, answer)))
        })
        .collect();
    if !answers.is_empty() {
        let now = us(chrono::Utc::now());
        st.push(", kept AS (INSERT INTO idempotency (client, method, request_id, fingerprint, response, create_us) \
                 SELECT r.client, r.method, r.request_id, r.fingerprint, r.response, r.create_us FROM (VALUES ")
            .tuples(answers, |st, (a, w, answer)| {
                st.add(org(a)).push(", ").add(a.bucket.to_string()).push(", ");
                st.key(w.key);
                st.push(", ")
                    .add(w.fingerprint.clone())
                    .push(", ")
                    .add(answer.clone())
                    .push(", ")
                    .add(now);
            })
            .push(") AS r (organization, bucket, client, method, request_id, fingerprint, response, create_us) \
                   JOIN advanced AS d ON d.organization = r.organization AND d.bucket = r.bucket)");
    }
    st.push(" SELECT organization, bucket FROM advanced");
    let (text, args) = st.finish()?;
    let query = sqlx::query_with(AssertSqlSafe(text), args);
    let rows = if pooled {
        // Behind a transaction pooler, a statement outside a transaction is sent in two
        // rounds that may reach two server connections (see `SqlStore::connect_with`):
        // it gets a transaction of its own.
        let mut tx = pool.begin().await.map_err(db_error)?;
        let rows = query.fetch_all(&mut *tx).await.map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        rows
    } else {
        query.fetch_all(pool).await.map_err(db_error)?
    };
    let mut advanced = std::collections::HashSet::new();
    for row in rows {
        let org: String = row.try_get("organization").map_err(db_error)?;
        let bucket: String = row.try_get("bucket").map_err(db_error)?;
        advanced.insert((org, bucket));
    }
    Ok(accounts
        .iter()
        .map(|a| advanced.contains(&(org(a), a.bucket.to_string())))
        .collect())
}
