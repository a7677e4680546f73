//! Writes [`Value`]s as a protocol 4 pickle that Python's `pickle.loads` (with numpy for the
//! arrays) reads back into the same data.
//!
//! The stream is what Python's pickler writes, minus the optional parts: no `FRAME`s and no memo
//! (each value is written once; a tree has no shared objects), and globals as `GLOBAL module
//! name` lines, which every protocol reads (Python's own protocol 4 uses `STACK_GLOBAL`). Numbers, text, bytes and
//! containers use the compact protocol 4 opcodes. A numpy array is written the way numpy's own
//! `__reduce__` spells it, so numpy 1 (DeepFaceLab's) and numpy 2 both rebuild it:
//!
//! ```text
//! numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b')     # REDUCE: an empty array
//! BUILD (1, shape, numpy.dtype('f4', False, True), False, raw bytes) # its state, C order
//! ```
//!
//! where the dtype is itself `REDUCE`d and then given `BUILD (3, '<', None, None, None, -1, -1,
//! 0)` for its byte order. A numpy scalar is `numpy.core.multiarray.scalar(dtype, raw bytes)`.

use super::value::{ByteOrder, Dtype, Elem, NdArray, Value};

/// The protocol written.
const PROTOCOL: u8 = 4;
/// numpy's module of `_reconstruct` and `scalar` (numpy 2 still reads numpy 1's name).
const NUMPY_MULTIARRAY: &str = "numpy.core.multiarray";
/// numpy's version number of an array's `__setstate__` tuple.
const ARRAY_STATE_VERSION: u8 = 1;
/// numpy's version number of a dtype's `__setstate__` tuple.
const DTYPE_STATE_VERSION: u8 = 3;

/// The opcodes the writer uses (names as in Python's `pickletools`).
mod op {
    pub const PROTO: u8 = 0x80;
    pub const STOP: u8 = b'.';
    pub const MARK: u8 = b'(';
    pub const NONE: u8 = b'N';
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const BININT2: u8 = b'M';
    pub const LONG1: u8 = 0x8a;
    pub const BINFLOAT: u8 = b'G';
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    pub const BINUNICODE: u8 = b'X';
    pub const BINUNICODE8: u8 = 0x8d;
    pub const SHORT_BINBYTES: u8 = b'C';
    pub const BINBYTES: u8 = b'B';
    pub const BINBYTES8: u8 = 0x8e;
    pub const EMPTY_LIST: u8 = b']';
    pub const APPENDS: u8 = b'e';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE2: u8 = 0x86;
    pub const TUPLE3: u8 = 0x87;
    pub const TUPLE: u8 = b't';
    pub const EMPTY_DICT: u8 = b'}';
    pub const SETITEMS: u8 = b'u';
    pub const GLOBAL: u8 = b'c';
    pub const REDUCE: u8 = b'R';
    pub const BUILD: u8 = b'b';
}

/// Encodes `value` as a protocol 4 pickle.
pub fn dumps(value: &Value) -> Vec<u8> {
    let mut w = Writer { out: vec![op::PROTO, PROTOCOL] };
    w.value(value);
    w.out.push(op::STOP);
    w.out
}

impl NdArray {
    /// Makes an array from raw elements in C order and the dtype's byte order; `None` when the
    /// byte count is not the element size times the product of `shape`.
    pub fn from_raw(dtype: Dtype, shape: Vec<usize>, data: Vec<u8>) -> Option<NdArray> {
        let need = shape.iter().try_fold(dtype.elem.size(), |n, &d| n.checked_mul(d))?;
        (need == data.len()).then_some(NdArray { dtype, shape, data })
    }

    /// Makes a little-endian `float32` array; `None` when `values` does not fill `shape`.
    pub fn from_f32(shape: Vec<usize>, values: &[f32]) -> Option<NdArray> {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        NdArray::from_raw(Dtype { elem: Elem::F32, order: ByteOrder::Little }, shape, data)
    }

    /// Makes a 0-d little-endian `int64` array; as [`Value::NpScalar`], the `np.int64` that
    /// DeepFaceLab's saver gets from TensorFlow for a scalar variable.
    pub fn scalar_i64(value: i64) -> NdArray {
        let dtype = Dtype { elem: Elem::I64, order: ByteOrder::Little };
        NdArray { dtype, shape: Vec::new(), data: value.to_le_bytes().to_vec() }
    }
}

struct Writer {
    out: Vec<u8>,
}

