//! A small builder for ONNX inference graphs: constant tensors, nodes with one output each,
//! typed inputs and outputs, unique value names, and the encoded model file (IR 7, opset 12).

use std::collections::HashSet;

use prost::Message;

use super::proto::{
    AttributeProto, AttributeType, DATA_TYPE_FLOAT, DATA_TYPE_INT64, GraphProto, ModelProto,
    NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
    tensor_shape_proto, type_proto,
};

/// The IR version written (the one that goes with opset 12).
pub const IR_VERSION: i64 = 7;
/// The `ai.onnx` operator set version written.
pub const OPSET_VERSION: i64 = 12;
/// The producer name written into every model.
pub const PRODUCER_NAME: &str = "dfl";
/// Protobuf's hard limit on one message: a model with larger weights would need ONNX's
/// external-data files, which DeepFaceLive does not read.
pub const MAX_MODEL_BYTES: usize = i32::MAX as usize;

/// Errors of building or encoding a graph.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// A value name asked for exactly is already used.
    #[error("the onnx value name {0:?} is used twice")]
    DuplicateName(String),
    /// The encoded model would pass protobuf's 2 GiB limit.
    #[error(
        "the onnx model would be {bytes} bytes, over protobuf's 2 GiB limit for one file; a model with smaller dims or resolution is needed"
    )]
    TooLarge {
        /// The encoded size.
        bytes: usize,
    },
}

/// One dimension of a graph input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size.
    Fixed(i64),
    /// A size set by the caller at run time, under this name (e.g. the batch axis `N`).
    Dynamic(String),
}

/// Builds one graph; [`GraphBuilder::into_model`] wraps it into a model.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    graph: GraphProto,
    names: HashSet<String>,
}

impl GraphBuilder {
    /// Starts an empty graph called `name`.
    pub fn new(name: &str) -> Self {
        Self {
            graph: GraphProto { name: name.to_owned(), ..Default::default() },
            names: HashSet::new(),
        }
    }

    /// Returns `hint` if no value has that name yet, else `hint_1`, `hint_2`, …, and reserves it.
    pub fn unique_name(&mut self, hint: &str) -> String {
        let mut name = hint.to_owned();
        let mut i = 0;
        while self.names.contains(&name) {
            i += 1;
            name = format!("{hint}_{i}");
        }
        self.names.insert(name.clone());
        name
    }

    /// Reserves `name` exactly.
    ///
    /// # Errors
    /// `DuplicateName` when it is taken.
    fn exact_name(&mut self, name: &str) -> Result<String, GraphError> {
        if self.names.insert(name.to_owned()) {
            Ok(name.to_owned())
        } else {
            Err(GraphError::DuplicateName(name.to_owned()))
        }
    }

    /// Declares a float graph input called exactly `name`, and returns the name.
    ///
    /// # Errors
    /// `DuplicateName` when the name is taken.
    pub fn input(&mut self, name: &str, dims: &[Dim]) -> Result<String, GraphError> {
        let name = self.exact_name(name)?;
        self.graph.input.push(float_value_info(&name, dims));
        Ok(name)
    }

    /// Declares the existing value `name` a float graph output; outputs keep the order of
    /// these calls.
    pub fn output(&mut self, name: &str, dims: &[Dim]) {
        self.graph.output.push(float_value_info(name, dims));
    }

    /// Adds a constant f32 tensor (row-major `values`) and returns its unique name.
    pub fn constant_f32(&mut self, hint: &str, dims: &[i64], values: &[f32]) -> String {
        debug_assert_eq!(dims.iter().product::<i64>(), values.len() as i64, "{hint}");
        let raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push_initializer(hint, dims, DATA_TYPE_FLOAT, raw_data)
    }

    /// Adds a constant i64 tensor (a shape, axes) and returns its unique name.
    pub fn constant_i64(&mut self, hint: &str, dims: &[i64], values: &[i64]) -> String {
        debug_assert_eq!(dims.iter().product::<i64>(), values.len() as i64, "{hint}");
        let raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push_initializer(hint, dims, DATA_TYPE_INT64, raw_data)
    }

    fn push_initializer(
        &mut self,
        hint: &str,
        dims: &[i64],
        data_type: i32,
        raw: Vec<u8>,
    ) -> String {
        let name = self.unique_name(hint);
        self.graph.initializer.push(TensorProto {
            dims: dims.to_vec(),
            data_type,
            name: name.clone(),
            raw_data: raw,
            ..Default::default()
        });
        name
    }

