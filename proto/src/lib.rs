//! delestage's gRPC contracts and the Rust code generated from them.
//!
//! The `.proto` files under `proto/delestage/` are the source of truth; this
//! crate only compiles them (see `build.rs`), and defines, in
//! [`vocabulary`], the domain words (levels, reasons, wirings, fallbacks)
//! with their names and their conversions to and from these contracts. Each package is versioned
//! (`delestage.relay.v1`, ...) so that a `v2` can live beside `v1` when a
//! contract has to break.

pub mod codec;

/// `delestage.relay.v1`: the relay board.
pub mod relay {
    pub mod v1 {
        tonic::include_proto!("delestage.relay.v1");
    }
}

/// `delestage.forecast.v1`: the Ecowatt forecast.
pub mod forecast {
    pub mod v1 {
        tonic::include_proto!("delestage.forecast.v1");

        /// The `google.rpc.ErrorInfo` domain of the forecast-service's own
        /// errors (in the status details).
        pub const ERROR_DOMAIN: &str = "forecast.delestage";

        /// The `ErrorInfo` reason of an UNAVAILABLE that comes from the
        /// forecast-service itself: it is up, but has no forecast yet (its
        /// first fetch has not succeeded). A transport failure, also
        /// UNAVAILABLE, carries no such detail.
        pub const NO_FORECAST_YET: &str = "NO_FORECAST_YET";

        /// The `ErrorInfo` reason of the UNAVAILABLE every Tempo call gets
        /// from a forecast-service started with `--tempo off`: it will not
        /// change until that service is restarted otherwise.
        pub const TEMPO_NOT_ENABLED: &str = "TEMPO_NOT_ENABLED";

        /// Whether `status` is the forecast-service's own answer with
        /// `reason` (a transport failure, also UNAVAILABLE, carries no
        /// reason). Services decide on this, never on a message's text.
        pub fn has_reason(status: &tonic::Status, reason: &str) -> bool {
            use tonic_types::StatusExt;
            status
                .get_error_details()
                .error_info()
                .is_some_and(|info| info.reason == reason && info.domain == ERROR_DOMAIN)
        }
    }
}

/// `delestage.meter.v1`: the Linky meter, read on the relay box.
pub mod meter {
    pub mod v1 {
        tonic::include_proto!("delestage.meter.v1");
    }
}

/// `delestage.controller.v1`: plan, overrides and history.
pub mod controller {
    pub mod v1 {
        tonic::include_proto!("delestage.controller.v1");
    }
}

pub mod json;
pub mod time;
pub mod vocabulary;

/// The encoded `FileDescriptorSet` of every delestage contract, for the gRPC
/// reflection service (so grpcurl works with no .proto at hand).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/delestage_descriptor.bin"));
