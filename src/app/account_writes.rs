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
//! Most groups skip the reads: decided on the folds this process kept after its last
//! write to each account, they are written in one statement that keeps an account's part
//! only if the account, the catalogue and the request ids are as the decision saw them
//! (`Store::post_group`). What that statement leaves is decided again the long way, so
//! the answers are the same either way.
//!
//! The task, not the caller, runs the transaction: a caller that gives up (a deadline, a
//! client gone) does not cancel a write already queued; it is applied, and a retry under
//! the same request id gets its answer.

use std::collections::hash_map::Entry as Slot;
use std::collections::{HashMap, HashSet, VecDeque};
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
use crate::store::{
    AccountEntries, Claim, GroupStart, IdempotencyKey, PostedAccount, PostedWrite, Store, StoreTx,
};

/// Most writes decided in one transaction: bounds the statement sizes (entries and
/// idempotency records are written with one statement each).
const MAX_GROUP: usize = 128;

/// Lanes, each with at most one transaction in flight. More lanes overlap more commits;
/// fewer make bigger groups. Four measured best on two cores with 16 clients
/// (docs/performance.md).
const LANES: u64 = 4;

/// Decides a write's command on the locked account's fold.
pub type Decide =
    Box<dyn Fn(&HoursContext, &Ledger, Option<TicketRef>) -> AppResult<Command> + Send + Sync>;

/// Renders a write's answer as stored under its request id.
pub type Render = Box<dyn Fn(&LedgerWrite) -> Vec<u8> + Send + Sync>;

type Account = (ResourceId, BucketName);

/// A write's answer as stored under its request id, or why it was refused.
type Outcome = AppResult<Vec<u8>>;

/// An answer to keep: the key, the request's fingerprint, the answer.
type KeptAnswer = (IdempotencyKey, String, Vec<u8>);

/// A write waiting for its lane's turn.
pub struct Queued {
    write: Write,
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
            write: Write {
                account,
                id: id.clone(),
                fingerprint: fingerprint.clone(),
                ticket,
                command,
                render: Box::new(move |write| render(write).to_bytes()),
            },
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

