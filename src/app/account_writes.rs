//! Group commit for hour accounts.
//!
//! Every ledger write takes its account's row lock, so one account accepts one write per
//! commit: a busy account (a customer's whole support desk logging time on one bucket)
//! was bound by commit latency. Writes to one account now queue in this process, and one
//! task per account decides everything queued in one transaction: the account is locked
//! once, each write is decided on the fold in arrival order exactly as if it had been
//! applied alone (a refusal leaves the fold as it was and stores nothing, a retry gets
//! its stored answer), then all entries and all idempotency records (each with its own
//! answer) are written and committed together.
//!
//! The task, not the caller, runs the transaction: a caller that gives up (a deadline, a
//! client gone) does not cancel a write already queued; it is applied, and a retry under
//! the same request id gets its answer.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use super::answer::{Answer, Idempotency, same_request};
use super::error::{AppError, AppResult};
use super::fingerprint::Fingerprint;
use super::hours::{Balance, HoursContext, LedgerWrite};
use super::{App, Reader};
use crate::domain::ledger::{BucketName, Command, Entry, Ledger, TicketRef};
use crate::domain::names::ResourceId;
use crate::store::{Claim, IdempotencyKey, Store, StoreTx};

/// Most writes decided in one transaction: bounds the statement sizes (entries and
/// idempotency records are written with one statement each).
const MAX_GROUP: usize = 128;

/// Decides a write's command on the locked account's fold.
pub type Decide =
    Box<dyn FnOnce(&HoursContext, &Ledger, Option<TicketRef>) -> AppResult<Command> + Send>;

/// Renders a write's answer as stored under its request id.
pub type Render = Box<dyn Fn(&LedgerWrite) -> Vec<u8> + Send>;

/// A write waiting for its account's turn.
pub struct Queued {
    pub id: Idempotency,
    pub fingerprint: Fingerprint,
    pub ticket: Option<TicketRef>,
    pub command: Decide,
    /// The answer as stored under the request id.
    pub render: Render,
    reply: oneshot::Sender<AppResult<Vec<u8>>>,
}

/// The queues of accounts that have a writer task: an account is present while its task
/// runs, so a write either joins the queue or starts the task.
#[derive(Default)]
pub struct AccountQueues {
    queues: Mutex<HashMap<(ResourceId, BucketName), VecDeque<Queued>>>,
}

