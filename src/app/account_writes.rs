//! Group commit for hour accounts.
//!
//! Every ledger write takes its account's row lock, so one account accepts one write per
//! commit: a busy account (a customer's whole support desk logging time on one bucket)
//! was bound by commit latency, and writes spread over many accounts paid a whole
//! transaction (seven statements) each. Writes now queue in this process on one of a few
//! lanes (an account always on the same lane), and one task per busy lane decides
//! everything queued there in one transaction: the accounts are locked in one statement,
//! each write is decided on its account's fold in arrival order exactly as if it had been
//! applied alone (a refusal leaves the fold as it was and stores nothing, a retry gets
//! its stored answer), then all entries and all idempotency records (each with its own
//! answer) are written and committed together.
//!
//! The task, not the caller, runs the transaction: a caller that gives up (a deadline, a
//! client gone) does not cancel a write already queued; it is applied, and a retry under
//! the same request id gets its answer.

use std::collections::hash_map::Entry as Slot;
use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use super::answer::{Answer, Idempotency, same_request};
use super::error::{AppError, AppResult};
use super::fingerprint::Fingerprint;
use super::hours::{Balance, HoursContext, LedgerWrite};
use super::{App, Reader};
use crate::domain::ledger::{BucketName, Command, Entry, Ledger, TicketRef};
use crate::domain::names::ResourceId;
use crate::store::{AccountEntries, Claim, GroupStart, IdempotencyKey, Store, StoreTx};

/// Most writes decided in one transaction: bounds the statement sizes (entries and
/// idempotency records are written with one statement each).
const MAX_GROUP: usize = 128;

/// Lanes, each with at most one transaction in flight. More lanes overlap more commits;
/// fewer make bigger groups. Four measured best on two cores with 16 clients
/// (docs/performance.md).
const LANES: u64 = 4;

/// Decides a write's command on the locked account's fold.
pub type Decide =
    Box<dyn FnOnce(&HoursContext, &Ledger, Option<TicketRef>) -> AppResult<Command> + Send>;

/// Renders a write's answer as stored under its request id.
pub type Render = Box<dyn Fn(&LedgerWrite) -> Vec<u8> + Send>;

type Account = (ResourceId, BucketName);

/// A write waiting for its lane's turn.
pub struct Queued {
    account: Account,
    id: Idempotency,
    fingerprint: Fingerprint,
    ticket: Option<TicketRef>,
    command: Decide,
    /// The answer as stored under the request id.
    render: Render,
    reply: oneshot::Sender<AppResult<Vec<u8>>>,
}

/// The queues of lanes that have a writer task: a lane is present while its task runs,
/// so a write either joins the queue or starts the task.
#[derive(Default)]
pub struct AccountQueues {
    lanes: Mutex<HashMap<u64, VecDeque<Queued>>>,
}

/// The account's lane: the same in every call (a fixed hash), so an account's writes are
/// decided in arrival order.
fn lane_of(account: &Account) -> u64 {
    let mut h = DefaultHasher::new();
    account.hash(&mut h);
    h.finish() % LANES
}

