//! The values a pickle decodes to, numpy arrays among them.

use std::mem::size_of;

/// A decoded pickle.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Python's `None`.
    None,
    /// A `bool`.
    Bool(bool),
    /// An `int` that fits in 64 bits (larger ones are refused).
    Int(i64),
    /// A `float`.
    Float(f64),
    /// A `str`.
    Str(String),
    /// A `bytes` or `bytearray`.
    Bytes(Vec<u8>),
    /// A `list`.
    List(Vec<Value>),
    /// A `tuple`.
    Tuple(Vec<Value>),
    /// A `dict`, in the pickle's order. Keys are kept as written: Python's pickler never
    /// writes a key twice, and [`Value::get`] takes the last one as Python would.
    Dict(Vec<(Value, Value)>),
    /// A numpy array.
    NdArray(NdArray),
    /// A numpy scalar such as `np.float32(1.5)`: one element and an empty shape.
    NpScalar(NdArray),
}

impl Value {
    /// Returns Python's name for the kind of value (`dict`, `ndarray`, …).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) => "dict",
            Value::NdArray(_) => "ndarray",
            Value::NpScalar(_) => "numpy scalar",
        }
    }

    /// Looks up a string key in a dict (the last entry wins, as in Python).
    pub fn get(&self, key: &str) -> Option<&Value> {
        let Value::Dict(items) = self else { return None };
        items.iter().rev().find(|(k, _)| matches!(k, Value::Str(s) if s == key)).map(|(_, v)| v)
    }

    /// Returns the text of a `str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Returns the bytes of a `bytes` or `bytearray`.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// Returns the items of a list or tuple.
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::List(items) | Value::Tuple(items) => Some(items),
            _ => None,
        }
    }

    /// Returns the array of an `ndarray`.
    pub fn as_array(&self) -> Option<&NdArray> {
        match self {
            Value::NdArray(a) => Some(a),
            _ => None,
        }
    }

    /// Returns an int, or an integer or bool numpy scalar, as `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            Value::NpScalar(a) => a.to_i64_vec()?.first().copied(),
            _ => None,
        }
    }

    /// Returns a float, an int or a numeric numpy scalar as `f64` (ints beyond 2^53 rounded).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(x) => Some(*x),
            Value::Int(n) => Some(*n as f64),
            Value::NpScalar(a) => match a.to_f64_vec() {
                Some(v) => v.first().copied(),
                None => a.to_i64_vec()?.first().map(|&n| n as f64),
            },
            _ => None,
        }
    }

    /// Returns the bytes this value takes in memory, itself included.
    pub fn heap_size(&self) -> usize {
        size_of::<Value>()
            + match self {
                Value::Str(s) => s.len(),
                Value::Bytes(b) => b.len(),
                Value::List(items) | Value::Tuple(items) => {
                    items.iter().map(Value::heap_size).sum()
                }
                Value::Dict(items) => {
                    items.iter().map(|(k, v)| k.heap_size() + v.heap_size()).sum()
                }
                Value::NdArray(a) | Value::NpScalar(a) => a.heap_size(),
                _ => 0,
            }
    }
}

/// The element type of a numpy array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Elem {
    /// `bool`, one byte, 0 or 1.
    Bool,
    /// `int8`.
    I8,
    /// `uint8`.
    U8,
    /// `int16`.
    I16,
    /// `uint16`.
    U16,
    /// `int32`.
    I32,
    /// `uint32`.
    U32,
    /// `int64`.
    I64,
    /// `uint64`.
    U64,
    /// `float16`.
    F16,
    /// `float32`.
    F32,
    /// `float64`.
    F64,
}

/// Every element type with numpy's code for it (`dtype.str` without the byte order).
const ELEM_CODES: [(Elem, &str); 12] = [
    (Elem::Bool, "b1"),
    (Elem::I8, "i1"),
    (Elem::U8, "u1"),
    (Elem::I16, "i2"),
    (Elem::U16, "u2"),
    (Elem::I32, "i4"),
    (Elem::U32, "u4"),
    (Elem::I64, "i8"),
    (Elem::U64, "u8"),
    (Elem::F16, "f2"),
    (Elem::F32, "f4"),
    (Elem::F64, "f8"),
];

impl Elem {
    /// Returns the element's size in bytes.
    pub fn size(self) -> usize {
        match self {
            Elem::Bool | Elem::I8 | Elem::U8 => 1,
            Elem::I16 | Elem::U16 | Elem::F16 => 2,
            Elem::I32 | Elem::U32 | Elem::F32 => 4,
            Elem::I64 | Elem::U64 | Elem::F64 => 8,
        }
    }

    /// Returns numpy's code for the type (`f4`, `u1`, `b1`, …).
    pub fn code(self) -> &'static str {
        ELEM_CODES.iter().find(|(e, _)| *e == self).map_or("?", |(_, c)| c)
    }

    pub(super) fn from_code(code: &str) -> Option<Elem> {
        ELEM_CODES.iter().find(|(_, c)| *c == code).map(|(e, _)| *e)
    }
}

