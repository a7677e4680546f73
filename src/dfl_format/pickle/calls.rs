//! The Python callables the reader knows, and what each returns, computed without Python.

use super::machine::{Id, Machine, Node};
use super::value::{ByteOrder, Dtype, Elem, NdArray, Value};
use super::{MAX_NDIM, PickleError};

/// A Python callable the reader knows the result of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Global {
    Reconstruct,
    NdarrayType,
    DtypeType,
    ScalarFn,
    FromBuffer,
    CodecsEncode,
    BytesType,
    ByteArrayType,
    IntEnum(DflEnum),
    GetAttr,
}

/// DeepFaceLab's integer enums that its pickles contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DflEnum {
    SampleType,
    FaceType,
}

/// `samplelib.Sample.SampleType`'s members.
pub(super) const SAMPLE_TYPES: [(&str, i64); 7] = [
    ("IMAGE", 0),
    ("FACE_BEGIN", 1),
    ("FACE", 1),
    ("FACE_PERSON", 2),
    ("FACE_TEMPORAL_SORTED", 3),
    ("FACE_END", 3),
    ("QTY", 4),
];

/// `facelib.FaceType.FaceType`'s members since 2020. Earlier versions numbered them
/// differently, but only the by-name form of Python 3.11 and later needs this table, and only
/// recent DeepFaceLab versions run there.
pub(super) const FACE_TYPES: [(&str, i64); 8] = [
    ("HALF", 0),
    ("MID_FULL", 1),
    ("FULL", 2),
    ("FULL_NO_ALIGN", 3),
    ("WHOLE_FACE", 4),
    ("HEAD", 10),
    ("HEAD_NO_ALIGN", 20),
    ("MARK_ONLY", 100),
];

impl DflEnum {
    pub(super) fn name(self) -> &'static str {
        match self {
            DflEnum::SampleType => "samplelib.Sample.SampleType",
            DflEnum::FaceType => "facelib.FaceType.FaceType",
        }
    }

    /// The value of the member called `member`.
    fn value_of(self, member: &str) -> Option<i64> {
        let members: &[(&str, i64)] = match self {
            DflEnum::SampleType => &SAMPLE_TYPES,
            DflEnum::FaceType => &FACE_TYPES,
        };
        members.iter().find(|(name, _)| *name == member).map(|(_, value)| *value)
    }
}

impl Global {
    /// Resolves a global against the short list; `None` for everything else.
    pub(super) fn resolve(module: &str, name: &str) -> Option<Global> {
        let global = match (module, name) {
            ("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct") => {
                Global::Reconstruct
            }
            ("numpy.core.multiarray" | "numpy._core.multiarray", "scalar") => Global::ScalarFn,
            ("numpy.core.numeric" | "numpy._core.numeric", "_frombuffer") => Global::FromBuffer,
            ("numpy", "ndarray") => Global::NdarrayType,
            ("numpy", "dtype") => Global::DtypeType,
            ("_codecs", "encode") => Global::CodecsEncode,
            ("builtins" | "__builtin__", "bytes") => Global::BytesType,
            ("builtins" | "__builtin__", "bytearray") => Global::ByteArrayType,
            ("builtins" | "__builtin__", "getattr") => Global::GetAttr,
            ("samplelib.Sample", "SampleType") => Global::IntEnum(DflEnum::SampleType),
            ("facelib.FaceType", "FaceType") => Global::IntEnum(DflEnum::FaceType),
            _ => return None,
        };
        Some(global)
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Global::Reconstruct => "numpy.core.multiarray._reconstruct",
            Global::NdarrayType => "numpy.ndarray",
            Global::DtypeType => "numpy.dtype",
            Global::ScalarFn => "numpy.core.multiarray.scalar",
            Global::FromBuffer => "numpy.core.numeric._frombuffer",
            Global::CodecsEncode => "_codecs.encode",
            Global::BytesType => "builtins.bytes",
            Global::ByteArrayType => "builtins.bytearray",
            Global::IntEnum(e) => e.name(),
            Global::GetAttr => "builtins.getattr",
        }
    }
}
/// A call of a known callable, for its error messages.
#[derive(Clone, Copy)]
pub(super) struct Call {
    pub(super) global: Global,
    pub(super) offset: usize,
}

