//! Python pickles as DeepFaceLab writes them, read without importing or running anything.
//!
//! A pickle is a program for a small stack machine: an opcode byte, its arguments, the next
//! opcode, until `STOP` (`.`). Protocols 2 and later begin with `PROTO n`; protocols 4 and
//! later also cut the stream into `FRAME`s, which only announce lengths. Opcodes push values
//! (`NONE`, `BININT1 n`, `SHORT_BINUNICODE len text`, `BINFLOAT` as a big-endian double, …);
//! `MARK` remembers a stack position, and `TUPLE`, `APPENDS` and `SETITEMS` take everything
//! above it. A memo keeps objects by index (`BINPUT` and `MEMOIZE` store the top of the
//! stack, `BINGET` pushes it again), so one object can be referenced twice, or contain itself.
//!
//! Anything that is not plain data is a call: `GLOBAL module name` (or `STACK_GLOBAL`) pushes a
//! Python callable, `REDUCE` calls it with an argument tuple, and `BUILD` hands a state to the
//! result's `__setstate__`. Python's own loader imports and calls whatever the file names,
//! which is why a pickle from an untrusted source can run any command. This reader imports and
//! calls nothing. It knows what a short list of callables would return and refuses every other
//! name ([`PickleError::RefusedGlobal`]), as well as every opcode that builds arbitrary objects
//! (`INST`, `OBJ`, `NEWOBJ`, `NEWOBJ_EX`, `EXT1/2/4`, `PERSID`, `BINPERSID`). The callables it
//! knows are the ones numpy arrays, numpy scalars, bytes and DeepFaceLab's sample configs need:
//!
//! - `numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b')` (numpy 2 spells the module
//!   `numpy._core.multiarray`) makes an empty array; `BUILD` then gives it the state
//!   `(1, shape, dtype, is_fortran, raw bytes)`.
//! - `numpy.core.numeric._frombuffer(raw bytes, dtype, shape, 'C' or 'F')`: an array, as
//!   protocol 5 writes it.
//! - `numpy.core.multiarray.scalar(dtype, raw bytes)`: a numpy scalar such as `np.float32(1.5)`.
//! - `numpy.dtype('f4', False, True)`: a dtype; `BUILD (3, '<', None, None, None, -1, -1, 0)`
//!   then gives its byte order. Only bool, integer and float dtypes are read.
//! - `_codecs.encode(text, 'latin1')`: bytes, as protocol 2 writes them; `builtins.bytes` and
//!   `builtins.bytearray` (`__builtin__.…` in protocol 2) with `()`, `(bytes,)` or
//!   `(text, 'latin-1')`.
//! - `samplelib.Sample.SampleType(n)` and `facelib.FaceType.FaceType(n)`, DeepFaceLab's two
//!   integer enums (they appear in `faceset.pak`): the integer `n`. Python 3.11 and later
//!   pickle an enum member by name instead, as `builtins.getattr(FaceType, 'WHOLE_FACE')`;
//!   `getattr` is accepted on these two enums only, and the name becomes the member's value.
//!
//! Hostile input cannot make the reader panic or allocate without bound. Every declared length
//! is checked against the bytes left; values may nest at most [`Limits::max_depth`] levels; a
//! value that contains itself is an error; and the memory a decoded value takes is capped by
//! [`Limits::max_bytes`], a multiple of the input's length by default, which also stops a
//! memo that references one object many times from expanding it exponentially.

mod calls;
mod error;
mod export;
mod machine;
mod opcodes;
#[cfg(test)]
pub(super) mod tests;
mod value;
mod write;

pub use error::PickleError;
pub use value::{ByteOrder, Dtype, Elem, NdArray, Value};
pub use write::dumps;

/// How deep values may nest by default (DeepFaceLab's files nest about five levels).
pub const MAX_DEPTH: usize = 100;
/// Bytes of decoded value allowed per byte of pickle by default: a one-byte opcode such as
/// `NONE` becomes a whole [`Value`], so a legitimate pickle can grow by about this much.
const BYTES_PER_INPUT_BYTE: usize = 128;
/// Memory allowed to any pickle by default, however short it is.
const BASE_BUDGET: usize = 1 << 20;
/// The most dimensions an array may have (numpy 2's own limit).
const MAX_NDIM: usize = 64;

/// How much a decode may nest and allocate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of containers, the outermost value being level 0.
    pub max_depth: usize,
    /// Most bytes the decoder may allocate for values and their contents.
    pub max_bytes: usize,
}

impl Limits {
    /// Returns the default limits for a pickle of `len` bytes.
    pub fn for_input(len: usize) -> Limits {
        let max_bytes = len.saturating_mul(BYTES_PER_INPUT_BYTE).saturating_add(BASE_BUDGET);
        Limits { max_depth: MAX_DEPTH, max_bytes }
    }
}
/// Decodes a pickle with the default [`Limits`] for its length.
///
/// # Errors
///
/// Any [`PickleError`]: a refused global or opcode, a damaged or truncated file, a value too
/// deep or too large.
pub fn loads(data: &[u8]) -> Result<Value, PickleError> {
    loads_with(data, Limits::for_input(data.len()))
}

/// Decodes a pickle within the given limits.
///
/// # Errors
///
/// As [`loads`].
pub fn loads_with(data: &[u8], limits: Limits) -> Result<Value, PickleError> {
    let mut machine = machine::Machine::new(data, limits);
    let root = machine.run()?;
    machine.export(root)
}
