//! Why a pickle is refused.

/// Why a pickle was not read. The caller adds the file's name.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PickleError {
    /// The input ends before the pickle's `STOP`.
    #[error("pickle is truncated at byte {offset}; the file is cut short or is not a pickle")]
    Truncated {
        /// Where the input ran out.
        offset: usize,
    },
    /// A length field claims more bytes than the input has left.
    #[error("pickle declares {declared} bytes at byte {offset} but only {remaining} remain")]
    LengthBeyondInput {
        /// The declared length.
        declared: u64,
        /// Bytes left after the length field.
        remaining: usize,
        /// Where the opcode starts.
        offset: usize,
    },
    /// The pickle names a Python global that is not on the reader's short list.
    #[error(
        "refused global {module}.{name} at byte {offset}: only numpy arrays, numpy scalars and \
         plain Python values are read, nothing is imported or run; the file is not DeepFaceLab \
         data or was tampered with"
    )]
    RefusedGlobal {
        /// The module, with Python 2's `__builtin__` spelled `builtins`.
        module: String,
        /// The name inside the module.
        name: String,
        /// Where the opcode starts.
        offset: usize,
    },
    /// An opcode that builds arbitrary objects or needs outside help to load.
    #[error(
        "refused pickle opcode {opcode}{detail} at byte {offset}: it builds arbitrary Python \
         objects, which this reader never does"
    )]
    RefusedOpcode {
        /// The opcode's name in Python's `pickletools`.
        opcode: &'static str,
        /// What it would have called, as ` (module.name)`, when the opcode says.
        detail: String,
        /// Where the opcode starts.
        offset: usize,
    },
    /// A harmless opcode that DeepFaceLab's files never contain (protocol 0 text forms, sets).
    #[error(
        "pickle opcode {opcode} at byte {offset} is outside the subset DeepFaceLab writes \
         (protocols 2 to 5 of plain values and numpy arrays)"
    )]
    UnsupportedOpcode {
        /// The opcode's name in Python's `pickletools`.
        opcode: &'static str,
        /// Where the opcode starts.
        offset: usize,
    },
    /// A byte that is no pickle opcode at all.
    #[error(
        "unknown pickle opcode 0x{code:02x} at byte {offset}; the file is damaged or not a pickle"
    )]
    UnknownOpcode {
        /// The byte.
        code: u8,
        /// Where it is.
        offset: usize,
    },
    /// A `PROTO` other than 2 to 5.
    #[error("pickle protocol {version} is not supported (2 to 5 are)")]
    UnsupportedProtocol {
        /// The protocol the file declares.
        version: u8,
    },
    /// An opcode needs more values than the stack holds above the last mark.
    #[error("pickle opcode {opcode} at byte {offset} finds the stack empty; the file is damaged")]
    StackUnderflow {
        /// The opcode's name.
        opcode: &'static str,
        /// Where the opcode starts.
        offset: usize,
    },
    /// A memo read of an index that was never stored.
    #[error(
        "pickle opcode {opcode} at byte {offset} reads memo entry {index}, which was never stored"
    )]
    MissingMemo {
        /// The opcode's name.
        opcode: &'static str,
        /// The memo index.
        index: u64,
        /// Where the opcode starts.
        offset: usize,
    },
    /// A Python int outside `i64`.
    #[error("integer at byte {offset} does not fit in 64 bits")]
    IntTooLarge {
        /// Where the opcode starts.
        offset: usize,
    },
    /// Text that is not UTF-8.
    #[error("text at byte {offset} is not valid UTF-8")]
    BadUtf8 {
        /// Where the opcode starts.
        offset: usize,
    },
    /// An opcode applied to a value of the wrong kind.
    #[error("pickle opcode {opcode} at byte {offset} expects {expected}, found {found}")]
    WrongType {
        /// The opcode's name.
        opcode: &'static str,
        /// What it needs.
        expected: &'static str,
        /// What it got.
        found: &'static str,
        /// Where the opcode starts.
        offset: usize,
    },
    /// A known callable called with arguments or a state it never gets from numpy or Python.
    #[error("call of {callable} at byte {offset} is malformed: {reason}")]
    BadCall {
        /// The callable, as `module.name`.
        callable: &'static str,
        /// What is wrong.
        reason: String,
        /// Where the opcode starts.
        offset: usize,
    },
    /// A structural problem not covered above.
    #[error("pickle is malformed at byte {offset}: {reason}")]
    Malformed {
        /// What is wrong.
        reason: &'static str,
        /// Where the opcode starts.
        offset: usize,
    },
    /// A numpy dtype other than bool, integers and floats.
    #[error("numpy dtype {descr:?} is not supported (bool, integer and float arrays are)")]
    UnsupportedDtype {
        /// numpy's name for it (`O8` for objects, `V4` for a structure, `U3` for text).
        descr: String,
    },
    /// The pickle leaves something that is not data as a value, such as a bare dtype.
    #[error("pickle leaves {what} where a value belongs")]
    NotAValue {
        /// What it left.
        what: &'static str,
    },
    /// Values nest deeper than [`Limits::max_depth`](super::Limits::max_depth).
    #[error("pickled values nest deeper than {max} levels")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// A container that contains itself.
    #[error("pickled value contains itself, which a tree of values cannot hold")]
    Cycle,
    /// Decoding would allocate more than [`Limits::max_bytes`](super::Limits::max_bytes).
    #[error("pickle would need more than {limit} bytes of memory to decode")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
}
