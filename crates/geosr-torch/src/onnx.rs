//! ONNX protobuf messages (the subset geosr reads and writes; field numbers from `onnx.proto`)
//! and the U-Net exporter.
//!
//! The export writes the network of [`crate::unet::UNet`] op by op (opset 13): `Conv`,
//! `LeakyRelu`, `Resize` (nearest for the decoder, cubic/linear with half-pixel centres for the
//! skip, as `upsample_bicubic2d(align_corners = false)`), `Concat`, `DepthToSpace` (CRD, which is
//! pixel shuffle) or `ConvTranspose`, and `Add`. Batch, height and width are dynamic; weights are
//! stored in the file.
use crate::projection::{Conv1d, LrProjection, Ops};
use crate::unet::UNetConfig;
use geosr::error::{Error, Result};
use geosr::settings::{Skip, Upsample};
use std::collections::HashMap;
use std::path::Path;
use tch::Tensor;

#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    #[prost(string, tag = "2")]
    pub producer_name: String,
    #[prost(string, tag = "3")]
    pub producer_version: String,
    #[prost(string, tag = "6")]
    pub doc_string: String,
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(int64, tag = "2")]
    pub version: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(string, tag = "4")]
    pub op_type: String,
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(float, tag = "2")]
    pub f: f32,
    #[prost(int64, tag = "3")]
    pub i: i64,
    #[prost(bytes = "vec", tag = "4")]
    pub s: Vec<u8>,
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
    /// AttributeType: FLOAT = 1, INT = 2, STRING = 3, TENSOR = 4, INTS = 7.
    #[prost(int32, tag = "20")]
    pub r#type: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    /// FLOAT = 1.
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    #[prost(string, tag = "8")]
    pub name: String,
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueInfoProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeProto {
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TypeProtoTensor>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeProtoTensor {
    #[prost(int32, tag = "1")]
    pub elem_type: i32,
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<Dimension>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Dimension {
    #[prost(int64, optional, tag = "1")]
    pub dim_value: Option<i64>,
    #[prost(string, optional, tag = "2")]
    pub dim_param: Option<String>,
}

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: v.to_vec(),
        r#type: 7,
        ..Default::default()
    }
}
fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i: v,
        r#type: 2,
        ..Default::default()
    }
}
fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        f: v,
        r#type: 1,
        ..Default::default()
    }
}
fn attr_str(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        s: v.as_bytes().to_vec(),
        r#type: 3,
        ..Default::default()
    }
}

fn raw_floats(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        dims: dims.to_vec(),
        data_type: 1,
        name: name.into(),
        raw_data: values.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn float_tensor(name: &str, t: &Tensor) -> TensorProto {
    raw_floats(name, &t.size(), &crate::tensor::tensor_values(t))
}

fn dynamic_nchw(name: &str, c: i64) -> ValueInfoProto {
    let dim = |p: &str| Dimension {
        dim_param: Some(p.into()),
        dim_value: None,
    };
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: 1,
                shape: Some(TensorShapeProto {
                    dim: vec![
                        dim("batch"),
                        Dimension {
                            dim_value: Some(c),
                            dim_param: None,
                        },
                        dim(&format!("{name}_h")),
                        dim(&format!("{name}_w")),
                    ],
                }),
            }),
        }),
    }
}

/// Builds the graph node by node.
struct Builder<'a> {
    vars: &'a HashMap<String, Tensor>,
    graph: GraphProto,
    counter: usize,
}

