//! The JSON files dfl reads back from a workspace: a model's `config.json` and `state.json`, a
//! sort's journal batches. Any bytes parse or give an error; a config that parses is checked,
//! and one that passes the check compares with another without trouble.
#![no_main]

use dfl::faceset::journal::Batch;
use dfl::model::folder::config::compare;
use dfl::model::folder::{TrainConfig, TrainState};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cfg) = serde_json::from_slice::<TrainConfig>(data)
        && cfg.validate().is_ok()
    {
        let _ = compare(&cfg, &TrainConfig::default());
        let _ = cfg.effective();
    }
    let _ = serde_json::from_slice::<TrainState>(data);
    let _ = serde_json::from_slice::<Batch>(data);
});