impl Call {
    pub(super) fn bad(self, reason: impl Into<String>) -> PickleError {
        PickleError::BadCall {
            callable: self.global.name(),
            reason: reason.into(),
            offset: self.offset,
        }
    }
}

impl Machine<'_> {
    /// The leaf value of a node known to be a leaf.
    pub(super) fn leaf(&self, id: Id) -> &Value {
        match &self.nodes[id] {
            Node::Leaf(v) => v,
            _ => &Value::None,
        }
    }

    fn str_arg(&self, id: Id) -> Option<&str> {
        self.leaf(id).as_str()
    }

    fn bytes_arg(&self, id: Id) -> Option<&[u8]> {
        self.leaf(id).as_bytes()
    }

    /// `getattr(enum, 'NAME')` on one of DeepFaceLab's enums: the member's value.
    pub(super) fn enum_member(&self, call: Call, args: &[Id]) -> Result<i64, PickleError> {
        let refused = || call.bad("getattr is only read on DeepFaceLab's enums and their members");
        let [object, member] = args else { return Err(refused()) };
        let Node::Global(Global::IntEnum(e)) = self.nodes[*object] else { return Err(refused()) };
        self.str_arg(*member).and_then(|m| e.value_of(m)).ok_or_else(refused)
    }

    /// `_codecs.encode`, `bytes` and `bytearray`: bytes from their arguments.
    pub(super) fn make_bytes(&mut self, call: Call, args: &[Id]) -> Result<Vec<u8>, PickleError> {
        let latin1 = |text: &str| -> Result<Vec<u8>, PickleError> {
            text.chars()
                .map(|c| u8::try_from(u32::from(c)).ok())
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(|| call.bad("text beyond latin-1"))
        };
        let bytes = match (call.global, args) {
            (Global::BytesType | Global::ByteArrayType, []) => Vec::new(),
            (Global::BytesType | Global::ByteArrayType, [b]) if self.bytes_arg(*b).is_some() => {
                self.bytes_arg(*b).unwrap_or_default().to_vec()
            }
            (Global::CodecsEncode | Global::ByteArrayType, [text, encoding])
                if matches!(self.str_arg(*encoding), Some("latin1" | "latin-1")) =>
            {
                latin1(self.str_arg(*text).ok_or_else(|| call.bad("expects text"))?)?
            }
            _ => return Err(call.bad("expects (), (bytes,) or (text, 'latin1')")),
        };
        self.budget.charge(bytes.len())?;
        Ok(bytes)
    }

    /// `numpy.dtype(code, align, copy)`.
    pub(super) fn dtype(&self, call: Call, args: &[Id]) -> Result<Node, PickleError> {
        let Some(code) = args.first().and_then(|&id| self.str_arg(id)) else {
            return Err(call.bad("expects a type code such as 'f4'"));
        };
        let (order, bare) = match code.as_bytes().first() {
            Some(b'>') => (ByteOrder::Big, &code[1..]),
            Some(b'<' | b'|' | b'=') => (ByteOrder::Little, &code[1..]),
            _ => (ByteOrder::Little, code),
        };
        let elem = Elem::from_code(bare)
            .ok_or(PickleError::UnsupportedDtype { descr: code.to_owned() })?;
        Ok(Node::Dtype(Dtype { elem, order }))
    }

    /// A dtype's `__setstate__` tuple: `(version, order, subarray, names, fields, …)`.
    pub(super) fn dtype_state(&self, state: Id) -> Result<ByteOrder, PickleError> {
        let call = Call { global: Global::DtypeType, offset: self.at };
        let Node::Tuple(items) = &self.nodes[state] else {
            return Err(call.bad("state is not a tuple"));
        };
        if items.len() < 2 {
            return Err(call.bad("state is too short"));
        }
        let structured = items[2..items.len().min(5)]
            .iter()
            .any(|&id| !matches!(self.nodes[id], Node::Leaf(Value::None)));
        if structured {
            return Err(PickleError::UnsupportedDtype {
                descr: "a structured or sub-array dtype".to_owned(),
            });
        }
        match self.str_arg(items[1]) {
            Some("<" | "|" | "=") => Ok(ByteOrder::Little),
            Some(">") => Ok(ByteOrder::Big),
            _ => Err(call.bad("byte order is not one of < > | =")),
        }
    }

    /// `_reconstruct(numpy.ndarray, (0,), b'b')`: an array waiting for its state.
    pub(super) fn reconstruct(&self, call: Call, args: &[Id]) -> Result<Node, PickleError> {
        match args.first().map(|&id| &self.nodes[id]) {
            Some(Node::Global(Global::NdarrayType)) if args.len() == 3 => Ok(Node::ArrayStub),
            _ => Err(call.bad("only a plain numpy.ndarray is rebuilt")),
        }
    }

    /// An array's `__setstate__` tuple: `([1,] shape, dtype, is_fortran, raw bytes)`.
    pub(super) fn array_state(&self, state: Id) -> Result<Node, PickleError> {
        let call = Call { global: Global::Reconstruct, offset: self.at };
        let Node::Tuple(items) = &self.nodes[state] else {
            return Err(call.bad("state is not a tuple"));
        };
        let items = match items.as_slice() {
            [_version, rest @ ..] if rest.len() == 4 => rest,
            rest if rest.len() == 4 => rest,
            _ => return Err(call.bad("state is not (version, shape, dtype, is_fortran, data)")),
        };
        let fortran = match self.leaf(items[2]) {
            Value::Bool(b) => *b,
            Value::Int(n) => *n != 0,
            _ => return Err(call.bad("is_fortran is not a bool")),
        };
        self.array_node(call, items[1], items[0], items[3], fortran)
    }

    /// `_frombuffer(raw bytes, dtype, shape, order)`, protocol 5's array.
    pub(super) fn frombuffer(&self, call: Call, args: &[Id]) -> Result<Node, PickleError> {
        let [data, dtype, shape, order] = args else {
            return Err(call.bad("expects (buffer, dtype, shape, order)"));
        };
        let fortran = match self.str_arg(*order) {
            Some("C") => false,
            Some("F") => true,
            _ => return Err(call.bad("order is not 'C' or 'F'")),
        };
        self.array_node(call, *dtype, *shape, *data, fortran)
    }

    /// An array node, once the data's length matches dtype and shape.
    fn array_node(
        &self,
        call: Call,
        dtype: Id,
        shape: Id,
        data: Id,
        fortran: bool,
    ) -> Result<Node, PickleError> {
        let Node::Dtype(dtype) = self.nodes[dtype] else {
            return Err(call.bad(format!("dtype is {}", self.nodes[dtype].kind())));
        };
        let shape = self.shape(call, shape)?;
        let Some(len) = self.bytes_arg(data).map(<[u8]>::len) else {
            return Err(call.bad(format!("data is {}, not bytes", self.nodes[data].kind())));
        };
        let need = shape.iter().try_fold(dtype.elem.size(), |n, &d| n.checked_mul(d));
        if need != Some(len) {
            let elem = dtype.elem.code();
            return Err(
                call.bad(format!("shape {shape:?} of {elem} does not match {len} bytes of data"))
            );
        }
        Ok(Node::Array { dtype, shape, data, fortran })
    }

    pub(super) fn shape(&self, call: Call, id: Id) -> Result<Vec<usize>, PickleError> {
        let Node::Tuple(dims) = &self.nodes[id] else {
            return Err(call.bad("shape is not a tuple"));
        };
        if dims.len() > MAX_NDIM {
            return Err(call.bad(format!("more than {MAX_NDIM} dimensions")));
        }
        dims.iter()
            .map(|&d| match self.leaf(d) {
                Value::Int(n) => usize::try_from(*n).ok(),
                _ => None,
            })
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| call.bad("shape holds something other than sizes"))
    }

    /// `scalar(dtype, raw bytes)`: a numpy scalar.
    pub(super) fn scalar(&self, call: Call, args: &[Id]) -> Result<Node, PickleError> {
        let [dtype, data] = args else {
            return Err(call.bad("expects (dtype, bytes)"));
        };
        let Node::Dtype(dtype) = self.nodes[*dtype] else {
            return Err(call.bad("first argument is not a dtype"));
        };
        match self.bytes_arg(*data) {
            Some(bytes) if bytes.len() == dtype.elem.size() => {
                Ok(Node::Scalar(NdArray { dtype, shape: Vec::new(), data: bytes.to_vec() }))
            }
            _ => Err(call.bad(format!("data is not {} bytes", dtype.elem.size()))),
        }
    }
}
