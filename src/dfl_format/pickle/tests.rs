//! Tests of the pickle reader on real pickles from Python (`scripts/golden/dfl_pickles.py`).

use super::opcodes::decode_long;
use super::*;
use serde_json::json;
use std::path::PathBuf;

/// The file the hostile fixtures would create if Python loaded them.
pub(crate) const PWNED_MARKER: &str = "/tmp/dfl-pickle-fixture-pwned";

pub(crate) fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dfl")
}

pub(crate) fn fixture(name: &str) -> Vec<u8> {
    let path = fixture_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// The entries of `manifest.json` of the given kind.
pub(crate) fn manifest(kind: &str) -> Vec<serde_json::Value> {
    let text = String::from_utf8(fixture("manifest.json")).expect("manifest is UTF-8");
    let all: Vec<serde_json::Value> = serde_json::from_str(&text).expect("manifest is JSON");
    all.into_iter().filter(|e| e["kind"] == kind).collect()
}

/// The expected value an entry names: a JSON file, or `batches`, built here.
pub(crate) fn expected(name: &str) -> serde_json::Value {
    if name == "batches" {
        let int = |n: usize| json!({"t": "int", "v": n});
        let list: Vec<_> = (0..1001).map(|i| int(i % 7)).collect();
        let dict: Vec<_> = (0..1001).map(|i| json!([int(i), {"t": "none"}])).collect();
        return json!({"t": "dict", "v": [
            [{"t": "str", "v": "list"}, {"t": "list", "v": list}],
            [{"t": "str", "v": "dict"}, {"t": "dict", "v": dict}],
        ]});
    }
    serde_json::from_slice(&fixture(name)).expect("expectation is JSON")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A value in the fixtures' JSON form (see `scripts/golden/dfl_pickles.py`).
pub(crate) fn to_json(v: &Value) -> serde_json::Value {
    let seq = |items: &[Value]| items.iter().map(to_json).collect::<Vec<_>>();
    match v {
        Value::None => json!({"t": "none"}),
        Value::Bool(b) => json!({"t": "bool", "v": b}),
        Value::Int(n) => json!({"t": "int", "v": n}),
        Value::Float(x) => json!({"t": "float", "bits": format!("{:016x}", x.to_bits())}),
        Value::Str(s) => json!({"t": "str", "v": s}),
        Value::Bytes(b) => json!({"t": "bytes", "hex": hex(b)}),
        Value::List(items) => json!({"t": "list", "v": seq(items)}),
        Value::Tuple(items) => json!({"t": "tuple", "v": seq(items)}),
        Value::Dict(items) => {
            let pairs: Vec<_> =
                items.iter().map(|(k, v)| json!([to_json(k), to_json(v)])).collect();
            json!({"t": "dict", "v": pairs})
        }
        Value::NdArray(a) => json!({"t": "ndarray", "dtype": a.dtype().descr(),
                                    "shape": a.shape(), "hex": hex(a.data())}),
        Value::NpScalar(a) => {
            json!({"t": "scalar", "dtype": a.dtype().descr(), "hex": hex(a.data())})
        }
    }
}

/// The path to the first place two JSON values differ, for readable failures.
pub(crate) fn first_difference(
    a: &serde_json::Value,
    b: &serde_json::Value,
    path: &str,
) -> Option<String> {
    use serde_json::Value as J;
    match (a, b) {
        (J::Object(x), J::Object(y)) if x.len() == y.len() => {
            x.iter().find_map(|(k, v)| match y.get(k) {
                Some(w) => first_difference(v, w, &format!("{path}.{k}")),
                None => Some(format!("{path}.{k}: missing")),
            })
        }
        (J::Array(x), J::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (v, w))| first_difference(v, w, &format!("{path}[{i}]"))),
        _ if a == b => None,
        _ => Some(format!("{path}: got {a}, expected {b}")),
    }
}

/// The error and all its sources, as one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text += &format!(": {s}");
        source = s.source();
    }
    text
}