impl<S: Store> App<S> {
    /// Queues a write on its account's lane and waits for its answer.
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
        let account = (org.clone(), bucket.clone());
        let lane = lane_of(&account);
        let queued = Queued {
            account,
            id: id.clone(),
            fingerprint: fingerprint.clone(),
            ticket,
            command,
            render: Box::new(move |write| render(write).to_bytes()),
            reply,
        };
        self.metrics.hours_writes_waiting(1);
        let start = {
            let mut lanes = self
                .account_queues
                .lanes
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match lanes.entry(lane) {
                Slot::Occupied(mut queue) => {
                    queue.get_mut().push_back(queued);
                    false
                }
                Slot::Vacant(slot) => {
                    slot.insert(VecDeque::from([queued]));
                    true
                }
            }
        };
        if start {
            let app = Arc::clone(self);
            tokio::spawn(async move { app.lane_writer(lane).await });
        }
        let bytes = answer.await.map_err(|_| {
            AppError::Internal("the account's writer stopped before answering".into())
        })??;
        A::from_bytes(&bytes)
            .map_err(|e| AppError::Internal(format!("an answer cannot be read back: {e}")))
    }

    /// The lane's writer: decides groups of queued writes until the queue is empty.
    async fn lane_writer(self: Arc<Self>, lane: u64) {
        // Should this task end early (a panic), the lane must not stay marked as having a
        // writer: the guard removes it, and the writes still queued are answered with an
        // error when their reply ends are dropped.
        let guard = Leave {
            queues: &self.account_queues,
            lane,
        };
        loop {
            let group: Vec<Queued> = {
                let mut lanes = self
                    .account_queues
                    .lanes
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let Some(queue) = lanes.get_mut(&lane) else {
                    return;
                };
                if queue.is_empty() {
                    lanes.remove(&lane);
                    std::mem::forget(guard);
                    return;
                }
                let n = queue.len().min(MAX_GROUP);
                queue.drain(..n).collect()
            };
            self.decide_group(group).await;
        }
    }

    /// Decides a group, answering every write in it.
    async fn decide_group(&self, group: Vec<Queued>) {
        self.metrics.account_group(group.len());
        let n = i64::try_from(group.len()).unwrap_or(i64::MAX);
        let mut replies = Vec::with_capacity(group.len());
        let mut writes = Vec::with_capacity(group.len());
        for q in group {
            replies.push(q.reply);
            writes.push(Write {
                account: q.account,
                id: q.id,
                fingerprint: q.fingerprint,
                ticket: q.ticket,
                command: Some(q.command),
                render: q.render,
            });
        }
        match self.try_group(writes).await {
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

    /// One transaction for the group: claim every key, lock the accounts, decide each
    /// write in order on its account's fold (retries get their stored answers, refusals
    /// give their keys back), write all entries and answers, commit. `Err` when the
    /// transaction as a whole failed: then nothing was written.
    async fn try_group(&self, mut writes: Vec<Write>) -> AppResult<Vec<AppResult<Vec<u8>>>> {
        let mut tx = self.store.begin().await?;
        let mut claims: Vec<(IdempotencyKey, String)> = Vec::with_capacity(writes.len());
        for w in &writes {
            if !claims.iter().any(|(k, _)| *k == w.id.key) {
                claims.push((w.id.key.clone(), w.fingerprint.to_json()));
            }
        }
        let mut accounts: Vec<Account> = Vec::new();
        for w in &writes {
            if !accounts.contains(&w.account) {
                accounts.push(w.account.clone());
            }
        }
        let locks: Vec<(ResourceId, String)> = accounts
            .iter()
            .map(|(org, bucket)| (org.clone(), bucket.as_str().to_string()))
            .collect();
        let GroupStart {
            claimed,
            answered: earlier,
            next_seqs,
            epoch,
        } = tx.open_group(&claims, &locks).await?;
        // Answered before (or in this group, further down): fingerprint and answer.
        let mut answered: HashMap<IdempotencyKey, (String, Vec<u8>)> = HashMap::new();
        for (key, claim) in earlier {
            if let Claim::Seen {
                fingerprint,
                response,
            } = claim
            {
                answered.insert(key, (fingerprint, response));
            }
        }
        let mut reader = Reader::Tx(&mut tx);
        // Each account's fold, or why its writes cannot be decided (the organisation or
        // its contract is gone): retries still get their answers, as they would have from
        // their claim; the others are refused, and nothing of theirs is kept.
        let mut folds: HashMap<Account, AppResult<Fold>> = HashMap::with_capacity(accounts.len());
        for (account, next_seq) in accounts.iter().zip(next_seqs) {
            let (org, bucket) = account;
            let fold = match self.hours_context_at(&mut reader, org, epoch).await {
                Ok(ctx) => {
                    let ledger = self
                        .ledger(&mut reader, &ctx, epoch, org, bucket, next_seq)
                        .await?;
                    Ok(Fold {
                        ctx,
                        ledger,
                        entries: Vec::new(),
                    })
                }
                Err(e) => Err(e),
            };
            folds.insert(account.clone(), fold);
        }
        let mut outcomes = Vec::with_capacity(writes.len());
        let mut answers: Vec<(IdempotencyKey, String, Vec<u8>)> = Vec::new();
        for w in &mut writes {
            if let Some((stored, response)) = answered.get(&w.id.key) {
                outcomes
                    .push(same_request(&w.id, &w.fingerprint, stored).map(|()| response.clone()));
                continue;
            }
            let fold = match folds.get_mut(&w.account) {
                Some(Ok(fold)) => fold,
                Some(Err(e)) => {
                    outcomes.push(Err(e.clone()));
                    continue;
                }
                None => {
                    outcomes.push(Err(AppError::Internal(
                        "a ledger write's account was not locked".into(),
                    )));
                    continue;
                }
            };
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
            let decided = command(&fold.ctx, &fold.ledger, w.ticket.take())
                .and_then(|command| Ok(fold.ledger.decide(&command, now)?));
            let new = match decided {
                Ok(new) => new,
                Err(e) => {
                    outcomes.push(Err(e));
                    continue;
                }
            };
            fold.ledger.apply(new.clone())?;
            let period = match new.last() {
                Some(e) => e.period,
                None => fold.ledger.period_at(now)?,
            };
            let write = LedgerWrite {
                balance: Balance {
                    organization: w.account.0.clone(),
                    statement: fold.ledger.summary(period)?,
                    as_of: now,
                    zone: fold.ctx.organization.zone,
                },
                entries: new,
            };
            let bytes = (w.render)(&write);
            fold.entries.extend(write.entries);
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
        let appended: Vec<AccountEntries<'_>> = accounts
            .iter()
            .filter_map(|account| match folds.get(account) {
                Some(Ok(fold)) => Some(AccountEntries {
                    organization: &account.0,
                    bucket: account.1.as_str(),
                    entries: &fold.entries,
                }),
                _ => None,
            })
            .collect();
        tx.close_group(&appended, &refused, &answers).await?;
        // Back into the cache before the commit releases the accounts' locks, so the next
        // writer finds them. Should the commit fail, a cached fold is ahead of the stored
        // entries, and the next writer sees that from the account's number and refolds.
        let mut posted: Vec<(BucketName, Vec<Entry>)> = Vec::new();
        for (account, fold) in folds {
            if let Ok(fold) = fold {
                self.keep_ledger(&account.0, epoch, fold.ledger);
                posted.push((account.1, fold.entries));
            }
        }
        // Not `App::commit`: a ledger write records no alert and moves no ticket's next
        // change, so the runner and the alert readers are not woken for it.
        tx.commit().await?;
        for (bucket, entries) in posted {
            self.metrics.ledger_entries(bucket.as_str(), &entries);
        }
        Ok(outcomes)
    }
}

/// An account's state while its group is decided.
struct Fold {
    ctx: Arc<HoursContext>,
    ledger: Ledger,
    /// What the group appends to it.
    entries: Vec<Entry>,
}

/// A write being decided.
struct Write {
    account: Account,
    id: Idempotency,
    fingerprint: Fingerprint,
    ticket: Option<TicketRef>,
    /// Taken when decided.
    command: Option<Decide>,
    render: Render,
}

/// Removes the lane's queue if its writer task ends without emptying it.
struct Leave<'a> {
    queues: &'a AccountQueues,
    lane: u64,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.queues
            .lanes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.lane);
    }
}