/// The byte order of an array's elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ByteOrder {
    /// Least significant byte first (`<`); also used for one-byte elements.
    Little,
    /// Most significant byte first (`>`).
    Big,
}

/// A numpy dtype: element type and byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Dtype {
    /// The element type.
    pub elem: Elem,
    /// The byte order of the stored bytes.
    pub order: ByteOrder,
}

impl Dtype {
    /// Returns numpy's `dtype.str` for it: `<f4`, `>i4`, `|u1`, `|b1`.
    pub fn descr(&self) -> String {
        let order = match (self.elem.size(), self.order) {
            (1, _) => '|',
            (_, ByteOrder::Little) => '<',
            (_, ByteOrder::Big) => '>',
        };
        format!("{order}{}", self.elem.code())
    }
}

/// A numpy array: dtype, shape and elements in C order (last index fastest).
#[derive(Debug, Clone, PartialEq)]
pub struct NdArray {
    pub(super) dtype: Dtype,
    pub(super) shape: Vec<usize>,
    pub(super) data: Vec<u8>,
}

impl NdArray {
    /// Returns the array's dtype.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// Returns the array's shape (empty for a 0-d array or a scalar).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Returns the raw elements, in C order and in the dtype's byte order.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Returns the number of elements.
    pub fn len(&self) -> usize {
        self.data.len() / self.dtype.elem.size()
    }

    /// Returns true when the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Returns the bytes this array takes in memory beyond its own struct.
    pub fn heap_size(&self) -> usize {
        self.data.len() + self.shape.len() * size_of::<usize>()
    }

    /// Returns the elements of a `float16` or `float32` array as `f32` (exact).
    pub fn to_f32_vec(&self) -> Option<Vec<f32>> {
        match self.dtype.elem {
            Elem::F32 => {
                Some(self.words::<4>().map(|w| f32::from_bits(u32::from_le_bytes(w))).collect())
            }
            Elem::F16 => {
                Some(self.words::<2>().map(|w| f16_to_f32(u16::from_le_bytes(w))).collect())
            }
            _ => None,
        }
    }

    /// Returns the elements as `f64` when every value converts exactly: floats, bool and
    /// integers of up to 32 bits.
    pub fn to_f64_vec(&self) -> Option<Vec<f64>> {
        match self.dtype.elem {
            Elem::F64 => {
                Some(self.words::<8>().map(|w| f64::from_bits(u64::from_le_bytes(w))).collect())
            }
            Elem::F32 | Elem::F16 => Some(self.to_f32_vec()?.into_iter().map(f64::from).collect()),
            Elem::I64 | Elem::U64 => None,
            _ => Some(self.to_i64_vec()?.into_iter().map(|n| n as f64).collect()),
        }
    }

    /// Returns the elements of a bool or integer array as `i64`; `None` for floats and for a
    /// `uint64` value above `i64::MAX`.
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        let v = match self.dtype.elem {
            Elem::Bool | Elem::U8 => self.data.iter().map(|&b| i64::from(b)).collect(),
            Elem::I8 => self.data.iter().map(|&b| i64::from(b as i8)).collect(),
            Elem::I16 => self.words::<2>().map(|w| i64::from(i16::from_le_bytes(w))).collect(),
            Elem::U16 => self.words::<2>().map(|w| i64::from(u16::from_le_bytes(w))).collect(),
            Elem::I32 => self.words::<4>().map(|w| i64::from(i32::from_le_bytes(w))).collect(),
            Elem::U32 => self.words::<4>().map(|w| i64::from(u32::from_le_bytes(w))).collect(),
            Elem::I64 => self.words::<8>().map(i64::from_le_bytes).collect(),
            Elem::U64 => self
                .words::<8>()
                .map(|w| i64::try_from(u64::from_le_bytes(w)).ok())
                .collect::<Option<_>>()?,
            Elem::F16 | Elem::F32 | Elem::F64 => return None,
        };
        Some(v)
    }

    /// Iterates over the elements' bytes, little-endian whatever the stored order.
    fn words<const N: usize>(&self) -> impl Iterator<Item = [u8; N]> + '_ {
        let big = self.dtype.order == ByteOrder::Big;
        self.data.chunks_exact(N).map(move |c| {
            let mut w = [0u8; N];
            w.copy_from_slice(c);
            if big {
                w.reverse();
            }
            w
        })
    }
}

/// Converts IEEE half-precision bits to `f32` (every half value is exact in `f32`).
fn f16_to_f32(bits: u16) -> f32 {
    let exp = u32::from((bits >> 10) & 0x1f);
    let frac = u32::from(bits & 0x3ff);
    let magnitude = match exp {
        0 => frac as f32 * (-24f32).exp2(),
        0x1f if frac == 0 => f32::INFINITY,
        0x1f => f32::NAN,
        _ => f32::from_bits(((exp + 127 - 15) << 23) | (frac << 13)),
    };
    if bits & 0x8000 != 0 { -magnitude } else { magnitude }
}
