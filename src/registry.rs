//! What each geosr stage is: its ports, what travels on them, which are required, and the
//! settings it reads. `geosr check` checks graphs against it, and every stage checks its own
//! wiring against it when it starts (`geosr::node::start`), so the two never disagree.
//!
//! What a port carries follows from its name, the convention every geosr stage keeps (see
//! docs/tile-contract.md): `hr*` HR tiles, `lr*` LR tiles, `sr*` and `pred` SR tiles, `loss*`
//! loss replies, `request` requests, `distance` and `vgg` score batches.
//!
//! ```
//! use geosr::registry::wiring_problems;
//! assert!(wiring_problems("unet-infer", &["lr"], &["sr"]).is_empty());
//! let p = wiring_problems("unet-infer", &[], &["sr"]);
//! assert_eq!(p, ["needs input `lr` (LR tiles)"]);
//! ```

/// What travels on a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    HrTiles,
    LrTiles,
    SrTiles,
    LossReply,
    Request,
    Scores,
}

impl Kind {
    /// The kind of a port from its name, `None` for names outside the convention.
    pub fn of_port(name: &str) -> Option<Kind> {
        let is = |p: &str| name == p || name.starts_with(&format!("{p}_"));
        Some(match () {
            _ if name == "request" => Kind::Request,
            _ if is("hr") => Kind::HrTiles,
            _ if is("lr") => Kind::LrTiles,
            _ if is("sr") || name == "pred" => Kind::SrTiles,
            _ if is("loss") => Kind::LossReply,
            _ if name == "distance" || name == "vgg" => Kind::Scores,
            _ => return None,
        })
    }

    /// What the kind carries, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::HrTiles => "HR tiles",
            Kind::LrTiles => "LR tiles",
            Kind::SrTiles => "SR tiles",
            Kind::LossReply => "a loss reply (loss and gradient)",
            Kind::Request => "requests",
            Kind::Scores => "score batches",
        }
    }
}

/// A port of a stage: `name` exactly, or with `family` any `name` or `name_<suffix>`.
#[derive(Debug, Clone, Copy)]
pub struct Port {
    pub name: &'static str,
    pub family: bool,
    pub required: bool,
}

impl Port {
    const fn one(name: &'static str, required: bool) -> Self {
        Port {
            name,
            family: false,
            required,
        }
    }
    const fn family(name: &'static str, required: bool) -> Self {
        Port {
            name,
            family: true,
            required,
        }
    }

    /// Whether a port id is this port (or one of its family).
    pub fn matches(&self, id: &str) -> bool {
        id == self.name || (self.family && id.starts_with(&format!("{}_", self.name)))
    }

    fn shown(&self) -> String {
        match self.family {
            true => format!("`{0}` or `{0}_<name>`", self.name),
            false => format!("`{}`", self.name),
        }
    }
}

/// One stage.
#[derive(Debug, Clone, Copy)]
pub struct StageSpec {
    pub stage: &'static str,
    pub does: &'static str,
    pub inputs: &'static [Port],
    pub outputs: &'static [Port],
    /// The settings it reads (besides `log_dir`, `run_dir`, `threads`, `device` and the wait
    /// bounds, which every stage reads).
    pub settings: &'static [&'static str],
    /// It needs `model`: a run directory with a trained model.
    pub needs_model: bool,
    /// It needs `output`: what it writes.
    pub needs_output: bool,
}