    /// Adds a node with one output, named uniquely after `hint`, and returns that name.
    pub fn node(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
        hint: &str,
    ) -> String {
        let output = self.unique_name(hint);
        self.push_node(op_type, inputs, attrs, output)
    }

    /// Adds a node whose one output is called exactly `output` (a graph output's name).
    ///
    /// # Errors
    /// `DuplicateName` when the name is taken.
    pub fn node_named(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
        output: &str,
    ) -> Result<String, GraphError> {
        let output = self.exact_name(output)?;
        Ok(self.push_node(op_type, inputs, attrs, output))
    }

    fn push_node(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
        output: String,
    ) -> String {
        self.graph.node.push(NodeProto {
            input: inputs.iter().map(|s| (*s).to_owned()).collect(),
            output: vec![output.clone()],
            name: output.clone(),
            op_type: op_type.to_owned(),
            attribute: attrs,
            ..Default::default()
        });
        output
    }

    /// Wraps the graph into a model: IR 7, opset 12, producer `dfl` at this crate's version.
    pub fn into_model(self) -> ModelProto {
        ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: OPSET_VERSION,
            }],
            producer_name: PRODUCER_NAME.to_owned(),
            producer_version: env!("CARGO_PKG_VERSION").to_owned(),
            graph: Some(self.graph),
            ..Default::default()
        }
    }
}

/// Encodes a model into the bytes of an `.onnx` file.
///
/// # Errors
/// `TooLarge` past protobuf's 2 GiB limit.
pub fn encode_model(model: &ModelProto) -> Result<Vec<u8>, GraphError> {
    let bytes = model.encoded_len();
    if bytes > MAX_MODEL_BYTES {
        return Err(GraphError::TooLarge { bytes });
    }
    Ok(model.encode_to_vec())
}

fn float_value_info(name: &str, dims: &[Dim]) -> ValueInfoProto {
    use tensor_shape_proto::dimension::Value;
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Dim::Fixed(n) => Value::DimValue(*n),
                Dim::Dynamic(s) => Value::DimParam(s.clone()),
            }),
            ..Default::default()
        })
        .collect();
    let tensor =
        type_proto::Tensor { elem_type: DATA_TYPE_FLOAT, shape: Some(TensorShapeProto { dim }) };
    ValueInfoProto {
        name: name.to_owned(),
        r#type: Some(TypeProto { value: Some(type_proto::Value::TensorType(tensor)) }),
        ..Default::default()
    }
}

/// An integer attribute.
pub fn attr_int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        r#type: AttributeType::Int as i32,
        i: Some(value),
        ..Default::default()
    }
}

/// A float attribute.
pub fn attr_float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        r#type: AttributeType::Float as i32,
        f: Some(value),
        ..Default::default()
    }
}

/// A list-of-integers attribute.
pub fn attr_ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        r#type: AttributeType::Ints as i32,
        ints: values.to_vec(),
        ..Default::default()
    }
}

/// A string attribute.
pub fn attr_string(name: &str, value: &str) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        r#type: AttributeType::String as i32,
        s: Some(value.as_bytes().to_vec()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_unique_and_exact_names_are_checked() {
        let mut g = GraphBuilder::new("g");
        assert_eq!(g.unique_name("conv"), "conv");
        assert_eq!(g.unique_name("conv"), "conv_1");
        assert_eq!(g.unique_name("conv"), "conv_2");
        assert!(g.input("x", &[Dim::Fixed(1)]).is_ok());
        assert!(matches!(g.input("x", &[]), Err(GraphError::DuplicateName(_))));
    }

    #[test]
    fn a_model_round_trips_through_its_bytes() {
        let mut g = GraphBuilder::new("g");
        let x = g.input("in:0", &[Dim::Dynamic("N".into()), Dim::Fixed(2)]).unwrap();
        let w = g.constant_f32("w", &[2], &[0.5, -1.0]);
        let y = g.node_named("Mul", &[&x, &w], vec![attr_int("unused", 0)], "out:0").unwrap();
        g.output(&y, &[Dim::Dynamic("N".into()), Dim::Fixed(2)]);
        let bytes = encode_model(&g.into_model()).unwrap();
        let model = ModelProto::decode(bytes.as_slice()).unwrap();
        assert_eq!((model.ir_version, model.opset_import[0].version), (IR_VERSION, OPSET_VERSION));
        let graph = model.graph.unwrap();
        assert_eq!(graph.node[0].op_type, "Mul");
        assert_eq!(
            graph.initializer[0].raw_data,
            [0.5f32.to_le_bytes(), (-1.0f32).to_le_bytes()].concat()
        );
        assert_eq!(graph.output[0].name, "out:0");
    }
}
