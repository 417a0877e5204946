//! The end-to-end tests: the real binaries as separate processes, talking
//! over gRPC as users and other services do. One test binary (fewer link
//! steps), one module per subject.

mod bad_days;
mod carried;
mod cli;
mod comfort;
mod controller_binary;
mod dashboard;
mod failsafe;
mod faults;
mod forecast_binary;
mod frozen;
mod home_assistant;
mod limits;
mod meter;
mod outages;
#[cfg(feature = "phidget")]
mod phidget;
mod relay_binary;
mod replicas;
mod security;
mod shutdown;
mod system;
mod tempo;
