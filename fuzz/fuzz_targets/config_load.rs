//! `Config::from_yaml` never panics on arbitrary text, with and without `$VAR` expansion.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use walship::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Config::from_yaml(text, Path::new("fuzz.yml"), false);
    let _ = Config::from_yaml(text, Path::new("fuzz.yml"), true);
});
