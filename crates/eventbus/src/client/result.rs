//! [`Client::result`]: the reply to a durable request, fetched by the
//! request's message id — after the requester reconnected, or from another
//! process of the same identity, or after the broker restarted.
//!
//! The broker keeps the reply to every request that went through a durable
//! queue group (`queue.durable`) for `durability.result_ttl_ms`, journaled, so
//! it survives a crash; a request still queued or in flight is answered when
//! its reply comes, within the wait the caller gives.

use std::time::Duration;

use super::error::Refused;
use super::{Answer, CallFailure, Client, Message};
use crate::proto::{self, ErrorCode, frame::Kind};

/// The longest wait one [`Client::result`] call may ask the broker for (the
/// wire field is milliseconds in a `u32`: about 49 days).
pub const MAX_RESULT_WAIT: Duration = Duration::from_millis(u32::MAX as u64);

/// Why [`Client::result`] returned no reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResultError {
    /// The connection is closed.
    #[error("connection closed")]
    Closed,
    /// The broker knows no durable request with this id: never one, not
    /// through a durable queue, or its reply was never kept (the request was
    /// dead-lettered or cancelled).
    #[error("no durable request {message_id} is known to the broker")]
    UnknownMessage {
        /// The request's message id.
        message_id: u64,
    },
    /// The reply was kept and has expired (`durability.result_ttl_ms`) or was
    /// evicted by the bound on kept results.
    #[error("the result of request {message_id} has expired")]
    Expired {
        /// The request's message id.
        message_id: u64,
    },
    /// The request belongs to another client id, and this client is not an
    /// admin.
    #[error("request {message_id} is not this client's")]
    NotRequester {
        /// The request's message id.
        message_id: u64,
    },
    /// The request was cancelled while this call waited for its reply.
    #[error("request {message_id} was cancelled")]
    Cancelled {
        /// The request's message id.
        message_id: u64,
    },
    /// The request was dead-lettered while this call waited for its reply.
    #[error("request {message_id} was dead-lettered: {reason}")]
    DeadLettered {
        /// The request's message id.
        message_id: u64,
        /// Why, as the broker recorded it.
        reason: String,
    },
    /// The request is still waiting or in flight and no reply came within
    /// the wait.
    #[error("no reply to request {message_id} within {waited:?}")]
    Timeout {
        /// The request's message id.
        message_id: u64,
        /// How long was waited.
        waited: Duration,
    },
    /// This client already waits for as many replies as its quota allows
    /// (`limits.max_pending_requests`).
    #[error("quota of {limit} pending requests reached")]
    QuotaExceeded {
        /// The quota.
        limit: usize,
    },
    /// Any other refusal (a reply too large for this connection's frame
    /// limit, for one).
    #[error(transparent)]
    Refused(Refused),
}

/// The `ResultRequest` (under `seq`) for the reply to durable request
/// `message_id`, waiting up to `wait` (cut to [`MAX_RESULT_WAIT`]) for one
/// still to come. [`Client::result`] and a resumed
/// [`PendingRequest`](super::PendingRequest) both ask with it.
pub(super) fn result_request(seq: u64, message_id: u64, wait: Duration) -> Kind {
    let wait = wait.min(MAX_RESULT_WAIT);
    Kind::ResultRequest(proto::ResultRequest {
        seq,
        message_id,
        timeout_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
    })
}

impl Client {
    /// The reply to durable request `message_id` (the id
    /// [`PendingRequest::message_id`](super::PendingRequest::message_id) or
    /// a confirmed publish returned): at once when the broker keeps it, else
    /// as soon as it arrives if it comes within `wait` (zero: only a reply
    /// already there). Only the request's own client id (or an admin) may
    /// fetch it. A `wait` above [`MAX_RESULT_WAIT`] is cut to it. A request
    /// cancelled or dead-lettered while the call waits ends it with
    /// [`ResultError::Cancelled`] or [`ResultError::DeadLettered`]; one that
    /// ended so before is [`ResultError::UnknownMessage`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future forgets the answer; the broker still
    /// keeps the reply for later calls.
    ///
    /// ```no_run
    /// # async fn demo(client: eventbus::Client, id: u64) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// let reply = client.result(id, Duration::from_secs(5)).await?;
    /// println!("{} answered: {:?}", reply.source(), reply.payload());
    /// # Ok(()) }
    /// ```
    pub async fn result(&self, message_id: u64, wait: Duration) -> Result<Message, ResultError> {
        let wait = wait.min(MAX_RESULT_WAIT);
        // The broker answers `Timeout` when the wait is over; the local
        // deadline only covers a broker that does not answer at all.
        let local = wait.saturating_add(self.inner().options.request_timeout);
        let answer = self
            .call(local, |seq| result_request(seq, message_id, wait))
            .await;
        match answer {
            Ok(Answer::Reply(message)) => Ok(message),
            Ok(Answer::Error(e)) => {
                let r = Refused::from(e);
                Err(match r.code {
                    ErrorCode::UnknownMessage => ResultError::UnknownMessage { message_id },
                    ErrorCode::Expired => ResultError::Expired { message_id },
                    ErrorCode::PermissionDenied => ResultError::NotRequester { message_id },
                    ErrorCode::Cancelled => ResultError::Cancelled { message_id },
                    ErrorCode::DeadLettered => ResultError::DeadLettered {
                        message_id,
                        reason: r.detail("reason"),
                    },
                    ErrorCode::Timeout => ResultError::Timeout {
                        message_id,
                        waited: wait,
                    },
                    ErrorCode::QuotaExceeded => ResultError::QuotaExceeded {
                        limit: r.detail_usize("limit"),
                    },
                    _ => ResultError::Refused(r),
                })
            }
            Ok(_) | Err(CallFailure::Closed) => Err(ResultError::Closed),
            Err(CallFailure::Timeout(waited)) => Err(ResultError::Timeout { message_id, waited }),
        }
    }
}