impl Builder<'_> {
    fn fresh(&mut self, op: &str) -> String {
        self.counter += 1;
        format!("{op}_{}", self.counter)
    }
    fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        let out = self.fresh(op);
        self.graph.node.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            name: out.clone(),
            op_type: op.into(),
            attribute: attrs,
        });
        out
    }
    fn weight(&mut self, name: &str) -> Result<String> {
        let t = self.vars.get(name).ok_or_else(|| {
            Error::Contract(format!("ONNX export: the network has no variable `{name}`"))
        })?;
        self.graph.initializer.push(float_tensor(name, t));
        Ok(name.to_owned())
    }
    fn constant(&mut self, name: &str, values: &[f32]) -> String {
        let t = Tensor::from_slice(values);
        self.graph.initializer.push(float_tensor(name, &t));
        name.to_owned()
    }
    fn conv(&mut self, x: &str, prefix: &str, stride: i64) -> Result<String> {
        let w = self.weight(&format!("{prefix}.weight"))?;
        let b = self.weight(&format!("{prefix}.bias"))?;
        let k = self.vars[&format!("{prefix}.weight")].size()[2];
        let p = k / 2;
        Ok(self.node(
            "Conv",
            &[x, &w, &b],
            vec![
                attr_ints("kernel_shape", &[k, k]),
                attr_ints("pads", &[p, p, p, p]),
                attr_ints("strides", &[stride, stride]),
            ],
        ))
    }
    fn lrelu(&mut self, x: &str) -> String {
        // tch's leaky_relu: negative slope 0.01.
        self.node("LeakyRelu", &[x], vec![attr_float("alpha", 0.01)])
    }
    fn block(&mut self, x: &str, prefix: &str) -> Result<String> {
        let a = self.conv(x, &format!("{prefix}.a"), 1)?;
        let a = self.lrelu(&a);
        let b = self.conv(&a, &format!("{prefix}.b"), 1)?;
        Ok(self.lrelu(&b))
    }
    fn resize(&mut self, x: &str, factor: f32, mode: &str) -> String {
        let scales = self.fresh("scales");
        let scales = self.constant(&scales, &[1.0, 1.0, factor, factor]);
        let attrs = match mode {
            "nearest" => vec![
                attr_str("mode", "nearest"),
                attr_str("coordinate_transformation_mode", "asymmetric"),
                attr_str("nearest_mode", "floor"),
            ],
            "cubic" => vec![
                attr_str("mode", "cubic"),
                attr_str("coordinate_transformation_mode", "half_pixel"),
                attr_float("cubic_coeff_a", -0.75),
                attr_int("exclude_outside", 0),
            ],
            _ => vec![
                attr_str("mode", "linear"),
                attr_str("coordinate_transformation_mode", "half_pixel"),
            ],
        };
        self.node("Resize", &[x, "", &scales], attrs)
    }
}