impl Writer {
    fn value(&mut self, value: &Value) {
        match value {
            Value::None => self.out.push(op::NONE),
            Value::Bool(b) => self.out.push(if *b { op::NEWTRUE } else { op::NEWFALSE }),
            Value::Int(n) => self.int(*n),
            Value::Float(x) => {
                self.out.push(op::BINFLOAT);
                self.out.extend_from_slice(&x.to_be_bytes());
            }
            Value::Str(s) => self.str(s),
            Value::Bytes(b) => self.bytes(b),
            Value::List(items) => {
                self.out.push(op::EMPTY_LIST);
                if !items.is_empty() {
                    self.out.push(op::MARK);
                    items.iter().for_each(|v| self.value(v));
                    self.out.push(op::APPENDS);
                }
            }
            Value::Tuple(items) => self.tuple(items.iter().map(Item::Value).collect()),
            Value::Dict(pairs) => {
                self.out.push(op::EMPTY_DICT);
                if !pairs.is_empty() {
                    self.out.push(op::MARK);
                    for (k, v) in pairs {
                        self.value(k);
                        self.value(v);
                    }
                    self.out.push(op::SETITEMS);
                }
            }
            Value::NdArray(a) => self.array(a),
            Value::NpScalar(a) => self.scalar(a),
        }
    }

    /// The shortest of Python's integer opcodes for `n`.
    fn int(&mut self, n: i64) {
        if let Ok(small) = u8::try_from(n) {
            self.out.extend_from_slice(&[op::BININT1, small]);
        } else if let Ok(short) = u16::try_from(n) {
            self.out.push(op::BININT2);
            self.out.extend_from_slice(&short.to_le_bytes());
        } else if let Ok(word) = i32::try_from(n) {
            self.out.push(op::BININT);
            self.out.extend_from_slice(&word.to_le_bytes());
        } else {
            // Two's complement, little-endian, without redundant sign bytes (as Python).
            let bytes = n.to_le_bytes();
            let mut len = bytes.len();
            while len > 1 {
                let (top, next) = (bytes[len - 1], bytes[len - 2]);
                let redundant = (top == 0 && next & 0x80 == 0) || (top == 0xff && next & 0x80 != 0);
                if !redundant {
                    break;
                }
                len -= 1;
            }
            self.out.extend_from_slice(&[op::LONG1, len as u8]);
            self.out.extend_from_slice(&bytes[..len]);
        }
    }

    fn str(&mut self, s: &str) {
        self.counted(s.as_bytes(), [op::SHORT_BINUNICODE, op::BINUNICODE, op::BINUNICODE8]);
    }

    fn bytes(&mut self, b: &[u8]) {
        self.counted(b, [op::SHORT_BINBYTES, op::BINBYTES, op::BINBYTES8]);
    }

    /// Bytes after a 1-, 4- or 8-byte little-endian length, with the opcode for that width.
    fn counted(&mut self, b: &[u8], ops: [u8; 3]) {
        if let Ok(len) = u8::try_from(b.len()) {
            self.out.extend_from_slice(&[ops[0], len]);
        } else if let Ok(len) = u32::try_from(b.len()) {
            self.out.push(ops[1]);
            self.out.extend_from_slice(&len.to_le_bytes());
        } else {
            self.out.push(ops[2]);
            self.out.extend_from_slice(&(b.len() as u64).to_le_bytes());
        }
        self.out.extend_from_slice(b);
    }

    fn tuple(&mut self, items: Vec<Item<'_>>) {
        let short = [op::EMPTY_TUPLE, op::TUPLE1, op::TUPLE2, op::TUPLE3];
        let long = items.len() >= short.len();
        if long {
            self.out.push(op::MARK);
        }
        let n = items.len();
        for item in items {
            match item {
                Item::Value(v) => self.value(v),
                Item::Dtype(d) => self.dtype(d),
            }
        }
        self.out.push(if long { op::TUPLE } else { short[n] });
    }

    fn global(&mut self, module: &str, name: &str) {
        self.out.push(op::GLOBAL);
        for part in [module, name] {
            self.out.extend_from_slice(part.as_bytes());
            self.out.push(b'\n');
        }
    }