fn load(name: &str) -> Value {
    loads(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn fixtures_decode_to_their_expected_values() {
    let entries: Vec<_> =
        manifest("pickle").into_iter().filter(|e| e["expect"].is_string()).collect();
    assert!(entries.len() >= 11, "the manifest lists {} valid pickles", entries.len());
    for entry in entries {
        let name = entry["file"].as_str().expect("file name");
        let got = to_json(&load(name));
        let want = expected(entry["expect"].as_str().expect("expectation name"));
        if let Some(diff) = first_difference(&got, &want, "") {
            panic!("{name} differs from its expectation at {diff}");
        }
    }
}

#[test]
fn hostile_and_malformed_fixtures_are_refused_by_name_and_nothing_runs() {
    let _ = std::fs::remove_file(PWNED_MARKER);
    let entries = manifest("pickle").into_iter().filter(|e| e["error"].is_string());
    let mut count = 0;
    for entry in entries {
        let name = entry["file"].as_str().expect("file name");
        let want = entry["error"].as_str().expect("error text");
        match loads(&fixture(name)) {
            Ok(v) => panic!("{name} was accepted: {v:?}"),
            Err(e) => {
                assert!(e.to_string().contains(want), "{name}: {e:?} does not name {want:?}")
            }
        }
        count += 1;
    }
    assert!(count >= 30, "only {count} refusals checked");
    assert!(!std::path::Path::new(PWNED_MARKER).exists(), "a hostile pickle ran");
}

#[test]
fn refusals_name_the_global() {
    let err = loads(&fixture("hostile_os_system_p4.pickle")).expect_err("os.system is refused");
    assert!(
        matches!(&err, PickleError::RefusedGlobal { module, name, .. } if module == "os" && name == "system")
    );
    let err = loads(&fixture("hostile_builtins_eval_p2.pickle")).expect_err("eval is refused");
    assert!(err.to_string().starts_with("refused global builtins.eval at byte 2"), "{err}");
    let err = loads(&fixture("hostile_inst_p0.pickle")).expect_err("INST is refused");
    assert!(err.to_string().contains("INST (os.system)"), "{err}");
}

#[test]
fn every_truncation_of_a_valid_fixture_errors() {
    for entry in manifest("pickle").into_iter().filter(|e| e["expect"].is_string()) {
        let name = entry["file"].as_str().expect("file name");
        let data = fixture(name);
        for len in 0..data.len() {
            assert!(loads(&data[..len]).is_err(), "{name} cut to {len} bytes was accepted");
        }
    }
}

#[test]
fn accessors_read_typed_values() {
    let face = load("face_p4.pickle");
    assert_eq!(face.get("face_type").and_then(Value::as_str), Some("whole_face"));
    let landmarks = face.get("landmarks").and_then(Value::as_array).expect("landmarks");
    assert_eq!((landmarks.shape(), landmarks.dtype().descr()), (&[68, 2][..], "<f4".to_owned()));
    let xs = landmarks.to_f32_vec().expect("f32");
    let raw: Vec<f32> = landmarks
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    assert_eq!(xs, raw);
    let mat = face.get("image_to_face_mat").and_then(Value::as_array).expect("matrix");
    assert_eq!(mat.to_f64_vec(), Some(vec![1.25, -0.0625, -500.5, 0.0625, 1.25, -120.0]));
    let rect = face.get("source_rect").and_then(Value::as_seq).expect("rect");
    assert_eq!(rect.iter().map(Value::as_i64).collect::<Vec<_>>(), [412, 96, 688, 372].map(Some));
    assert_eq!(face.get("eyebrows_expand_mod").and_then(Value::as_f64), Some(1.0));
    let mask = face.get("xseg_mask").and_then(Value::as_array).expect("mask");
    assert!(mask.data().starts_with(b"\x89PNG") && mask.shape()[1] == 1);
}

#[test]
fn numpy_forms_read_in_c_order_and_native_values() {
    for p in 2..=5 {
        let v = load(&format!("numpy_p{p}.pickle"));
        let arr = |key: &str| v.get(key).and_then(Value::as_array).cloned().expect(key);
        assert_eq!(arr("fortran_i32").to_i64_vec(), Some((0..12).collect()));
        assert_eq!(arr("fortran_u8_3d").to_i64_vec(), Some((0..24).collect()));
        assert_eq!(arr("fortran_u8_3d").shape(), [2, 3, 4]);
        assert_eq!(arr("big_endian_i4").to_i64_vec(), Some(vec![1, -2, 300]));
        assert_eq!(arr("big_endian_i4").dtype().descr(), ">i4");
        assert_eq!(arr("f16").to_f32_vec(), Some(vec![1.5, -2.0, 65504.0]));
        assert_eq!(arr("u64").to_i64_vec(), None);
        assert_eq!(arr("i64").to_i64_vec(), Some(vec![i64::MIN, i64::MAX]));
        assert_eq!(
            (arr("zero_d").shape().len(), arr("zero_d").to_f64_vec()),
            (0, Some(vec![3.25]))
        );
        assert_eq!((arr("empty").shape(), arr("empty").is_empty()), (&[0, 3][..], true));
        assert_eq!(arr("bool").to_i64_vec(), Some(vec![1, 0, 1, 0, 1, 0]));
        assert_eq!(v.get("scalar_f32").and_then(Value::as_f64), Some(1.5));
        assert_eq!(v.get("scalar_i64").and_then(Value::as_i64), Some(i64::MIN));
        assert_eq!(v.get("scalar_bool").and_then(Value::as_i64), Some(1));
        assert_eq!(v.get("bytearray").and_then(Value::as_bytes), Some(&[1u8, 2, 0x80][..]));
    }
}

/// A pickle of protocol 4 around the given opcodes.
fn p4(body: &[u8]) -> Vec<u8> {
    [b"\x80\x04".as_slice(), body, b"."].concat()
}

/// Opcodes that wrap what `inner` pushes in `n` lists.
fn nested(inner: &[u8], n: usize) -> Vec<u8> {
    [vec![b']'; n], inner.to_vec(), vec![b'a'; n]].concat()
}

#[test]
fn a_shared_list_is_shared_and_sees_later_appends() {
    let v = loads(&p4(b"]\x94h\x00\x86h\x00K\x07a0")).expect("valid");
    let l = Value::List(vec![Value::Int(7)]);
    assert_eq!(v, Value::Tuple(vec![l.clone(), l]));
}

#[test]
fn marks_pops_and_dups_follow_python() {
    assert_eq!(loads(&p4(b"N(K\x01K\x021")).expect("POP_MARK"), Value::None);
    assert_eq!(loads(&p4(b"N(0")).expect("POP of a mark"), Value::None);
    let dup = loads(&p4(b"K\x052\x86")).expect("DUP");
    assert_eq!(dup, Value::Tuple(vec![Value::Int(5), Value::Int(5)]));
    assert!(matches!(loads(&p4(b"(0")), Err(PickleError::StackUnderflow { opcode: "STOP", .. })));
    assert!(matches!(
        loads(&p4(b"K\x01(a")),
        Err(PickleError::StackUnderflow { opcode: "APPEND", .. })
    ));
    assert!(matches!(
        loads(&p4(b"K\x01t")),
        Err(PickleError::StackUnderflow { opcode: "TUPLE", .. })
    ));
    assert!(matches!(
        loads(&p4(b"\x94")),
        Err(PickleError::StackUnderflow { opcode: "MEMOIZE", .. })
    ));
}

#[test]
fn malformed_operations_are_errors() {
    let cases: [(&[u8], &str); 9] = [
        (b"}K\x01a", "expects a list, found dict"),
        (b"]K\x01K\x02s", "expects a dict, found list"),
        (b"}(K\x01u", "pairs"),
        (b"K\x01)R", "expects a known callable, found int"),
        (b"\x8c\x05numpy\x8c\x05dtype\x93K\x01R", "argument tuple"),
        (b"}}b", "expects a numpy array or dtype, found dict"),
        (b"\x8b\x00\x00\x00\x80", "negative LONG4"),
        (b"\x8c\x02\xff\xfe", "UTF-8"),
        (b"\x8c\x05numpy\x8c\x05dtype\x93\x8c\x02U3\x89\x88\x87R", "\"U3\""),
    ];
    for (body, want) in cases {
        let err = loads(&p4(body)).expect_err(want);
        assert!(err.to_string().contains(want), "{body:?}: {err}");
    }
    assert!(matches!(loads(b"\x80\x04"), Err(PickleError::Truncated { offset: 2 })));
    assert!(matches!(loads(b""), Err(PickleError::Truncated { offset: 0 })));
}

#[test]
fn longs_decode_to_i64_or_refuse() {
    assert_eq!(decode_long(&[]), Some(0));
    assert_eq!(decode_long(&[0xff]), Some(-1));
    assert_eq!(decode_long(&[0x80, 0x00]), Some(128));
    assert_eq!(decode_long(&[0, 0, 0, 0, 0, 0, 0, 0x80]), Some(i64::MIN));
    assert_eq!(
        decode_long(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x00]),
        Some(i64::MAX)
    );
    assert_eq!(decode_long(&[0, 0, 0, 0, 0, 0, 0, 0x80, 0x00]), None);
    assert_eq!(decode_long(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0xff]), None);
    assert_eq!(decode_long(&[0, 0, 0, 0, 0, 0, 0, 0x80, 0xff, 0xff]), Some(i64::MIN));
}

