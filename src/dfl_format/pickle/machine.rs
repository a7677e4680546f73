//! The stack machine that runs a pickle's opcodes: its state, its input and its stack.

use std::collections::HashMap;
use std::mem::size_of;

use super::calls::Global;
use super::opcodes::opcode_name;
use super::value::{Dtype, NdArray, Value};
use super::{Limits, PickleError};

/// An index into the machine's node arena.
pub(super) type Id = usize;

/// An object on the machine's stack or in its memo. Containers refer to their items by id,
/// so an object shared through the memo is shared, and changes to it are seen everywhere.
#[derive(Debug)]
pub(super) enum Node {
    /// `None`, bool, int, float, str or bytes: nothing inside.
    Leaf(Value),
    List(Vec<Id>),
    Tuple(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Global(Global),
    Dtype(Dtype),
    /// An array made by `_reconstruct`, waiting for its `BUILD`.
    ArrayStub,
    /// An array whose elements are the bytes of the node `data`.
    Array {
        dtype: Dtype,
        shape: Vec<usize>,
        data: Id,
        fortran: bool,
    },
    Scalar(NdArray),
    /// A node already moved into the output.
    Taken,
}

impl Node {
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Node::Leaf(v) => v.type_name(),
            Node::List(_) => "list",
            Node::Tuple(_) => "tuple",
            Node::Dict(_) => "dict",
            Node::Global(g) => g.name(),
            Node::Dtype(_) => "numpy dtype",
            Node::ArrayStub => "an unfinished numpy array",
            Node::Array { .. } => "ndarray",
            Node::Scalar(_) => "numpy scalar",
            Node::Taken => "a value already used",
        }
    }

    /// Bytes the node owns beyond its own size.
    pub(super) fn payload(&self) -> usize {
        match self {
            Node::Leaf(Value::Str(s)) => s.len(),
            Node::Leaf(Value::Bytes(b)) => b.len(),
            Node::List(ids) | Node::Tuple(ids) => ids.len() * size_of::<Id>(),
            Node::Dict(pairs) => pairs.len() * size_of::<(Id, Id)>(),
            Node::Array { shape, .. } => shape.len() * size_of::<usize>(),
            Node::Scalar(a) => a.heap_size(),
            _ => 0,
        }
    }
}

/// Memory charged against [`Limits::max_bytes`].
pub(super) struct Budget {
    used: usize,
    limit: usize,
}

impl Budget {
    pub(super) fn charge(&mut self, bytes: usize) -> Result<(), PickleError> {
        self.used = self.used.saturating_add(bytes);
        if self.used > self.limit {
            return Err(PickleError::TooLarge { limit: self.limit });
        }
        Ok(())
    }
}

/// The stack machine: runs the opcodes, keeps the objects in an arena.
pub(super) struct Machine<'a> {
    pub(super) input: &'a [u8],
    pub(super) pos: usize,
    /// Where the current opcode starts, for error messages.
    pub(super) at: usize,
    pub(super) nodes: Vec<Node>,
    pub(super) stack: Vec<Id>,
    /// Stack lengths at each open `MARK`.
    pub(super) marks: Vec<usize>,
    pub(super) memo: HashMap<u64, Id>,
    pub(super) max_depth: usize,
    pub(super) budget: Budget,
}

impl<'a> Machine<'a> {
    pub(super) fn new(input: &'a [u8], limits: Limits) -> Self {
        Machine {
            input,
            pos: 0,
            at: 0,
            nodes: Vec::new(),
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            max_depth: limits.max_depth,
            budget: Budget { used: 0, limit: limits.max_bytes },
        }
    }

    /// Runs opcodes until `STOP`; returns the id of the pickled object.
    pub(super) fn run(&mut self) -> Result<Id, PickleError> {
        loop {
            self.at = self.pos;
            let code = self.byte()?;
            if code == b'.' {
                return self.pop("STOP");
            }
            self.step(code)?;
        }
    }

    fn step(&mut self, code: u8) -> Result<(), PickleError> {
        match code {
            0x80 => self.proto(),
            0x95 => self.take(8).map(drop),
            b'(' => {
                self.marks.push(self.stack.len());
                Ok(())
            }
            b'0' => self.pop_any(),
            b'1' => self.pop_mark("POP_MARK").map(drop),
            b'2' => self.dup(),
            b'N' => self.push_leaf(Value::None),
            0x88 => self.push_leaf(Value::Bool(true)),
            0x89 => self.push_leaf(Value::Bool(false)),
            b'J' | b'K' | b'M' | 0x8a | 0x8b | b'G' => self.number(code),
            b'X' | 0x8c | 0x8d => self.text(code),
            b'B' | b'C' | 0x8e | 0x96 => self.bytes(code),
            b']' | b')' | b'}' | b'l' | b't' | b'd' | 0x85 | 0x86 | 0x87 => self.container(code),
            b'a' | b'e' | b's' | b'u' => self.fill(code),
            b'q' | b'r' | 0x94 | b'h' | b'j' => self.memo_op(code),
            b'c' | 0x93 => self.global(code),
            b'R' => self.reduce(),
            b'b' => self.build(),
            0x98 => self.top("READONLY_BUFFER").map(drop),
            _ => Err(self.refuse(code)),
        }
    }

