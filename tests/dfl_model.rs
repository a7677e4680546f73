//! `dfl model import-dfl` / `export-dfl` against tiny DeepFaceLab model folders written by
//! `scripts/golden/dfl_models.py` (tests/fixtures/dfl/models/<archi>/, see its README): the
//! imported network reproduces the reference's merge outputs, an export gives back every array
//! bit for bit, and the binary refuses what it must with one line naming the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dfl::dfl_format::pickle::{self, Value};
use dfl::interop::{export_dfl_model, import_dfl_model};
use dfl::model::checkpoint::copy_named;
use dfl::model::folder::{ModelFolder, WEIGHTS_FILE};
use dfl::model::saehd::Saehd;
use tch::{Device, Tensor, nn};

mod common;
use common::{copy_dir, dfl, extracted_workspace, stderr};

/// The archis with a fixture folder.
const VARIANTS: [&str; 4] = ["df", "liae", "liae-ud", "df-ud"];
/// The DFL model name and iteration of every fixture.
const DFL_NAME: &str = "tiny";
const DFL_ITER: u64 = 12345;
/// Largest difference allowed between our merge outputs and the PyTorch reference's.
const MERGE_TOLERANCE: f64 = 1e-4;

fn fixture(variant: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dfl/models").join(variant)
}

/// Imports a fixture into `<tmp>/model/m` through the library.
fn import(variant: &str, tmp: &Path) -> ModelFolder {
    let folder = ModelFolder::new(tmp.join("model/m"));
    let report = import_dfl_model(&fixture(variant), None, &folder)
        .unwrap_or_else(|e| panic!("{variant}: {e}"));
    assert_eq!(report.iteration, DFL_ITER);
    assert_eq!(report.not_mapped, ["models_opt_on_gpu=True"], "{variant}");
    folder
}

/// Max |a − b| over two tensors of the same shape.
fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

#[test]
fn imported_models_merge_like_the_reference() {
    for variant in VARIANTS {
        let tmp = tempfile::tempdir().unwrap();
        let folder = import(variant, tmp.path());
        let cfg = folder.read_config().unwrap().unwrap();
        assert_eq!(cfg.model.arch.to_string(), variant);
        let weights = folder.load_weights().unwrap().unwrap();
        assert_eq!(weights.state.iteration, DFL_ITER);
        assert!(!weights.state.loss_history.is_empty(), "{variant}: loss history imported");
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Saehd::new(&vs.root(), &cfg.model);
        copy_named(&weights.dir.join(WEIGHTS_FILE), weights.weights, &vs.variables()).unwrap();
        let reference: BTreeMap<String, Tensor> =
            Tensor::read_safetensors(fixture(variant).join("reference.safetensors"))
                .unwrap()
                .into_iter()
                .collect();
        let out = tch::no_grad(|| model.merge_forward(&reference["in.warped_dst"]));
        let diffs = [
            max_diff(&out.swap.image, &reference["out.swap"]),
            max_diff(&out.swap.mask, &reference["out.swap_mask"]),
            max_diff(&out.dst_mask, &reference["out.dst_mask"]),
        ];
        eprintln!("{variant}: max |ours - reference| swap, swap mask, dst mask = {diffs:?}");
        assert!(diffs.iter().all(|&d| d < MERGE_TOLERANCE), "{variant}: {diffs:?}");
    }
}

/// Every array of a DFL dict file: name → (dtype, shape, raw bytes).
fn arrays(path: &Path) -> BTreeMap<String, (String, Vec<usize>, Vec<u8>)> {
    let value = pickle::loads(&std::fs::read(path).unwrap()).unwrap();
    let Value::Dict(items) = value else { panic!("{}: not a dict", path.display()) };
    items
        .into_iter()
        .map(|(k, v)| {
            // DeepFaceLab's step counter is a numpy scalar; every other value an array.
            let (Value::Str(k), Value::NdArray(a) | Value::NpScalar(a)) = (k, &v) else {
                panic!("{}: not name → array", path.display())
            };
            let kind = if matches!(v, Value::NpScalar(_)) { "scalar " } else { "" };
            (k, (format!("{kind}{}", a.dtype().descr()), a.shape().to_vec(), a.data().to_vec()))
        })
        .collect()
}

