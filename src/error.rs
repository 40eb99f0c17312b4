//! The one error type of the core library.
//!
//! Every variant that concerns a file names it, so a node can print the error as it is and the
//! user knows which file to look at and what is wrong with it. The error of a library underneath
//! (GDAL, libtorch, ONNX Runtime, serde) is kept as the source, not flattened into the text: a
//! stage prints the whole chain in its one line (`geosr::node::run`).
use std::path::PathBuf;

/// The error of a library underneath, kept as a source.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors raised by the geosr core library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A raster could not be opened or read, or does not fit the request.
    #[error("raster {path}: {problem}")]
    Raster {
        path: PathBuf,
        problem: String,
        #[source]
        cause: Option<Cause>,
    },
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Model weights are missing, malformed or of the wrong network.
    #[error("weights {path}: {problem}")]
    Weights {
        path: PathBuf,
        problem: String,
        #[source]
        cause: Option<Cause>,
    },
    /// A setting has a value that cannot be used.
    #[error("setting `{key}`: {problem}")]
    Setting { key: String, problem: String },
    /// A message does not follow the Arrow tile contract.
    #[error("tile contract: {0}")]
    Contract(String),
    /// A checkpoint or model card is missing or inconsistent.
    #[error("checkpoint {path}: {problem}")]
    Checkpoint {
        path: PathBuf,
        problem: String,
        #[source]
        cause: Option<Cause>,
    },
    /// An inference engine (ONNX Runtime) failed to load or run a model.
    #[error("inference engine")]
    Engine(#[source] Cause),
    /// libtorch reported an error (see `geosr_torch::TorchResult`).
    #[error("libtorch")]
    Torch(#[source] Cause),
    /// Arrow reported an error.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

impl Error {
    /// The message with the causes underneath it, `a: b: c`, without repeating a cause that
    /// an outer message already quotes.
    pub fn full_text(&self) -> String {
        let mut text = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            let part = c.to_string();
            if !text.contains(&part) {
                text.push_str(": ");
                text.push_str(&part);
            }
            cause = c.source();
        }
        text
    }
}

/// Result alias of the core library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn raster(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Error::Raster {
            path: path.into(),
            problem: problem.into(),
            cause: None,
        }
    }
    /// A raster error with the library's error as its source.
    pub fn raster_caused(
        path: impl Into<PathBuf>,
        problem: impl Into<String>,
        cause: impl Into<Cause>,
    ) -> Self {
        Error::Raster {
            path: path.into(),
            problem: problem.into(),
            cause: Some(cause.into()),
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
            cause: None,
        }
    }
    /// A weights error with the library's error as its source.
    pub fn weights_caused(
        path: impl Into<PathBuf>,
        problem: impl Into<String>,
        cause: impl Into<Cause>,
    ) -> Self {
        Error::Weights {
            path: path.into(),
            problem: problem.into(),
            cause: Some(cause.into()),
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
            cause: None,
        }
    }
    /// A checkpoint error with the library's error as its source.
    pub fn checkpoint_caused(
        path: impl Into<PathBuf>,
        problem: impl Into<String>,
        cause: impl Into<Cause>,
    ) -> Self {
        Error::Checkpoint {
            path: path.into(),
            problem: problem.into(),
            cause: Some(cause.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_is_kept_as_a_source_and_quoted_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = Error::checkpoint_caused("run/model.json", "reading the card", io);
        assert_eq!(e.to_string(), "checkpoint run/model.json: reading the card");
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(
            e.full_text(),
            "checkpoint run/model.json: reading the card: no such file"
        );
        // Io's own message already quotes its source: not repeated.
        let e = Error::io("out.tif", std::io::Error::other("disk full"));
        assert_eq!(e.full_text(), "out.tif: disk full");
    }
}
