//! The opcodes of the subset: numbers, text, bytes, containers, the memo, globals, calls.

use std::mem::size_of;

use super::PickleError;
use super::calls::{Call, Global};
use super::machine::{Id, Machine, Node};
use super::value::{Dtype, Value};

/// Python's name of every opcode, by byte.
pub(super) fn opcode_name(code: u8) -> Option<&'static str> {
    let name = match code {
        b'(' => "MARK",
        b'.' => "STOP",
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        b'F' => "FLOAT",
        b'I' => "INT",
        b'J' => "BININT",
        b'K' => "BININT1",
        b'L' => "LONG",
        b'M' => "BININT2",
        b'N' => "NONE",
        b'P' => "PERSID",
        b'Q' => "BINPERSID",
        b'R' => "REDUCE",
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'V' => "UNICODE",
        b'X' => "BINUNICODE",
        b'a' => "APPEND",
        b'b' => "BUILD",
        b'c' => "GLOBAL",
        b'd' => "DICT",
        b'}' => "EMPTY_DICT",
        b'e' => "APPENDS",
        b'g' => "GET",
        b'h' => "BINGET",
        b'i' => "INST",
        b'j' => "LONG_BINGET",
        b'l' => "LIST",
        b']' => "EMPTY_LIST",
        b'o' => "OBJ",
        b'p' => "PUT",
        b'q' => "BINPUT",
        b'r' => "LONG_BINPUT",
        b's' => "SETITEM",
        b't' => "TUPLE",
        b')' => "EMPTY_TUPLE",
        b'u' => "SETITEMS",
        b'G' => "BINFLOAT",
        0x80 => "PROTO",
        0x81 => "NEWOBJ",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x85 => "TUPLE1",
        0x86 => "TUPLE2",
        0x87 => "TUPLE3",
        0x88 => "NEWTRUE",
        0x89 => "NEWFALSE",
        0x8a => "LONG1",
        0x8b => "LONG4",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        0x8c => "SHORT_BINUNICODE",
        0x8d => "BINUNICODE8",
        0x8e => "BINBYTES8",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x93 => "STACK_GLOBAL",
        0x94 => "MEMOIZE",
        0x95 => "FRAME",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => return None,
    };
    Some(name)
}

