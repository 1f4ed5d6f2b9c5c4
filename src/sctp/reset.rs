//! Stream reset (RFC 6525): the request sequence numbers of both sides,
//! our outstanding Outgoing SSN Reset Request, and the answers to the
//! peer's. The association applies what these decide to its streams.

use super::param::ReConfigParam;

/// Our outstanding Outgoing SSN Reset Request (RFC 6525 §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetRequest {
    /// Its Re-configuration Request Sequence Number.
    pub seq: u32,
    /// The streams to reset (empty: all).
    pub streams: Vec<u16>,
    /// The last TSN we assigned before it: the peer resets once it has
    /// every TSN up to this one.
    pub last_tsn: u32,
}

/// What the peer's answer to our request means (RFC 6525 §5.2.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseOutcome {
    /// Not an answer to our outstanding request.
    Ignored,
    /// "In progress": ask again when the timer fires.
    InProgress,
    /// Answered with `result`: the request is done.
    Done {
        /// The request answered.
        request: ResetRequest,
        /// Its result (`ReConfigParam::RESULT_*`).
        result: u32,
    },
}

/// RFC 6525's state of one association.
#[derive(Debug, Clone, Default)]
pub struct StreamReset {
    /// Our streams waiting for a request (a request is outstanding, or
    /// data queued on them still waits for its TSNs).
    queue: Vec<u16>,
    outstanding: Option<ResetRequest>,
    /// Our next request sequence number.
    next_seq: u32,
    /// The peer's next request sequence number.
    peer_seq: u32,
    /// The peer's last request and our result, answered again if it comes again.
    last_response: Option<(u32, u32)>,
    /// A peer's request waiting for TSNs up to its last TSN: (request
    /// sequence number, last TSN, streams).
    deferred: Option<(u32, u32, Vec<u16>)>,
}

impl StreamReset {
    /// RFC 6525 §4.1: our request sequence numbers start at our initial TSN.
    pub fn start_local(&mut self, initial_tsn: u32) {
        self.next_seq = initial_tsn;
    }

    /// The peer's request sequence numbers start at its initial TSN.
    pub fn start_peer(&mut self, peer_initial_tsn: u32) {
        self.peer_seq = peer_initial_tsn;
    }

    /// Queues one of our outgoing streams for reset.
    pub fn queue(&mut self, stream: u16) {
        self.queue.push(stream);
    }

    /// Our streams waiting for a request.
    pub fn queued(&self) -> &[u16] {
        &self.queue
    }

    /// Whether a request of ours waits for its answer.
    pub fn is_outstanding(&self) -> bool {
        self.outstanding.is_some()
    }

    /// Makes the queued streams one request, after the TSN `last_tsn`
    /// (RFC 6525 §5.1.2: only one request outstanding at a time).
    pub fn begin_request(&mut self, last_tsn: u32) {
        if self.outstanding.is_some() || self.queue.is_empty() {
            return;
        }
        let streams = std::mem::take(&mut self.queue);
        self.outstanding = Some(ResetRequest {
            seq: self.next_seq,
            streams,
            last_tsn,
        });
    }

    /// The parameter carrying our outstanding request, sent (again) in a
    /// RE-CONFIG chunk. Its response sequence number is the peer's last
    /// request (RFC 6525 §4.1).
    pub fn request_param(&self) -> Option<ReConfigParam> {
        let r = self.outstanding.as_ref()?;
        Some(ReConfigParam::OutgoingResetRequest {
            request_seq: r.seq,
            response_seq: self.peer_seq.wrapping_sub(1),
            last_tsn: r.last_tsn,
            streams: r.streams.clone(),
        })
    }

    /// RFC 6525 §5.2.2: the peer's Outgoing SSN Reset Request. `received`
    /// tells whether every TSN up to its last TSN arrived. Returns the
    /// result to answer with and, when the reset is to be performed now,
    /// the streams to reset (empty: all). A request not yet performable
    /// is kept ("in progress") for [`StreamReset::take_ready`]. A
    /// retransmitted request gets the same answer again (§5.2.1); an
    /// unexpected sequence number is answered "bad sequence number".
    pub fn on_outgoing_request(
        &mut self,
        request_seq: u32,
        last_tsn: u32,
        streams: Vec<u16>,
        received: bool,
    ) -> (u32, Option<Vec<u16>>) {
        let expected = self.peer_seq;
        if request_seq == expected {
            self.peer_seq = expected.wrapping_add(1);
            if received {
                self.last_response = Some((request_seq, ReConfigParam::RESULT_PERFORMED));
                (ReConfigParam::RESULT_PERFORMED, Some(streams))
            } else {
                self.deferred = Some((request_seq, last_tsn, streams));
                self.last_response = Some((request_seq, ReConfigParam::RESULT_IN_PROGRESS));
                (ReConfigParam::RESULT_IN_PROGRESS, None)
            }
        } else if request_seq == expected.wrapping_sub(1) {
            let result = match self.last_response {
                Some((s, r)) if s == request_seq => r,
                _ => ReConfigParam::RESULT_PERFORMED,
            };
            (result, None)
        } else {
            (ReConfigParam::RESULT_BAD_SEQ, None)
        }
    }

