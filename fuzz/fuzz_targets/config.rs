//! Fuzzes the YAML config reader: any text yields a config or an error.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = dvr_common::Config::from_yaml_str(text, "fuzz.yaml");
    }
});