    /// The error for an opcode outside the subset.
    fn refuse(&mut self, code: u8) -> PickleError {
        let offset = self.at;
        let Some(opcode) = opcode_name(code) else {
            return PickleError::UnknownOpcode { code, offset };
        };
        let detail = match code {
            b'i' => match (self.line(), self.line()) {
                (Ok(module), Ok(name)) => format!(" ({module}.{name})"),
                _ => String::new(),
            },
            _ => String::new(),
        };
        match code {
            b'i' | b'o' | 0x81 | 0x92 | 0x82 | 0x83 | 0x84 | b'P' | b'Q' => {
                PickleError::RefusedOpcode { opcode, detail, offset }
            }
            _ => PickleError::UnsupportedOpcode { opcode, offset },
        }
    }

    // ---- reading the input ----

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.input.len());
        let end = end.ok_or(PickleError::Truncated { offset: self.input.len() })?;
        let bytes = &self.input[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(super) fn byte(&mut self) -> Result<u8, PickleError> {
        Ok(self.array::<1>()?[0])
    }

    /// Takes a length-prefixed argument whose length field is `N` bytes, little-endian.
    pub(super) fn counted<const N: usize>(&mut self) -> Result<&'a [u8], PickleError> {
        let mut le = [0u8; 8];
        le[..N].copy_from_slice(&self.array::<N>()?);
        let declared = u64::from_le_bytes(le);
        let remaining = self.input.len() - self.pos;
        match usize::try_from(declared) {
            Ok(n) if n <= remaining => self.take(n),
            _ => Err(PickleError::LengthBeyondInput { declared, remaining, offset: self.at }),
        }
    }

    /// Takes a newline-terminated UTF-8 argument (the text form of `GLOBAL` and `INST`).
    pub(super) fn line(&mut self) -> Result<&'a str, PickleError> {
        let rest = &self.input[self.pos..];
        let n = rest.iter().position(|&b| b == b'\n');
        let n = n.ok_or(PickleError::Truncated { offset: self.input.len() })?;
        let line = self.take(n + 1)?;
        std::str::from_utf8(&line[..n]).map_err(|_| PickleError::BadUtf8 { offset: self.at })
    }

    // ---- the stack ----

    fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    pub(super) fn pop(&mut self, opcode: &'static str) -> Result<Id, PickleError> {
        if self.stack.len() <= self.fence() {
            return Err(PickleError::StackUnderflow { opcode, offset: self.at });
        }
        self.stack.pop().ok_or(PickleError::StackUnderflow { opcode, offset: self.at })
    }

    pub(super) fn top(&self, opcode: &'static str) -> Result<Id, PickleError> {
        match self.stack.last() {
            Some(&id) if self.stack.len() > self.fence() => Ok(id),
            _ => Err(PickleError::StackUnderflow { opcode, offset: self.at }),
        }
    }

    /// Removes everything above the last mark, and the mark.
    pub(super) fn pop_mark(&mut self, opcode: &'static str) -> Result<Vec<Id>, PickleError> {
        let mark =
            self.marks.pop().ok_or(PickleError::StackUnderflow { opcode, offset: self.at })?;
        Ok(self.stack.split_off(mark.min(self.stack.len())))
    }

    /// `POP` drops the top value, or the last mark when nothing is above it.
    fn pop_any(&mut self) -> Result<(), PickleError> {
        if self.marks.last() == Some(&self.stack.len()) {
            self.marks.pop();
            return Ok(());
        }
        self.pop("POP").map(drop)
    }

    fn dup(&mut self) -> Result<(), PickleError> {
        let id = self.top("DUP")?;
        self.stack.push(id);
        Ok(())
    }

    pub(super) fn push_node(&mut self, node: Node) -> Result<(), PickleError> {
        self.budget.charge(size_of::<Node>() + node.payload())?;
        self.nodes.push(node);
        self.stack.push(self.nodes.len() - 1);
        Ok(())
    }

    pub(super) fn push_leaf(&mut self, value: Value) -> Result<(), PickleError> {
        self.push_node(Node::Leaf(value))
    }

    pub(super) fn expect_type(
        &self,
        id: Id,
        opcode: &'static str,
        expected: &'static str,
    ) -> PickleError {
        PickleError::WrongType { opcode, expected, found: self.nodes[id].kind(), offset: self.at }
    }
}