#[test]
fn nesting_is_limited_to_max_depth() {
    let at_limit = p4(&nested(b"N", MAX_DEPTH));
    assert!(loads(&at_limit).is_ok());
    let beyond = p4(&nested(b"N", MAX_DEPTH + 1));
    assert!(matches!(loads(&beyond), Err(PickleError::TooDeep { max: MAX_DEPTH })));
}

#[test]
fn a_shared_subtree_reused_deeper_still_counts_its_height() {
    // D, a chain of 60 lists, then (D, [[…[D]…]]) with the second D 51 levels down.
    let chain = [vec![b']'; 60], vec![b'a'; 59]].concat();
    let body = [chain, b"\x94".to_vec(), nested(b"h\x00", 50), b"\x86".to_vec()].concat();
    assert!(matches!(loads(&p4(&body)), Err(PickleError::TooDeep { .. })));
}

#[test]
fn memory_is_capped_by_the_limits() {
    let bomb = fixture("bad_memo_bomb.pickle");
    let limits = Limits::for_input(bomb.len());
    assert!(
        matches!(loads(&bomb), Err(PickleError::TooLarge { limit }) if limit == limits.max_bytes)
    );
    let face = fixture("face_p4.pickle");
    let small = Limits { max_depth: MAX_DEPTH, max_bytes: 1000 };
    assert!(matches!(loads_with(&face, small), Err(PickleError::TooLarge { limit: 1000 })));
    let v = loads(&face).expect("face");
    assert!(v.heap_size() <= Limits::for_input(face.len()).max_bytes);
}