#[test]
fn an_export_gives_back_every_array_bit_for_bit() {
    for variant in VARIANTS {
        let tmp = tempfile::tempdir().unwrap();
        let folder = import(variant, tmp.path());
        let out = tmp.path().join("dfl_out");
        let report = export_dfl_model(&folder, &out, DFL_NAME).unwrap();
        assert_eq!(report.iteration, DFL_ITER);
        let mut compared = 0;
        for entry in std::fs::read_dir(fixture(variant)).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".npy") {
                continue;
            }
            let (want, got) = (arrays(&entry.path()), arrays(&out.join(&name)));
            assert_eq!(
                want.keys().collect::<Vec<_>>(),
                got.keys().collect::<Vec<_>>(),
                "{variant}/{name}: keys"
            );
            for (key, w) in &want {
                assert!(w == &got[key], "{variant}/{name}: {key} differs (dtype, shape or bits)");
            }
            compared += want.len();
        }
        assert!(compared > 40, "{variant}: {compared} arrays compared");
        let data =
            pickle::loads(&std::fs::read(out.join(format!("{DFL_NAME}_SAEHD_data.dat"))).unwrap())
                .unwrap();
        assert_eq!(data.get("iter").and_then(Value::as_i64), Some(DFL_ITER as i64));
        let options = data.get("options").unwrap();
        assert_eq!(options.get("archi").and_then(Value::as_str), Some(variant));
        assert_eq!(options.get("ae_dims").and_then(Value::as_i64), Some(8));
        assert_eq!(options.get("face_type").and_then(Value::as_str), Some("wf"));
        assert_eq!(options.get("ct_mode").and_then(Value::as_str), Some("rct"));
        assert_eq!(options.get("clipgrad"), Some(&Value::Bool(true)));
        // Exporting again over it is refused.
        assert!(
            export_dfl_model(&folder, &out, DFL_NAME)
                .unwrap_err()
                .to_string()
                .contains("already exists")
        );
    }
}

#[test]
fn the_binary_imports_names_what_it_drops_and_refuses_a_second_import() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    let dir = fixture("liae-ud");
    let args = ["model", "import-dfl", dir.to_str().unwrap(), "--name", "m"];
    let out = dfl(&ws, &args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("not carried over")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("models_opt_on_gpu=True"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("at iteration 12345"));
    let again = dfl(&ws, &args);
    let err = stderr(&again);
    assert_eq!(again.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("model/m") && err.contains("already exists"), "{err}");
    // And out again through the binary.
    let out_dir = tmp.path().join("dfl_out");
    let export =
        dfl(&ws, &["model", "export-dfl", "--name", "m", "--out", out_dir.to_str().unwrap()]);
    assert_eq!(export.status.code(), Some(0), "{}", stderr(&export));
    assert!(
        out_dir.join("m_SAEHD_data.dat").is_file()
            && out_dir.join("m_SAEHD_inter_AB.npy").is_file()
    );
}

/// Runs an import of `dir` into a fresh workspace; returns (exit code, stderr).
fn import_dir(dir: &Path) -> (Option<i32>, String, PathBuf) {
    let ws = dir.parent().unwrap().join("ws");
    let out = dfl(&ws, &["model", "import-dfl", dir.to_str().unwrap(), "--name", "m"]);
    (out.status.code(), stderr(&out), ws.join("model/m"))
}