    /// `numpy.dtype('f4', False, True)` with the byte order as its state.
    fn dtype(&mut self, dtype: Dtype) {
        self.global("numpy", "dtype");
        let code = Value::Str(dtype.elem.code().to_owned());
        self.tuple(vec![
            Item::Value(&code),
            Item::Value(&Value::Bool(false)),
            Item::Value(&Value::Bool(true)),
        ]);
        self.out.push(op::REDUCE);
        let order = match dtype.descr().chars().next() {
            Some(c @ ('<' | '>')) => c.to_string(),
            _ => "|".to_owned(),
        };
        let state = [
            Value::Int(DTYPE_STATE_VERSION.into()),
            Value::Str(order),
            Value::None,
            Value::None,
            Value::None,
            Value::Int(-1),
            Value::Int(-1),
            Value::Int(0),
        ];
        self.tuple(state.iter().map(Item::Value).collect());
        self.out.push(op::BUILD);
    }

    fn array(&mut self, a: &NdArray) {
        self.global(NUMPY_MULTIARRAY, "_reconstruct");
        self.global("numpy", "ndarray");
        self.tuple(vec![Item::Value(&Value::Int(0))]);
        self.bytes(b"b");
        // `_reconstruct`'s three arguments are on the stack: make them a tuple.
        self.out.push(op::TUPLE3);
        self.out.push(op::REDUCE);
        let shape = Value::Tuple(a.shape.iter().map(|&d| Value::Int(d as i64)).collect());
        let data = Value::Bytes(a.data.clone());
        self.tuple(vec![
            Item::Value(&Value::Int(ARRAY_STATE_VERSION.into())),
            Item::Value(&shape),
            Item::Dtype(a.dtype),
            Item::Value(&Value::Bool(false)),
            Item::Value(&data),
        ]);
        self.out.push(op::BUILD);
    }

    fn scalar(&mut self, a: &NdArray) {
        self.global(NUMPY_MULTIARRAY, "scalar");
        let data = Value::Bytes(a.data.clone());
        self.tuple(vec![Item::Dtype(a.dtype), Item::Value(&data)]);
        self.out.push(op::REDUCE);
    }
}

/// One item of a tuple being written: a value, or a dtype (not a [`Value`] of its own).
enum Item<'a> {
    Value(&'a Value),
    Dtype(Dtype),
}

#[cfg(test)]
mod tests {
    use super::super::loads;
    use super::*;

    fn round_trip(value: &Value) {
        let bytes = dumps(value);
        assert_eq!(&loads(&bytes).unwrap(), value, "{bytes:?}");
    }

    #[test]
    fn plain_values_round_trip() {
        for n in
            [0, 1, 255, 256, 65535, 65536, -1, -129, i32::MIN as i64, 1 << 40, i64::MIN, i64::MAX]
        {
            round_trip(&Value::Int(n));
        }
        let long_text = "é".repeat(300);
        round_trip(&Value::Dict(vec![
            (Value::Str("iter".into()), Value::Int(12345)),
            (Value::Str("none".into()), Value::None),
            (Value::Str("flags".into()), Value::List(vec![Value::Bool(true), Value::Bool(false)])),
            (Value::Str("x".into()), Value::Float(-0.125)),
            (Value::Str(long_text), Value::Bytes(vec![7; 70000])),
            (Value::Int(3), Value::Tuple(vec![])),
            (Value::Str("t1".into()), Value::Tuple(vec![Value::Int(1)])),
            (
                Value::Str("t5".into()),
                Value::Tuple((0..5).map(|i| Value::Float(f64::from(i))).collect()),
            ),
            (Value::Str("empty".into()), Value::List(vec![])),
            (Value::Str("d".into()), Value::Dict(vec![])),
        ]));
    }

    #[test]
    fn arrays_and_scalars_round_trip() {
        let f32s = NdArray::from_f32(vec![2, 3], &[1.0, -2.5, 3.25, 0.0, f32::MIN, 1e-30]).unwrap();
        let big = Dtype { elem: Elem::F64, order: ByteOrder::Big };
        let f64s = NdArray::from_raw(
            big,
            vec![2],
            [1.5f64, 2.0].iter().flat_map(|v| v.to_be_bytes()).collect(),
        )
        .unwrap();
        let u8s = NdArray::from_raw(
            Dtype { elem: Elem::U8, order: ByteOrder::Little },
            vec![4],
            vec![0, 1, 2, 255],
        )
        .unwrap();
        let empty = NdArray::from_f32(vec![0, 5], &[]).unwrap();
        round_trip(&Value::List(vec![
            Value::NdArray(f32s),
            Value::NdArray(f64s),
            Value::NdArray(u8s),
            Value::NdArray(empty),
            Value::NdArray(NdArray::scalar_i64(-7)),
            Value::NpScalar(NdArray::scalar_i64(42)),
        ]));
        assert!(NdArray::from_f32(vec![2, 2], &[1.0]).is_none());
    }
}