#[test]
fn a_declared_length_beyond_the_input_is_refused_before_allocating() {
    let err = loads(&p4(b"\x8d\xff\xff\xff\xff\xff\xff\xff\xff")).expect_err("huge");
    assert!(matches!(
        err,
        PickleError::LengthBeyondInput { declared: u64::MAX, remaining: 1, offset: 2 }
    ));
}

#[test]
fn array_data_must_match_its_shape() {
    // _frombuffer(b'abcd', dtype('f4'), shape, 'C')
    let frombuffer = |shape: &[u8]| {
        let body = [
            b"\x8c\x13numpy._core.numeric\x8c\x0b_frombuffer\x93(C\x04abcd".as_slice(),
            b"\x8c\x05numpy\x8c\x05dtype\x93\x8c\x02f4\x89\x88\x87R",
            shape,
            b"\x8c\x01CtR",
        ];
        loads(&p4(&body.concat()))
    };
    let err = frombuffer(b"K\x02\x85").expect_err("4 bytes for 2 floats");
    assert!(err.to_string().contains("shape [2] of f4 does not match 4 bytes"), "{err}");
    let v = frombuffer(b"K\x01\x85").expect("one float");
    assert_eq!(
        v.as_array().and_then(NdArray::to_f32_vec),
        Some(vec![f32::from_le_bytes(*b"abcd")])
    );
    let err = frombuffer(b"J\xff\xff\xff\xff\x85").expect_err("negative size");
    assert!(err.to_string().contains("shape holds something other than sizes"), "{err}");
}