/// Every stage geosr ships.
pub const STAGES: &[StageSpec] = &[
    StageSpec {
        stage: "tile-ingest",
        does: "serves training chips, inference tiles or evaluation tiles, one batch per request",
        inputs: &[Port::one("request", true)],
        outputs: &[Port::family("hr", false), Port::family("lr", false)],
        settings: &["input", "input_lr", "bands", "chip_size", "stride", "max_nodata_pct", "nodata", "val_split_pct", "seed", "batch_size", "augment", "ingest_mode", "infer_tile", "overlap", "infer_batch", "model"],
        needs_model: false,
        needs_output: false,
    },
    StageSpec {
        stage: "degrade",
        does: "degrades HR tiles into LR tiles (each `hr…` input answered on `lr…`)",
        inputs: &[Port::family("hr", true)],
        outputs: &[Port::family("lr", true)],
        settings: &["factor", "antialias", "blur_sigma", "noise_std", "jpeg_quality", "model"],
        needs_model: false,
        needs_output: false,
    },
    StageSpec {
        stage: "unet-train",
        does: "trains the U-Net against the loss stages wired to it",
        inputs: &[Port::one("lr", true), Port::one("lr_val", false), Port::one("hr_val", false), Port::family("loss", true)],
        outputs: &[Port::one("request", true), Port::one("pred", true)],
        settings: &["steps", "epochs", "factor", "model_size", "unet_depth", "unet_width", "upsample", "skip", "consistency_layer", "lr", "lr_schedule", "warmup_steps", "max_grad_norm", "val_every", "checkpoint_every", "resume", "init_from", "prefetch", "loss_weights", "seed"],
        needs_model: false,
        needs_output: false,
    },
    StageSpec {
        stage: "vgg-loss",
        does: "the perceptual loss (answers `pred` on `loss`), or VGG scores of `sr_<method>` on `distance`",
        inputs: &[Port::one("hr", true), Port::one("pred", false), Port::family("sr", false)],
        outputs: &[Port::one("loss", false), Port::one("distance", false)],
        settings: &["vgg_weights", "vgg_layers", "feature_weight", "pixel_loss", "pixel_weight", "rgb_bands", "model"],
        needs_model: false,
        needs_output: false,
    },
    StageSpec {
        stage: "pixel-loss",
        does: "the per-pixel loss (answers `pred` on `loss`)",
        inputs: &[Port::one("hr", true), Port::one("pred", true)],
        outputs: &[Port::one("loss", true)],
        settings: &["pixel_loss", "pixel_weight"],
        needs_model: false,
        needs_output: false,
    },
    StageSpec {
        stage: "unet-infer",
        does: "super-resolves LR tiles with a trained model",
        inputs: &[Port::one("lr", true)],
        outputs: &[Port::one("sr", true)],
        settings: &["model", "engine", "device", "threads", "worker", "workers"],
        needs_model: true,
        needs_output: false,
    },
    StageSpec {
        stage: "upscale",
        does: "upscales LR tiles with a classic resampler",
        inputs: &[Port::one("lr", true)],
        outputs: &[Port::one("sr", true)],
        settings: &["factor", "upscale_method", "upscale_integer_tiles", "model"],
        needs_model: false,
        needs_output: false,
    },
    StageSpec {
        stage: "geotiff-writer",
        does: "asks for every batch and writes the SR tiles as one GeoTIFF per scene",
        inputs: &[Port::family("sr", true)],
        outputs: &[Port::one("request", true)],
        settings: &["input", "model", "output", "output_format", "creation_options", "infer_tile", "overlap", "infer_batch", "nodata", "prefetch", "consistency_report", "consistency_map", "antialias", "blur_sigma"],
        needs_model: false,
        needs_output: true,
    },
    StageSpec {
        stage: "evaluate",
        does: "asks for every HR batch, mosaics every method and compares it with the HR",
        inputs: &[Port::one("hr", true), Port::one("lr", false), Port::family("sr", true), Port::one("vgg", false)],
        outputs: &[Port::one("request", true)],
        settings: &["output", "model", "overlap", "prefetch", "creation_options", "nodata", "preview_crops", "preview_size"],
        needs_model: true,
        needs_output: true,
    },
];

/// The stage named `stage`, if geosr ships one.
pub fn spec(stage: &str) -> Option<&'static StageSpec> {
    STAGES.iter().find(|s| s.stage == stage)
}

/// What is wrong with a node of `stage` wired with these inputs and outputs: a required port
/// missing, or a port the stage does not have. Empty for a stage geosr does not know.
pub fn wiring_problems(stage: &str, inputs: &[&str], outputs: &[&str]) -> Vec<String> {
    let Some(spec) = spec(stage) else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    for (side, ports, have) in [
        ("input", spec.inputs, inputs),
        ("output", spec.outputs, outputs),
    ] {
        for p in ports.iter().filter(|p| p.required) {
            if !have.iter().any(|h| p.matches(h)) {
                let kind = Kind::of_port(p.name)
                    .map(|k| format!(" ({})", k.describe()))
                    .unwrap_or_default();
                let what = match p.family {
                    true => format!("needs at least one {side} {}{kind}", p.shown()),
                    false => format!("needs {side} {}{kind}", p.shown()),
                };
                problems.push(what);
            }
        }
        for h in have.iter().filter(|h| !ports.iter().any(|p| p.matches(h))) {
            let known: Vec<String> = ports.iter().map(|p| p.shown()).collect();
            problems.push(format!(
                "has no {side} `{h}` ({stage} {side}s: {})",
                known.join(", ")
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_kinds_follow_the_names() {
        assert_eq!(Kind::of_port("hr_val"), Some(Kind::HrTiles));
        assert_eq!(Kind::of_port("loss_vgg"), Some(Kind::LossReply));
        assert_eq!(Kind::of_port("pred"), Some(Kind::SrTiles));
        assert_eq!(Kind::of_port("hrx"), None);
    }

    #[test]
    fn every_shipped_stage_has_a_spec_whose_ports_have_kinds() {
        for s in STAGES {
            for p in s.inputs.iter().chain(s.outputs) {
                assert!(Kind::of_port(p.name).is_some(), "{}: {}", s.stage, p.name);
            }
        }
        let p = wiring_problems("unet-train", &["lr", "hr_val"], &["request", "pred", "x"]);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].contains("needs at least one input `loss` or `loss_<name>`"),
            "{p:?}"
        );
        assert!(p[1].contains("has no output `x`"), "{p:?}");
    }
}