    /// Decides a group, answering every write in it: first on the folds this process
    /// kept, written in one statement if none of them moved; what that leaves undecided
    /// (an account written by another process, a request id seen before, nothing kept)
    /// in a locked transaction.
    async fn decide_group(&self, group: Vec<Queued>) {
        self.metrics.account_group(group.len());
        let n = i64::try_from(group.len()).unwrap_or(i64::MAX);
        let mut replies = Vec::with_capacity(group.len());
        let mut writes = Vec::with_capacity(group.len());
        for q in group {
            replies.push(q.reply);
            writes.push(q.write);
        }
        let mut outcomes = self.try_posted(&writes).await;
        let rest: Vec<&Write> = writes
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| o.is_none())
            .map(|(w, _)| w)
            .collect();
        self.metrics
            .ledger_writes_decided("kept", writes.len() - rest.len());
        self.metrics.ledger_writes_decided("locked", rest.len());
        if !rest.is_empty() {
            let mut locked: Vec<Outcome> = match self.try_group(&rest).await {
                Ok(outcomes) => outcomes,
                Err(e) => vec![Err(e); rest.len()],
            };
            locked.reverse();
            for outcome in outcomes.iter_mut().filter(|o| o.is_none()) {
                *outcome = locked.pop();
            }
        }
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            let _ = reply.send(outcome.unwrap_or_else(|| {
                Err(AppError::Internal(
                    "a ledger write was left undecided".into(),
                ))
            }));
        }
        self.metrics.hours_writes_waiting(-n);
    }

    /// The group decided on the contexts and folds this process kept, with no read, and
    /// written in one round trip (`Store::post_group`) for each account nothing moved on.
    /// A write of an account that moved (or of a group that cannot go this way: a request
    /// id twice, a fold not kept, the statement failing) comes back `None`, undecided: its
    /// fold is dropped and the locked way decides it again from the database.
    async fn try_posted(&self, writes: &[Write]) -> Vec<Option<Outcome>> {
        let undecided = || writes.iter().map(|_| None).collect();
        let mut keys = HashSet::with_capacity(writes.len());
        if !writes.iter().all(|w| keys.insert(&w.id.key)) {
            return undecided();
        }
        let accounts = accounts_of(writes.iter());
        let Some((epoch, kept)) = self.take_kept(&accounts) else {
            return undecided();
        };
        let mut decided_at = Vec::with_capacity(accounts.len());
        let mut folds: HashMap<Account, AppResult<Fold>> = HashMap::with_capacity(accounts.len());
        for (account, (ctx, ledger)) in accounts.iter().zip(kept) {
            decided_at.push(ledger.next_seq());
            folds.insert(
                account.clone(),
                Ok(Fold {
                    ctx,
                    ledger,
                    entries: Vec::new(),
                }),
            );
        }
        let refs: Vec<&Write> = writes.iter().collect();
        // Each answered write's fingerprint (as stored) and answer, from the deciding.
        let mut answered = HashMap::with_capacity(writes.len());
        let Ok((outcomes, _)) = self.decide_in_order(&refs, &mut folds, &mut answered, None) else {
            return undecided();
        };
        let mut parts = Vec::with_capacity(accounts.len());
        for (account, at) in accounts.iter().zip(&decided_at) {
            let Some(Ok(fold)) = folds.get(account) else {
                return undecided();
            };
            parts.push(PostedAccount {
                organization: &account.0,
                bucket: account.1.as_str(),
                decided_at: *at,
                entries: &fold.entries,
                writes: writes
                    .iter()
                    .filter(|w| w.account == *account)
                    .map(|w| {
                        let (fingerprint, answer) = match answered.remove(&w.id.key) {
                            Some((fingerprint, answer)) => (fingerprint, Some(answer)),
                            None => (w.fingerprint.to_json(), None),
                        };
                        PostedWrite {
                            key: &w.id.key,
                            fingerprint,
                            answer,
                        }
                    })
                    .collect(),
            });
        }
        let posted = match self.store.post_group(epoch, &parts).await {
            Ok(posted) => posted,
            Err(e) => {
                tracing::debug!(error = %e, "a posted group failed; deciding it locked");
                vec![false; accounts.len()]
            }
        };
        drop(parts);
        let mut done: HashSet<&Account> = HashSet::new();
        for (account, posted) in accounts.iter().zip(posted) {
            let Some(Ok(fold)) = folds.remove(account) else {
                continue;
            };
            if posted {
                self.metrics
                    .ledger_entries(account.1.as_str(), &fold.entries);
                self.keep_ledger(&account.0, epoch, fold.ledger);
                done.insert(account);
            } else {
                self.set_contended(account, true);
            }
        }
        writes
            .iter()
            .zip(outcomes)
            .map(|(w, outcome)| done.contains(&w.account).then_some(outcome))
            .collect()
    }

    /// One transaction for the group: claim every key, lock the accounts, decide each
    /// write in order on its account's fold (retries get their stored answers, refusals
    /// give their keys back), write all entries and answers, commit. `Err` when the
    /// transaction as a whole failed: then nothing was written.
    async fn try_group(&self, writes: &[&Write]) -> AppResult<Vec<Outcome>> {
        let mut tx = self.store.begin().await?;
        let mut claims: Vec<(IdempotencyKey, String)> = Vec::with_capacity(writes.len());
        for w in writes {
            if !claims.iter().any(|(k, _)| *k == w.id.key) {
                claims.push((w.id.key.clone(), w.fingerprint.to_json()));
            }
        }
        let accounts = accounts_of(writes.iter().copied());
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
                    if self.kept_is_current(org, bucket, epoch, next_seq) {
                        self.set_contended(account, false);
                    }
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
        let (outcomes, answers) =
            self.decide_in_order(writes, &mut folds, &mut answered, Some(claimed.as_slice()))?;
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

    /// Decides `writes` in arrival order, each on its account's fold, exactly as if
    /// applied one at a time: a write whose key is in `answered` (before, or earlier in
    /// the group) gets that answer; a refusal leaves the fold as it was. `claimed`, when
    /// given, are the keys this transaction holds: a key neither claimed nor answered
    /// belongs to a write that left no answer. Returns each write's outcome and the
    /// answers to keep (key, fingerprint, answer); `Err` when a fold could not take an
    /// entry it decided (then nothing of the group may be written).
    fn decide_in_order(
        &self,
        writes: &[&Write],
        folds: &mut HashMap<Account, AppResult<Fold>>,
        answered: &mut HashMap<IdempotencyKey, (String, Vec<u8>)>,
        claimed: Option<&[IdempotencyKey]>,
    ) -> AppResult<(Vec<Outcome>, Vec<KeptAnswer>)> {
        let mut outcomes = Vec::with_capacity(writes.len());
        let mut answers: Vec<KeptAnswer> = Vec::new();
        for w in writes {
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
            if claimed.is_some_and(|claimed| !claimed.contains(&w.id.key)) {
                outcomes.push(Err(AppError::Internal(format!(
                    "request_id {:?} was claimed by a write that left no answer",
                    w.id.key.request_id
                ))));
                continue;
            }
            let now = self.now();
            let decided = (w.command)(&fold.ctx, &fold.ledger, w.ticket.clone())
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
        Ok((outcomes, answers))
    }
}

/// The distinct accounts of `writes`, in order of first appearance.
fn accounts_of<'a>(writes: impl Iterator<Item = &'a Write>) -> Vec<Account> {
    let mut accounts: Vec<Account> = Vec::new();
    for w in writes {
        if !accounts.contains(&w.account) {
            accounts.push(w.account.clone());
        }
    }
    accounts
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
    /// Decided again when the group is: once on the kept fold, once more on the locked
    /// one if the kept one had moved.
    command: Decide,
    /// The answer as stored under the request id.
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
