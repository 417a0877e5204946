//! Deadlines that survive a frozen peer.
//!
//! gRPC's own `grpc-timeout` is relative: it starts when the server reads
//! the request. A relay box that was frozen (SIGSTOP, a stalled SD card)
//! with requests queued in its socket would read them on waking and carry
//! out a switch the controller gave up on long ago, one that is in no
//! history. So the caller also sends the absolute deadline, in Unix
//! milliseconds, and the server refuses a request that arrives after it.
//!
//! This compares two machines' clocks: a relay box whose clock runs ahead
//! of the controller's by more than the call's time limit refuses every
//! switch (and says why). Keep the boxes on NTP.

use std::time::Duration;

use jiff::Timestamp;
use tonic::metadata::MetadataMap;

/// The metadata key of the absolute deadline (Unix milliseconds).
pub const HEADER: &str = "delestage-deadline-ms";

/// Gives `request` both deadlines: `grpc-timeout`, and [`HEADER`] at `now +
/// timeout`.
pub fn set<T>(request: &mut tonic::Request<T>, timeout: Duration, now: Timestamp) {
    request.set_timeout(timeout);
    let deadline = now
        .as_millisecond()
        .saturating_add(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX));
    if let Ok(value) = deadline.to_string().parse() {
        request.metadata_mut().insert(HEADER, value);
    }
}

/// `DEADLINE_EXCEEDED` if the caller's absolute deadline had passed at
/// `now`. A request without one (grpcurl, older controllers) always passes.
pub fn check(metadata: &MetadataMap, now: Timestamp) -> Result<(), tonic::Status> {
    let Some(deadline) = metadata
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
    else {
        return Ok(());
    };
    let late_ms = now.as_millisecond().saturating_sub(deadline);
    if late_ms > 0 {
        return Err(tonic::Status::deadline_exceeded(format!(
            "the caller gave up on this request {late_ms} ms ago (its deadline passed before it \
             was read; was this service frozen, or is its clock ahead?): not carried out"
        )));
    }
    Ok(())
}

/// [`check`] against this machine's clock now.
pub fn check_now(metadata: &MetadataMap) -> Result<(), tonic::Status> {
    check(metadata, Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_read_after_its_deadline_is_refused() {
        let sent = Timestamp::from_second(1_000_000).expect("valid");
        let mut request = tonic::Request::new(());
        set(&mut request, Duration::from_secs(5), sent);
        let in_time = sent + jiff::SignedDuration::from_secs(4);
        assert!(check(request.metadata(), in_time).is_ok());
        let late = sent + jiff::SignedDuration::from_secs(65);
        let status = check(request.metadata(), late).expect_err("late");
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        assert!(
            status.message().contains("60000 ms ago"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn a_request_without_a_deadline_passes() {
        let request = tonic::Request::new(());
        assert!(check(request.metadata(), Timestamp::now()).is_ok());
    }
}