/// The consistency layer as ONNX nodes: the same steps as on libtorch.
impl Ops for Builder<'_> {
    type T = String;
    fn conv1d(&mut self, x: &String, k: &Conv1d, axis: usize, transpose: bool) -> String {
        let l = k.kernel.len() as i64;
        let (shape, strides, pads) = if axis == 2 {
            ([l, 1], [k.stride, 1], [k.pad, 0, k.pad, 0])
        } else {
            ([1, l], [1, k.stride], [0, k.pad, 0, k.pad])
        };
        let name = self.fresh("projection_kernel");
        let weights: Vec<f32> = (0..k.bands).flat_map(|_| k.kernel.clone()).collect();
        self.graph.initializer.push(raw_floats(
            &name,
            &[k.bands, 1, shape[0], shape[1]],
            &weights,
        ));
        self.node(
            if transpose { "ConvTranspose" } else { "Conv" },
            &[x, &name],
            vec![
                attr_ints("kernel_shape", &shape),
                attr_ints("strides", &strides),
                attr_ints("pads", &pads),
                attr_int("group", k.bands),
            ],
        )
    }
    fn ones_like(&mut self, x: &String) -> String {
        let shape = self.node("Shape", &[x], vec![]);
        let one = AttributeProto {
            name: "value".into(),
            t: Some(raw_floats("", &[1], &[1.0])),
            r#type: 4,
            ..Default::default()
        };
        self.node("ConstantOfShape", &[&shape], vec![one])
    }
    fn first(&mut self, x: &String, axis: usize) -> String {
        let mut int64s = |name: &str, v: i64| {
            let name = self.fresh(name);
            self.graph.initializer.push(TensorProto {
                dims: vec![1],
                data_type: 7,
                name: name.clone(),
                raw_data: v.to_le_bytes().to_vec(),
                ..Default::default()
            });
            name
        };
        let (starts, ends, axes) = (
            int64s("starts", 0),
            int64s("ends", 1),
            int64s("axes", axis as i64),
        );
        self.node("Slice", &[x, &starts, &ends, &axes], vec![])
    }
    fn add(&mut self, a: &String, b: &String) -> String {
        self.node("Add", &[a, b], vec![])
    }
    fn sub(&mut self, a: &String, b: &String) -> String {
        self.node("Sub", &[a, b], vec![])
    }
    fn mul(&mut self, a: &String, b: &String) -> String {
        self.node("Mul", &[a, b], vec![])
    }
    fn div(&mut self, a: &String, b: &String) -> String {
        self.node("Div", &[a, b], vec![])
    }
    fn sum_hw(&mut self, x: &String) -> String {
        let axes = self.fresh("axes");
        self.graph.initializer.push(TensorProto {
            dims: vec![2],
            data_type: 7,
            name: axes.clone(),
            raw_data: [2i64, 3].iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        self.node("ReduceSum", &[x, &axes], vec![attr_int("keepdims", 1)])
    }
    fn at_least(&mut self, x: &String, v: f32) -> String {
        let c = self.fresh("floor");
        let c = self.constant(&c, &[v]);
        self.node("Max", &[x, &c], vec![])
    }
}

/// Writes the U-Net with weights `vars` (names as in its VarStore) as an ONNX model with input
/// `lr` (N×C×h×w) and output `sr` (N×C×fh×fw).
pub fn export_unet(cfg: &UNetConfig, vars: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    let mut b = Builder {
        vars,
        graph: GraphProto {
            name: "geosr-unet".into(),
            ..Default::default()
        },
        counter: 0,
    };
    b.graph.input.push(dynamic_nchw("lr", cfg.bands));
    let head = b.conv("lr", "head", 1)?;
    let mut x = b.lrelu(&head);
    let mut skips = Vec::new();
    for l in 0..cfg.depth {
        x = b.block(&x, &format!("enc{l}"))?;
        skips.push(x.clone());
        let d = b.conv(&x, &format!("down{l}"), 2)?;
        x = b.lrelu(&d);
    }
    x = b.block(&x, "mid")?;
    for l in (0..cfg.depth as usize).rev() {
        let up = b.resize(&x, 2.0, "nearest");
        let up = b.conv(&up, &format!("up{l}"), 1)?;
        let up = b.lrelu(&up);
        let cat = b.node("Concat", &[&up, &skips[l]], vec![attr_int("axis", 1)]);
        x = b.block(&cat, &format!("dec{l}"))?;
    }
    let residual = if cfg.upsample == Upsample::Deconv {
        let w = b.weight("tail.weight")?;
        let bias = b.weight("tail.bias")?;
        let f = cfg.factor;
        b.node(
            "ConvTranspose",
            &[&x, &w, &bias],
            vec![
                attr_ints("kernel_shape", &[f, f]),
                attr_ints("strides", &[f, f]),
            ],
        )
    } else {
        let t = b.conv(&x, "tail", 1)?;
        b.node(
            "DepthToSpace",
            &[&t],
            vec![attr_int("blocksize", cfg.factor), attr_str("mode", "CRD")],
        )
    };
    let out = match cfg.skip {
        Skip::Bicubic | Skip::Bilinear => {
            let base = b.resize(
                "lr",
                cfg.factor as f32,
                if cfg.skip == Skip::Bicubic {
                    "cubic"
                } else {
                    "linear"
                },
            );
            b.node("Add", &[&base, &residual], vec![])
        }
        _ => residual,
    };
    let out = match &cfg.consistency {
        Some(spec) => {
            LrProjection::new(cfg.bands, cfg.factor, spec).apply(&mut b, &out, &"lr".to_owned())
        }
        None => out,
    };
    b.graph.node.push(NodeProto {
        input: vec![out],
        output: vec!["sr".into()],
        name: "sr".into(),
        op_type: "Identity".into(),
        attribute: vec![],
    });
    b.graph.output.push(dynamic_nchw("sr", cfg.bands));
    let model = ModelProto {
        ir_version: 7,
        producer_name: "geosr".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        // The configuration in the words earlier exports used, so the file does not change.
        doc_string: format!(
            "geosr U-Net UNetConfig {{ bands: {}, factor: {}, depth: {}, width: {}, upsample: \"{}\", skip: \"{}\" }}{}",
            cfg.bands,
            cfg.factor,
            cfg.depth,
            cfg.width,
            cfg.upsample,
            cfg.skip,
            match &cfg.consistency {
                Some(d) => format!(
                    " with the consistency layer (antialias {}, blur_sigma {})",
                    d.antialias, d.blur_sigma
                ),
                None => String::new(),
            }
        ),
        graph: Some(b.graph),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
    };
    use prost::Message;
    geosr::atomic::write_atomic(path, &model.encode_to_vec())
}
