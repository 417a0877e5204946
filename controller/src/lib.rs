//! controller: turns the Ecowatt forecast and a list of loads into a plan,
//! and makes the relays agree with it.

pub mod model;
pub mod policy;
