//! Any text as a controller config: settings or an error naming the file,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let path = std::path::Path::new("fuzz.toml");
    if let Err(e) = delestage_controller::config::Settings::from_toml(text, path, &[]) {
        assert!(e.to_string().contains("fuzz.toml"));
    }
});
