//! From the machine's arena of shared objects to a tree of values.

use std::collections::HashMap;
use std::mem::size_of;

use super::PickleError;
use super::machine::{Id, Machine, Node};
use super::value::{NdArray, Value};

/// The bookkeeping of [`Machine::export`].
pub(super) struct Export {
    /// Uses of each node not yet exported.
    uses: Vec<u32>,
    /// Nodes being expanded (a node met again below itself is a cycle).
    on_path: Vec<bool>,
    /// Values (and heights) of nodes that are used again.
    done: HashMap<Id, (Value, usize)>,
}

impl Machine<'_> {
    /// Turns the pickled object into a [`Value`]. Each node is expanded once; the value of a
    /// node used more than once is kept and copied for its other uses (within the budget).
    pub(super) fn export(&mut self, root: Id) -> Result<Value, PickleError> {
        let mut export = Export {
            uses: self.count_uses(root),
            on_path: vec![false; self.nodes.len()],
            done: HashMap::new(),
        };
        Ok(self.export_node(root, 0, &mut export)?.0)
    }

    /// How many times each node is referenced, counting each reachable node's items once.
    fn count_uses(&self, root: Id) -> Vec<u32> {
        let mut uses = vec![0u32; self.nodes.len()];
        let mut seen = vec![false; self.nodes.len()];
        let mut todo = vec![root];
        uses[root] = 1;
        seen[root] = true;
        while let Some(id) = todo.pop() {
            for child in children(&self.nodes[id]) {
                uses[child] = uses[child].saturating_add(1);
                if !std::mem::replace(&mut seen[child], true) {
                    todo.push(child);
                }
            }
        }
        uses
    }

    /// The value of node `id` at nesting level `depth`, and the height of its subtree.
    fn export_node(
        &mut self,
        id: Id,
        depth: usize,
        ex: &mut Export,
    ) -> Result<(Value, usize), PickleError> {
        if depth > self.max_depth {
            return Err(PickleError::TooDeep { max: self.max_depth });
        }
        if ex.on_path[id] {
            return Err(PickleError::Cycle);
        }
        ex.uses[id] = ex.uses[id].saturating_sub(1);
        let more_uses = ex.uses[id] > 0;
        if let Some((value, height)) = ex.done.remove(&id) {
            if depth + height > self.max_depth {
                return Err(PickleError::TooDeep { max: self.max_depth });
            }
            if more_uses {
                self.budget.charge(value.heap_size())?;
                ex.done.insert(id, (value.clone(), height));
            }
            return Ok((value, height));
        }
        ex.on_path[id] = true;
        let expanded = self.expand(id, depth, ex);
        ex.on_path[id] = false;
        let (value, height) = expanded?;
        if more_uses {
            self.budget.charge(value.heap_size())?;
            ex.done.insert(id, (value.clone(), height));
        }
        Ok((value, height))
    }

    /// Moves a node out of the arena as a value, expanding its items.
    fn expand(
        &mut self,
        id: Id,
        depth: usize,
        ex: &mut Export,
    ) -> Result<(Value, usize), PickleError> {
        self.budget.charge(size_of::<Value>())?;
        let mut height = 0;
        let mut child = |m: &mut Self, c: Id| -> Result<Value, PickleError> {
            let (value, h) = m.export_node(c, depth + 1, ex)?;
            height = height.max(h + 1);
            Ok(value)
        };
        let value = match std::mem::replace(&mut self.nodes[id], Node::Taken) {
            Node::Leaf(value) => value,
            Node::List(ids) => {
                Value::List(ids.into_iter().map(|c| child(self, c)).collect::<Result<_, _>>()?)
            }
            Node::Tuple(ids) => {
                Value::Tuple(ids.into_iter().map(|c| child(self, c)).collect::<Result<_, _>>()?)
            }
            Node::Dict(pairs) => Value::Dict(
                pairs
                    .into_iter()
                    .map(|(k, v)| Ok((child(self, k)?, child(self, v)?)))
                    .collect::<Result<_, PickleError>>()?,
            ),
            Node::Array { dtype, shape, data, fortran } => {
                let Value::Bytes(bytes) = child(self, data)? else {
                    return Err(PickleError::NotAValue { what: "an array without bytes" });
                };
                let data = if fortran {
                    self.fortran_to_c(&bytes, &shape, dtype.elem.size())?
                } else {
                    bytes
                };
                Value::NdArray(NdArray { dtype, shape, data })
            }
            Node::Scalar(array) => Value::NpScalar(array),
            other => return Err(PickleError::NotAValue { what: other.kind() }),
        };
        Ok((value, height))
    }

    /// Reorders elements stored first-index-fastest into last-index-fastest.
    fn fortran_to_c(
        &mut self,
        data: &[u8],
        shape: &[usize],
        size: usize,
    ) -> Result<Vec<u8>, PickleError> {
        self.budget.charge(data.len())?;
        let count = data.len() / size;
        if shape.len() < 2 || count == 0 {
            return Ok(data.to_vec());
        }
        let mut strides = vec![1usize; shape.len()];
        for k in 1..shape.len() {
            strides[k] = strides[k - 1] * shape[k - 1];
        }
        let mut out = Vec::with_capacity(data.len());
        let mut index = vec![0usize; shape.len()];
        let mut offset = 0usize;
        for _ in 0..count {
            out.extend_from_slice(&data[offset * size..(offset + 1) * size]);
            for k in (0..shape.len()).rev() {
                index[k] += 1;
                offset += strides[k];
                if index[k] < shape[k] {
                    break;
                }
                offset -= strides[k] * shape[k];
                index[k] = 0;
            }
        }
        Ok(out)
    }
}

/// The ids a node refers to.
fn children(node: &Node) -> Vec<Id> {
    match node {
        Node::List(ids) | Node::Tuple(ids) => ids.clone(),
        Node::Dict(pairs) => pairs.iter().flat_map(|&(k, v)| [k, v]).collect(),
        Node::Array { data, .. } => vec![*data],
        _ => Vec::new(),
    }
}
