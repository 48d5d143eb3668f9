//! Idempotent writes (AIP-155): a write claims its request's key in its transaction, and
//! stores its answer there before committing; a retry with the same key and the same
//! meaning gets that answer back and does nothing else, and the same key with another
//! meaning is ALREADY_EXISTS naming the fields that differ.
//!
//! The stored answer is the response message the transports return, in its protobuf
//! encoding: gRPC returns it as is and Connect renders the same message as JSON, so a
//! request retried over another transport gets the very answer of the first call. The
//! use cases here never see its type: a transport gives each write the [`Answer`] to
//! store, rendered from the use case's domain result. The release before this layer
//! stored the same bytes, so its answers are still returned.

use super::App;
use super::error::{AppError, AppResult, ErrorReason};
use super::fingerprint::Fingerprint;
use crate::store::{Claim, IdempotencyKey, Store, StoreTx};

/// What a write answers, as stored under its request id.
pub trait Answer: Sized {
    fn to_bytes(&self) -> Vec<u8>;
    fn from_bytes(bytes: &[u8]) -> Result<Self, String>;
}

/// A write request's idempotency: its key, and the fingerprint the first release stored
/// for such a request, as the transport computes it (`None` where it has none).
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub key: IdempotencyKey,
    pub legacy: Option<Fingerprint>,
}

impl Idempotency {
    pub fn new(key: IdempotencyKey) -> Self {
        Idempotency { key, legacy: None }
    }
}

impl<S: Store> App<S> {
    /// Claims a request's key with the fingerprint of its meaning: `Some(answer)` when
    /// the same request was answered before, REQUEST_ID_REUSED when the key was used for
    /// a different one.
    pub async fn claim<A: Answer>(
        &self,
        tx: &mut S::Tx,
        id: &Idempotency,
        fingerprint: &Fingerprint,
    ) -> AppResult<Option<A>> {
        match tx.claim(&id.key, &fingerprint.to_json()).await? {
            Claim::Fresh => Ok(None),
            Claim::Seen {
                fingerprint: stored,
                response,
            } => seen(id, fingerprint, &stored, &response).map(Some),
        }
    }

    /// The answer of a request already answered, read without claiming its key: for use
    /// cases that check things outside their write transaction (references, a ticket),
    /// so that a retry gets its answer even when those changed since, like any other.
    /// `None` means carry on (and claim in the write, which settles any race).
    pub async fn replay<A: Answer>(
        &self,
        id: &Idempotency,
        fingerprint: &Fingerprint,
    ) -> AppResult<Option<A>> {
        match self.store.answered(&id.key).await? {
            Some(Claim::Seen {
                fingerprint: stored,
                response,
            }) => seen(id, fingerprint, &stored, &response).map(Some),
            _ => Ok(None),
        }
    }

    /// Stores the answer of a claimed key, in the transaction.
    pub async fn complete<A: Answer>(
        &self,
        tx: &mut S::Tx,
        key: &IdempotencyKey,
        answer: &A,
    ) -> AppResult<()> {
        tx.complete(key, &answer.to_bytes()).await?;
        Ok(())
    }

    /// Stores the answer of a claimed key and commits.
    pub async fn finish<A: Answer>(
        &self,
        mut tx: S::Tx,
        key: &IdempotencyKey,
        answer: &A,
    ) -> AppResult<()> {
        self.complete(&mut tx, key, answer).await?;
        self.commit(tx).await
    }

    /// Commits a transaction whose idempotency records are complete, and wakes what
    /// waits for alerts and due instants.
    pub async fn commit(&self, tx: S::Tx) -> AppResult<()> {
        tx.commit().await?;
        self.alerts_written.notify_waiters();
        Ok(())
    }
}

/// A request seen before under its key: its stored answer when it is the same request,
/// REQUEST_ID_REUSED naming the fields that differ when it is not.
fn seen<A: Answer>(
    id: &Idempotency,
    fingerprint: &Fingerprint,
    stored: &str,
    response: &[u8],
) -> AppResult<A> {
    same_request(id, fingerprint, stored)?;
    A::from_bytes(response)
        .map_err(|e| AppError::Internal(format!("stored idempotent answer cannot be read: {e}")))
}

/// Whether the request stored under `id`'s key with fingerprint `stored` is this one:
/// REQUEST_ID_REUSED naming the fields that differ when it is not.
pub(super) fn same_request(
    id: &Idempotency,
    fingerprint: &Fingerprint,
    stored: &str,
) -> AppResult<()> {
    let key = &id.key;
    let stored = Fingerprint::from_json(stored);
    let differences = fingerprint.differences_from_stored(&stored, id.legacy.as_ref());
    if differences.is_empty() {
        return Ok(());
    }
    Err(AppError::reasoned(
        ErrorReason::RequestIdReused,
        format!(
            "request_id {:?} was already used for a different {} request: {} differ",
            key.request_id,
            key.method,
            differences.join(", ")
        ),
    )
    .with("request_id", key.request_id.clone())
    .with("method", key.method.to_string())
    .with("differing_fields", differences.join(",")))
}
