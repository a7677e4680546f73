//! Weight names are the checkpoint format: each archi's sorted names and shapes (default dims,
//! 128 px) must equal `tests/data/golden/<archi>.keys.txt`. Renaming a field means updating
//! those files on purpose: `DFL_BLESS=1 cargo test --test model_keys` rewrites them.

use std::path::PathBuf;

use dfl::model::arch::ModelConfig;
use dfl::model::checkpoint::key_list;
use dfl::model::saehd::Saehd;
use tch::{Device, nn};

const ARCHIS: [&str; 14] = [
    "df", "df-u", "df-d", "df-ud", "df-t", "df-dt", "df-udt", "liae", "liae-u", "liae-d",
    "liae-ud", "liae-t", "liae-dt", "liae-udt",
];

#[test]
fn weight_names_and_shapes_match_the_golden_lists() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden");
    let bless = std::env::var_os("DFL_BLESS").is_some();
    let mut differing = Vec::new();
    for arch in ARCHIS {
        let cfg = ModelConfig { arch: arch.parse().unwrap(), ..Default::default() };
        let vs = nn::VarStore::new(Device::Cpu);
        let _model = tch::no_grad(|| Saehd::new(&vs.root(), &cfg));
        let keys = key_list(&vs);
        let path = dir.join(format!("{arch}.keys.txt"));
        if bless {
            std::fs::write(&path, &keys).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(keys.as_str()) {
            differing.push(path.display().to_string());
        }
    }
    assert!(
        differing.is_empty(),
        "weight names changed (rerun with DFL_BLESS=1 if on purpose): {differing:?}"
    );
}
