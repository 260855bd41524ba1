//! Replays the config fuzzer's corpus: any text it ever kept must yield a
//! config or an error, never a panic.

#[test]
fn config_corpus_replays_cleanly() {
    dvr_common::fuzz_corpus::replay("config", 1, |data| {
        if let Ok(text) = std::str::from_utf8(data) {
            let _ = dvr_common::Config::from_yaml_str(text, "fuzz.yaml");
        }
    });
}
