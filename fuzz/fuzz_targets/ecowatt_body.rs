//! Any bytes as an Ecowatt body: parse, rebase and lay out on the timeline
//! must return, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(signals) = delestage_forecast_service::ecowatt::parse(body) {
        let today = jiff::civil::date(2026, 11, 26);
        let forecast = delestage_forecast_service::forecast::Forecast::from_signals(&signals.rebased(today));
        for hour in &forecast.hours {
            assert!(hour.start < hour.end);
        }
    }
});