impl<S: Store> App<S> {
    /// Queues a write on its account and waits for its answer.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn queue_account_write<A: Answer + 'static>(
        self: &Arc<Self>,
        id: &Idempotency,
        fingerprint: &Fingerprint,
        org: &ResourceId,
        bucket: &BucketName,
        ticket: Option<TicketRef>,
        command: Decide,
        render: fn(&LedgerWrite) -> A,
    ) -> AppResult<A> {
        let (reply, answer) = oneshot::channel();
        let queued = Queued {
            id: id.clone(),
            fingerprint: fingerprint.clone(),
            ticket,
            command,
            render: Box::new(move |write| render(write).to_bytes()),
            reply,
        };
        let account = (org.clone(), bucket.clone());
        self.metrics.hours_writes_waiting(1);
        let start = {
            let mut queues = self
                .account_queues
                .queues
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match queues.get_mut(&account) {
                Some(queue) => {
                    queue.push_back(queued);
                    false
                }
                None => {
                    queues.insert(account.clone(), VecDeque::from([queued]));
                    true
                }
            }
        };
        if start {
            let app = Arc::clone(self);
            tokio::spawn(async move { app.account_writer(account).await });
        }
        let bytes = answer.await.map_err(|_| {
            AppError::Internal("the account's writer stopped before answering".into())
        })??;
        A::from_bytes(&bytes)
            .map_err(|e| AppError::Internal(format!("an answer cannot be read back: {e}")))
    }

    /// The account's writer: decides groups of queued writes until the queue is empty.
    async fn account_writer(self: Arc<Self>, account: (ResourceId, BucketName)) {
        // Should this task end early (a panic), the account must not stay marked as
        // having a writer: the guard removes it, and the writes still queued are answered
        // with an error when their reply ends are dropped.
        let guard = Leave {
            queues: &self.account_queues,
            account: &account,
        };
        loop {
            let group: Vec<Queued> = {
                let mut queues = self
                    .account_queues
                    .queues
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let Some(queue) = queues.get_mut(&account) else {
                    return;
                };
                if queue.is_empty() {
                    queues.remove(&account);
                    std::mem::forget(guard);
                    return;
                }
                let n = queue.len().min(MAX_GROUP);
                queue.drain(..n).collect()
            };
            self.decide_group(&account.0, &account.1, group).await;
        }
    }

    /// Decides a group, answering every write in it.
    async fn decide_group(&self, org: &ResourceId, bucket: &BucketName, group: Vec<Queued>) {
        self.metrics.account_group(group.len());
        let n = i64::try_from(group.len()).unwrap_or(i64::MAX);
        let mut replies = Vec::with_capacity(group.len());
        let mut writes = Vec::with_capacity(group.len());
        for q in group {
            replies.push(q.reply);
            writes.push(Write {
                id: q.id,
                fingerprint: q.fingerprint,
                ticket: q.ticket,
                command: Some(q.command),
                render: q.render,
            });
        }
        match self.try_group(org, bucket, writes).await {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
        self.metrics.hours_writes_waiting(-n);
    }

    /// One transaction for the group: claim every key, lock the account, decide each
    /// write in order on the fold (retries get their stored answers, refusals give their
    /// keys back), write all entries and answers, commit. `Err` when the transaction as
    /// a whole failed: then nothing was written.
    async fn try_group(
        &self,
        org: &ResourceId,
        bucket: &BucketName,
        mut writes: Vec<Write>,
    ) -> AppResult<Vec<AppResult<Vec<u8>>>> {
        let mut tx = self.store.begin().await?;
        let mut claims: Vec<(IdempotencyKey, String)> = Vec::with_capacity(writes.len());
        for w in &writes {
            if !claims.iter().any(|(k, _)| *k == w.id.key) {
                claims.push((w.id.key.clone(), w.fingerprint.to_json()));
            }
        }
        let claimed = tx.claim_many(&claims).await?;
        let earlier: Vec<IdempotencyKey> = claims
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| !claimed.contains(k))
            .collect();
        // Answered before (or in this group, further down): fingerprint and answer.
        let mut answered: HashMap<IdempotencyKey, (String, Vec<u8>)> = HashMap::new();
        for (key, claim) in tx.answers_of(&earlier).await? {
            if let Claim::Seen {
                fingerprint,
                response,
            } = claim
            {
                answered.insert(key, (fingerprint, response));
            }
        }
        let next_seq = tx.lock_account(org, bucket.as_str()).await?;
        let mut reader = Reader::Tx(&mut tx);
        let (epoch, ctx) = match self.hours_context(&mut reader, org).await {
            Ok(context) => context,
            // No context (the organisation or its contract is gone): retries still get
            // their answers, as they would have from their claim; the others are refused,
            // and nothing is kept.
            Err(e) => {
                return Ok(writes
                    .iter()
                    .map(|w| match answered.get(&w.id.key) {
                        Some((stored, response)) => {
                            same_request(&w.id, &w.fingerprint, stored).map(|()| response.clone())
                        }
                        None => Err(e.clone()),
                    })
                    .collect());
            }
        };
        let mut ledger = self
            .ledger(&mut reader, &ctx, epoch, org, bucket, next_seq)
            .await?;
        let mut outcomes = Vec::with_capacity(writes.len());
        let mut entries: Vec<Entry> = Vec::new();
        let mut answers: Vec<(IdempotencyKey, String, Vec<u8>)> = Vec::new();
        for w in &mut writes {
            if let Some((stored, response)) = answered.get(&w.id.key) {
                outcomes
                    .push(same_request(&w.id, &w.fingerprint, stored).map(|()| response.clone()));
                continue;
            }
            if !claimed.contains(&w.id.key) {
                outcomes.push(Err(AppError::Internal(format!(
                    "request_id {:?} was claimed by a write that left no answer",
                    w.id.key.request_id
                ))));
                continue;
            }
            let Some(command) = w.command.take() else {
                outcomes.push(Err(AppError::Internal(
                    "a ledger write decided twice".into(),
                )));
                continue;
            };
            let now = self.now();
            let decided = command(&ctx, &ledger, w.ticket.take())
                .and_then(|command| Ok(ledger.decide(&command, now)?));
            let new = match decided {
                Ok(new) => new,
                Err(e) => {
                    outcomes.push(Err(e));
                    continue;
                }
            };
            ledger.apply(new.clone())?;
            let period = match new.last() {
                Some(e) => e.period,
                None => ledger.period_at(now)?,
            };
            let write = LedgerWrite {
                balance: Balance {
                    organization: org.clone(),
                    statement: ledger.summary(period)?,
                    as_of: now,
                    zone: ctx.organization.zone,
                },
                entries: new,
            };
            let bytes = (w.render)(&write);
            entries.extend(write.entries);
            let fingerprint = w.fingerprint.to_json();
            // A later write in the group under the same key is a retry of this one.
            answered.insert(w.id.key.clone(), (fingerprint.clone(), bytes.clone()));
            answers.push((w.id.key.clone(), fingerprint, bytes.clone()));
            outcomes.push(Ok(bytes));
        }
        let refused: Vec<IdempotencyKey> = claimed
            .into_iter()
            .filter(|k| !answered.contains_key(k))
            .collect();
        tx.append_entries(org, bucket.as_str(), &entries).await?;
        tx.release_claims(&refused).await?;
        tx.complete_many(&answers).await?;
        // Back into the cache before the commit releases the account's lock, so the next
        // writer finds it. Should the commit fail, the cached fold is ahead of the stored
        // entries, and the next writer sees that from the account's number and refolds.
        self.keep_ledger(org, epoch, ledger);
        // Not `App::commit`: a ledger write records no alert and moves no ticket's next
        // change, so the runner and the alert readers are not woken for it.
        tx.commit().await?;
        self.metrics.ledger_entries(bucket.as_str(), &entries);
        Ok(outcomes)
    }
}

/// A write being decided.
struct Write {
    id: Idempotency,
    fingerprint: Fingerprint,
    ticket: Option<TicketRef>,
    /// Taken when decided.
    command: Option<Decide>,
    render: Render,
}

/// Removes the account's queue if its writer task ends without emptying it.
struct Leave<'a> {
    queues: &'a AccountQueues,
    account: &'a (ResourceId, BucketName),
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.queues
            .queues
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(self.account);
    }
}
