//! Protobuf's `Timestamp` and jiff's, converted in one place.

use jiff::Timestamp;

/// A jiff time as a protobuf one.
pub fn to_pb(t: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.as_second(),
        nanos: t.subsec_nanosecond(),
    }
}

/// A protobuf time as a jiff one; `None` when it is out of jiff's range
/// (years -9999..=9999) or its nanoseconds are not.
pub fn from_pb(t: &prost_types::Timestamp) -> Option<Timestamp> {
    Timestamp::new(t.seconds, t.nanos).ok()
}

/// [`from_pb`], with jiff's reason when it fails.
pub fn try_from_pb(t: &prost_types::Timestamp) -> Result<Timestamp, jiff::Error> {
    Timestamp::new(t.seconds, t.nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_goes_there_and_back() {
        let t: Timestamp = "2026-12-08T17:00:00.123456789Z".parse().expect("ts");
        assert_eq!(from_pb(&to_pb(t)), Some(t));
        let far = prost_types::Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        };
        assert_eq!(from_pb(&far), None);
        assert!(try_from_pb(&far).is_err());
    }
}