    /// RFC 6525 §5.2.3: the peer's Incoming SSN Reset Request (it asks us
    /// to reset our outgoing streams): whether it is the one expected (the
    /// caller then queues the streams and answers "performed").
    pub fn on_incoming_request(&mut self, request_seq: u32) -> bool {
        if request_seq != self.peer_seq {
            return false;
        }
        self.peer_seq = request_seq.wrapping_add(1);
        true
    }

    /// RFC 6525 §5.2.7: a Re-configuration Response.
    pub fn on_response(&mut self, response_seq: u32, result: u32) -> ResponseOutcome {
        if self
            .outstanding
            .as_ref()
            .is_none_or(|r| r.seq != response_seq)
        {
            return ResponseOutcome::Ignored;
        }
        if result == ReConfigParam::RESULT_IN_PROGRESS {
            return ResponseOutcome::InProgress;
        }
        let Some(request) = self.outstanding.take() else {
            return ResponseOutcome::Ignored;
        };
        self.next_seq = self.next_seq.wrapping_add(1);
        ResponseOutcome::Done { request, result }
    }

    /// The deferred peer request, once `received(last_tsn)` says every
    /// TSN up to its last TSN arrived: its sequence number and streams,
    /// answered "performed" from now on.
    pub fn take_ready(&mut self, received: impl Fn(u32) -> bool) -> Option<(u32, Vec<u16>)> {
        let &(seq, last_tsn, _) = self.deferred.as_ref()?;
        if !received(last_tsn) {
            return None;
        }
        let (_, _, streams) = self.deferred.take()?;
        self.last_response = Some((seq, ReConfigParam::RESULT_PERFORMED));
        Some((seq, streams))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERFORMED: u32 = ReConfigParam::RESULT_PERFORMED;
    const IN_PROGRESS: u32 = ReConfigParam::RESULT_IN_PROGRESS;
    const BAD_SEQ: u32 = ReConfigParam::RESULT_BAD_SEQ;

    #[test]
    fn one_request_at_a_time_numbered_from_the_initial_tsn() {
        let mut r = StreamReset::default();
        r.start_local(1000);
        r.start_peer(7);
        assert_eq!(r.request_param(), None);
        r.queue(1);
        r.queue(3);
        r.begin_request(1500);
        assert!(r.is_outstanding());
        assert!(r.queued().is_empty());
        assert_eq!(
            r.request_param(),
            Some(ReConfigParam::OutgoingResetRequest {
                request_seq: 1000,
                response_seq: 6,
                last_tsn: 1500,
                streams: vec![1, 3],
            })
        );
        // A second stream waits for the answer.
        r.queue(5);
        r.begin_request(1600);
        assert_eq!(r.queued(), &[5]);
        assert_eq!(r.on_response(999, PERFORMED), ResponseOutcome::Ignored);
        assert_eq!(
            r.on_response(1000, IN_PROGRESS),
            ResponseOutcome::InProgress
        );
        assert!(r.is_outstanding());
        assert_eq!(
            r.on_response(1000, PERFORMED),
            ResponseOutcome::Done {
                request: ResetRequest {
                    seq: 1000,
                    streams: vec![1, 3],
                    last_tsn: 1500,
                },
                result: PERFORMED,
            }
        );
        r.begin_request(1600);
        assert!(matches!(
            r.request_param(),
            Some(ReConfigParam::OutgoingResetRequest {
                request_seq: 1001,
                ..
            })
        ));
    }

    #[test]
    fn peer_requests_are_performed_in_sequence_and_repeated_answers_match() {
        // RFC 6525 §5.2.1, §5.2.2.
        let mut r = StreamReset::default();
        r.start_peer(u32::MAX);
        assert_eq!(r.on_outgoing_request(5, 0, vec![2], true), (BAD_SEQ, None));
        assert_eq!(
            r.on_outgoing_request(u32::MAX, 0, vec![2], true),
            (PERFORMED, Some(vec![2]))
        );
        // The same request again: the same answer, nothing performed twice.
        assert_eq!(
            r.on_outgoing_request(u32::MAX, 0, vec![2], true),
            (PERFORMED, None)
        );
        // The next one across the wrap.
        assert!(r.on_incoming_request(0));
        assert!(!r.on_incoming_request(0));
    }

    #[test]
    fn a_request_ahead_of_the_data_waits_for_its_last_tsn() {
        // RFC 6525 §5.2.2: "in progress" until every TSN up to last_tsn arrived.
        let mut r = StreamReset::default();
        r.start_peer(10);
        assert_eq!(
            r.on_outgoing_request(10, 500, vec![4], false),
            (IN_PROGRESS, None)
        );
        assert_eq!(
            r.on_outgoing_request(10, 500, vec![4], false),
            (IN_PROGRESS, None)
        );
        assert_eq!(r.take_ready(|t| t < 500), None);
        assert_eq!(r.take_ready(|t| t <= 500), Some((10, vec![4])));
        assert_eq!(r.take_ready(|_| true), None);
        // Asked again after it was performed: "performed".
        assert_eq!(
            r.on_outgoing_request(10, 500, vec![4], true),
            (PERFORMED, None)
        );
    }
}
