//! What is due, breached or at risk: pages of the clocks index, written in the same
//! transaction as every event.

use super::error::AppResult;
use super::{App, page};
use crate::store::{ClockCursor, ClockFilter, ClockQuery, ClockRef, Store};

impl<S: Store> App<S> {
    /// A page of the clocks a query finds, and the token of the next page (empty at the
    /// end). Tokens bind to the query's own parameters, not to "now", so paging through
    /// breached clocks keeps working while time moves.
    pub async fn clocks(
        &self,
        query: &ClockQuery,
        filter: &ClockFilter,
        size: u32,
        page_token: &str,
    ) -> AppResult<(Vec<ClockRef>, String)> {
        let query_key = match query {
            ClockQuery::Due { from, to } => format!("due:{from}:{to}|{filter:?}"),
            ClockQuery::Breached { .. } => format!("breached|{filter:?}"),
            ClockQuery::AtRisk { .. } => format!("at_risk|{filter:?}"),
        };
        type Pos = (i64, String, String, u32);
        let after: Option<Pos> = page::decode(&query_key, page_token)?;
        let cursor = after.map(|(deadline_us, ticket_id, metric, instance)| ClockCursor {
            deadline_us,
            ticket_id,
            metric,
            instance,
        });
        // Due, breached and at-risk pages tolerate the replica's lag.
        let rows = self
            .reads()
            .query_clocks(query, filter, cursor.as_ref(), size + 1)
            .await?;
        let more = rows.len() > size as usize;
        let page: Vec<ClockRef> = rows.into_iter().take(size as usize).collect();
        let next = match page.last() {
            Some(last) if more => page::encode(
                &query_key,
                &(
                    last.deadline.map_or(0, |d| d.timestamp_micros()),
                    last.ticket_id.clone(),
                    last.metric.clone(),
                    last.instance,
                ),
            ),
            _ => String::new(),
        };
        Ok((page, next))
    }
}