#[test]
fn damaged_files_exit_2_with_one_line_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dfl");
    copy_dir(&fixture("df"), &dir);
    let victim = dir.join("tiny_SAEHD_decoder_src.npy");
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();
    let (code, err, model) = import_dir(&dir);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("tiny_SAEHD_decoder_src.npy") && !err.contains("panicked"), "{err}");
    assert!(!model.exists(), "nothing is left behind");
    std::fs::write(&victim, &bytes).unwrap();

    // Options that promise a network far larger than the files (a hostile _data.dat) are
    // refused before anything that size is allocated.
    let data_path = dir.join("tiny_SAEHD_data.dat");
    let data = pickle::loads(&std::fs::read(&data_path).unwrap()).unwrap();
    let Value::Dict(mut items) = data else { panic!("dict") };
    for (k, v) in &mut items {
        if k.as_str() == Some("options") {
            let Value::Dict(options) = v else { panic!("options dict") };
            for (ok, ov) in options.iter_mut() {
                match ok.as_str() {
                    Some("resolution") => *ov = Value::Int(640),
                    Some("ae_dims") => *ov = Value::Int(1024),
                    _ => {}
                }
            }
        }
    }
    std::fs::write(&data_path, pickle::dumps(&Value::Dict(items))).unwrap();
    let (code, err, model) = import_dir(&dir);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("tiny_SAEHD_data.dat") && err.contains("do not match"), "{err}");
    assert!(!model.exists());

    // Not a pickle at all.
    std::fs::write(&data_path, b"\x80\x04\x95garbage").unwrap();
    let (code, err, _) = import_dir(&dir);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("tiny_SAEHD_data.dat") && !err.contains("panicked"), "{err}");
}

#[test]
fn an_imported_model_resumes_training_at_dfls_iteration() {
    let (_tmp, ws) = extracted_workspace(&["obama.jpg"], &["biden.jpg"]);
    let out = dfl(&ws, &["model", "import-dfl", fixture("df").to_str().unwrap(), "--name", "m"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = dfl(&ws, &["--device", "cpu", "train", "--name", "m", "--iterations", "2"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("at iteration 12345"), "{err}");
    let ck = ModelFolder::new(ws.join("model/m")).load().unwrap().unwrap();
    assert_eq!(ck.state.iteration, DFL_ITER + 2);
    // The optimizer went on from DFL's step counter (12300 in the fixture).
    let steps = ck.optimizer.iter().find(|(n, _)| n == "iteration").unwrap().1.int64_value(&[0]);
    assert_eq!(steps, 12300 + 2);
    // And merges.
    let out = dfl(&ws, &["--device", "cpu", "merge", "--model", "m"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("1 frames merged with m at iteration 12347"), "{}", stderr(&out));
}

/// Python with numpy, as `scripts/setup.sh` installs it; `None` when it is not there.
fn python() -> Option<PathBuf> {
    let home = std::env::var_os("DFL_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/dfl")))?;
    Some(home.join("venv/bin/python")).filter(|p| p.is_file())
}

/// Checks with Python's own pickle and numpy that every exported file loads and equals the
/// fixture's (types, dtypes, shapes, values).
const PYTHON_CHECK: &str = r#"
import pathlib, pickle, sys
import numpy as np
fixture, out = map(pathlib.Path, sys.argv[1:3])
for f in sorted(fixture.glob("*.npy")):
    want, got = pickle.loads(f.read_bytes()), pickle.loads((out / f.name).read_bytes())
    assert type(got) is dict and sorted(want) == sorted(got), f.name
    for k, w in want.items():
        g = got[k]
        assert type(g) is type(w) and g.dtype == w.dtype and g.shape == w.shape, (f.name, k)
        assert np.array_equal(g, w), (f.name, k)
data = pickle.loads((out / "tiny_SAEHD_data.dat").read_bytes())
assert data["iter"] == 12345 and data["options"]["archi"] == "df", data
assert isinstance(data["loss_history"], list) and len(data["loss_history"][0]) == 2
print("python: all arrays equal")
"#;

#[test]
fn python_and_numpy_read_what_we_write() {
    let Some(python) = python() else {
        eprintln!("skipped: no ~/.cache/dfl/venv/bin/python (run scripts/setup.sh)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let folder = import("df", tmp.path());
    let out = tmp.path().join("dfl_out");
    export_dfl_model(&folder, &out, DFL_NAME).unwrap();
    let run = std::process::Command::new(python)
        .args(["-c", PYTHON_CHECK])
        .arg(fixture("df"))
        .arg(&out)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
}
