//! The one error type of the core library.
//!
//! Every variant that concerns a file names it, so a node can print the error as it is and the
//! user knows which file to look at and what is wrong with it.
use std::path::PathBuf;

/// Errors raised by the geosr core library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A raster could not be opened or read, or does not fit the request.
    #[error("raster {path}: {problem}")]
    Raster { path: PathBuf, problem: String },
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Model weights are missing, malformed or of the wrong network.
    #[error("weights {path}: {problem}")]
    Weights { path: PathBuf, problem: String },
    /// A setting has a value that cannot be used.
    #[error("setting `{key}`: {problem}")]
    Setting { key: String, problem: String },
    /// A message does not follow the Arrow tile contract.
    #[error("tile contract: {0}")]
    Contract(String),
    /// A checkpoint or model card is missing or inconsistent.
    #[error("checkpoint {path}: {problem}")]
    Checkpoint { path: PathBuf, problem: String },
    /// An inference engine (ONNX Runtime) failed to load or run a model.
    #[error("inference engine: {0}")]
    Engine(String),
    /// libtorch reported an error (see `geosr_torch::TorchResult`).
    #[error("libtorch: {0}")]
    Torch(String),
    /// Arrow reported an error.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

/// Result alias of the core library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn raster(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Error::Raster {
            path: path.into(),
            problem: problem.into(),
        }
    }
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    pub fn weights(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Error::Weights {
            path: path.into(),
            problem: problem.into(),
        }
    }
    pub fn setting(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Setting {
            key: key.into(),
            problem: problem.into(),
        }
    }
    pub fn checkpoint(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Error::Checkpoint {
            path: path.into(),
            problem: problem.into(),
        }
    }
}
