//! forecast-service: wraps RTE's Ecowatt API and serves
//! `delestage.forecast.v1.ForecastService`.

pub mod ecowatt;
pub mod forecast;
pub mod level;
pub mod timeline;