impl Machine<'_> {
    pub(super) fn proto(&mut self) -> Result<(), PickleError> {
        match self.byte()? {
            2..=5 => Ok(()),
            version => Err(PickleError::UnsupportedProtocol { version }),
        }
    }

    pub(super) fn number(&mut self, code: u8) -> Result<(), PickleError> {
        let value = match code {
            b'J' => Value::Int(i64::from(i32::from_le_bytes(self.array()?))),
            b'K' => Value::Int(i64::from(self.byte()?)),
            b'M' => Value::Int(i64::from(u16::from_le_bytes(self.array()?))),
            b'G' => Value::Float(f64::from_be_bytes(self.array()?)),
            0x8a => Value::Int(self.long::<1>()?),
            _ => Value::Int(self.long::<4>()?),
        };
        self.push_leaf(value)
    }

    /// `LONG1`/`LONG4`: a little-endian two's-complement integer of a counted length.
    fn long<const N: usize>(&mut self) -> Result<i64, PickleError> {
        if N == 4 && self.input.get(self.pos + 3).is_some_and(|b| b & 0x80 != 0) {
            return Err(PickleError::Malformed {
                reason: "negative LONG4 length",
                offset: self.at,
            });
        }
        let bytes = self.counted::<N>()?;
        decode_long(bytes).ok_or(PickleError::IntTooLarge { offset: self.at })
    }

    pub(super) fn text(&mut self, code: u8) -> Result<(), PickleError> {
        let bytes = match code {
            b'X' => self.counted::<4>()?,
            0x8c => self.counted::<1>()?,
            _ => self.counted::<8>()?,
        };
        let text =
            std::str::from_utf8(bytes).map_err(|_| PickleError::BadUtf8 { offset: self.at })?;
        self.push_leaf(Value::Str(text.to_owned()))
    }

    pub(super) fn bytes(&mut self, code: u8) -> Result<(), PickleError> {
        let bytes = match code {
            b'B' => self.counted::<4>()?,
            b'C' => self.counted::<1>()?,
            _ => self.counted::<8>()?,
        };
        self.push_leaf(Value::Bytes(bytes.to_vec()))
    }

    pub(super) fn container(&mut self, code: u8) -> Result<(), PickleError> {
        let node = match code {
            b']' => Node::List(Vec::new()),
            b')' => Node::Tuple(Vec::new()),
            b'}' => Node::Dict(Vec::new()),
            b'l' => Node::List(self.pop_mark("LIST")?),
            b't' => Node::Tuple(self.pop_mark("TUPLE")?),
            b'd' => Node::Dict(pairs(self.pop_mark("DICT")?, self.at)?),
            _ => {
                let n = usize::from(code - 0x84);
                let mut items: Vec<Id> =
                    (0..n).map(|_| self.pop("TUPLE1/2/3")).collect::<Result<_, _>>()?;
                items.reverse();
                Node::Tuple(items)
            }
        };
        self.push_node(node)
    }

    /// `APPEND`, `APPENDS`, `SETITEM`, `SETITEMS`: items into the list or dict below them.
    pub(super) fn fill(&mut self, code: u8) -> Result<(), PickleError> {
        let (opcode, items) = match code {
            b'a' => ("APPEND", vec![self.pop("APPEND")?]),
            b'e' => ("APPENDS", self.pop_mark("APPENDS")?),
            b's' => {
                let value = self.pop("SETITEM")?;
                ("SETITEM", vec![self.pop("SETITEM")?, value])
            }
            _ => ("SETITEMS", self.pop_mark("SETITEMS")?),
        };
        let target = self.top(opcode)?;
        self.budget.charge(items.len() * size_of::<Id>())?;
        match (&mut self.nodes[target], code) {
            (Node::List(list), b'a' | b'e') => list.extend(items),
            (Node::Dict(dict), b's' | b'u') => dict.extend(pairs(items, self.at)?),
            (_, b'a' | b'e') => return Err(self.expect_type(target, opcode, "a list")),
            _ => return Err(self.expect_type(target, opcode, "a dict")),
        }
        Ok(())
    }

    pub(super) fn memo_op(&mut self, code: u8) -> Result<(), PickleError> {
        let (opcode, index) = match code {
            b'q' => ("BINPUT", u64::from(self.byte()?)),
            b'r' => ("LONG_BINPUT", u64::from(u32::from_le_bytes(self.array()?))),
            0x94 => ("MEMOIZE", self.memo.len() as u64),
            b'h' => ("BINGET", u64::from(self.byte()?)),
            _ => ("LONG_BINGET", u64::from(u32::from_le_bytes(self.array()?))),
        };
        if matches!(code, b'h' | b'j') {
            let id = *self.memo.get(&index).ok_or(PickleError::MissingMemo {
                opcode,
                index,
                offset: self.at,
            })?;
            self.stack.push(id);
        } else {
            let id = self.top(opcode)?;
            self.memo.insert(index, id);
        }
        Ok(())
    }

    pub(super) fn global(&mut self, code: u8) -> Result<(), PickleError> {
        let (module, name) = if code == b'c' {
            (self.line()?.to_owned(), self.line()?.to_owned())
        } else {
            let name = self.pop("STACK_GLOBAL")?;
            let module = self.pop("STACK_GLOBAL")?;
            (self.string_of(module, "STACK_GLOBAL")?, self.string_of(name, "STACK_GLOBAL")?)
        };
        match Global::resolve(&module, &name) {
            Some(global) => self.push_node(Node::Global(global)),
            None => {
                let module = if module == "__builtin__" { "builtins".to_owned() } else { module };
                Err(PickleError::RefusedGlobal { module, name, offset: self.at })
            }
        }
    }

    fn string_of(&self, id: Id, opcode: &'static str) -> Result<String, PickleError> {
        match &self.nodes[id] {
            Node::Leaf(Value::Str(s)) => Ok(s.clone()),
            _ => Err(self.expect_type(id, opcode, "a str")),
        }
    }

    pub(super) fn reduce(&mut self) -> Result<(), PickleError> {
        let args = self.pop("REDUCE")?;
        let callable = self.pop("REDUCE")?;
        let Node::Global(global) = self.nodes[callable] else {
            return Err(self.expect_type(callable, "REDUCE", "a known callable"));
        };
        let Node::Tuple(args) = &self.nodes[args] else {
            return Err(self.expect_type(args, "REDUCE", "an argument tuple"));
        };
        let args = args.clone();
        let call = Call { global, offset: self.at };
        let node = match global {
            Global::Reconstruct => self.reconstruct(call, &args)?,
            Global::FromBuffer => self.frombuffer(call, &args)?,
            Global::ScalarFn => self.scalar(call, &args)?,
            Global::DtypeType => self.dtype(call, &args)?,
            Global::CodecsEncode | Global::BytesType | Global::ByteArrayType => {
                Node::Leaf(Value::Bytes(self.make_bytes(call, &args)?))
            }
            Global::IntEnum(_) => match args.as_slice() {
                [n] if matches!(self.nodes[*n], Node::Leaf(Value::Int(_))) => {
                    Node::Leaf(self.leaf(*n).clone())
                }
                _ => return Err(call.bad("expects one int")),
            },
            Global::GetAttr => Node::Leaf(Value::Int(self.enum_member(call, &args)?)),
            Global::NdarrayType => {
                return Err(call.bad("numpy.ndarray is only rebuilt through _reconstruct"));
            }
        };
        self.push_node(node)
    }

    pub(super) fn build(&mut self) -> Result<(), PickleError> {
        let state = self.pop("BUILD")?;
        let target = self.top("BUILD")?;
        match self.nodes[target] {
            Node::Dtype(dtype) => {
                let order = self.dtype_state(state)?;
                self.nodes[target] = Node::Dtype(Dtype { order, ..dtype });
            }
            Node::ArrayStub => {
                let array = self.array_state(state)?;
                self.budget.charge(array.payload())?;
                self.nodes[target] = array;
            }
            _ => return Err(self.expect_type(target, "BUILD", "a numpy array or dtype")),
        }
        Ok(())
    }
}

/// Pairs up alternating keys and values.
pub(super) fn pairs(items: Vec<Id>, offset: usize) -> Result<Vec<(Id, Id)>, PickleError> {
    if !items.len().is_multiple_of(2) {
        return Err(PickleError::Malformed {
            reason: "a dict's items do not come in pairs",
            offset,
        });
    }
    Ok(items.chunks_exact(2).map(|p| (p[0], p[1])).collect())
}

/// Decodes a little-endian two's-complement integer; `None` beyond `i64`.
pub(super) fn decode_long(bytes: &[u8]) -> Option<i64> {
    let Some(&high) = bytes.last() else { return Some(0) };
    let negative = high & 0x80 != 0;
    let fill = if negative { 0xff } else { 0 };
    if bytes.len() > 8
        && (bytes[8..].iter().any(|&b| b != fill) || (bytes[7] & 0x80 != 0) != negative)
    {
        return None;
    }
    let mut le = [fill; 8];
    let n = bytes.len().min(8);
    le[..n].copy_from_slice(&bytes[..n]);
    Some(i64::from_le_bytes(le))
}
