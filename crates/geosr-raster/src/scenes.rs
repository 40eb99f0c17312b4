//! The scenes of an inference run and where each one's output goes.
//!
//! `input` names one raster, a folder (its raster files, sorted), a glob (`*` and `?` in the
//! file name: `/data/LC08_*.tif`) or a list file (`.txt` or `.list`: one path per line, `#`
//! starts a comment, relative paths are relative to the list's folder). With one raster,
//! `output` is the file to write, as always. With several, `output` is a folder and each scene's
//! output takes the scene's file name with the extension `.tif`.
//!
//! A scene whose output already exists is complete (the writer renames a file into place only
//! when it is whole) and is left out, so a re-run does only what is missing. Both `tile-ingest`
//! and `geotiff-writer` list the scenes at start-up, before any output of this run can appear,
//! so they agree on the list.
//!
//! ```
//! use geosr_raster::scenes::wildcard_match;
//! assert!(wildcard_match("LC08_*_T1.tif", "LC08_224077_T1.tif"));
//! assert!(!wildcard_match("LC08_?.tif", "LC08_12.tif"));
//! ```
use geosr::error::{Error, Result};
use std::path::{Path, PathBuf};

/// One scene: the raster to read and the file to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scene {
    pub input: PathBuf,
    pub output: PathBuf,
}

/// The scenes named by the settings, split into those to do and those already complete.
#[derive(Debug, Clone, Default)]
pub struct SceneList {
    pub todo: Vec<Scene>,
    pub complete: Vec<Scene>,
    /// Whether `input` named several scenes (then `output` is a folder).
    pub many: bool,
}

impl SceneList {
    /// The scenes of `input` with their outputs under `output`.
    pub fn new(input: &Path, output: &Path) -> Result<Self> {
        let (inputs, many) = list_inputs(input)?;
        let mut list = SceneList {
            many,
            ..Default::default()
        };
        if !many {
            list.todo.push(Scene {
                input: inputs[0].clone(),
                output: output.to_path_buf(),
            });
            return Ok(list);
        }
        if output.is_file() {
            return Err(Error::raster(
                output,
                "is a file, but the input names several scenes: give a folder for their outputs",
            ));
        }
        let mut names = std::collections::BTreeMap::new();
        for path in inputs {
            let stem = path.file_stem().unwrap_or_default().to_os_string();
            if let Some(other) = names.insert(stem.clone(), path.clone()) {
                return Err(Error::raster(
                    &path,
                    format!(
                        "has the same name as {} up to the extension; their outputs would overwrite each other",
                        other.display()
                    ),
                ));
            }
            let mut name = stem;
            name.push(".tif");
            let scene = Scene {
                output: output.join(name),
                input: path,
            };
            if scene.output.is_file() {
                list.complete.push(scene);
            } else {
                list.todo.push(scene);
            }
        }
        Ok(list)
    }
}

/// The rasters `input` names, and whether it named a set (folder, glob, list) rather than one
/// file.
fn list_inputs(input: &Path) -> Result<(Vec<PathBuf>, bool)> {
    let name = input.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.contains(['*', '?']) {
        let dir = input
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if dir.to_str().is_some_and(|d| d.contains(['*', '?'])) {
            return Err(Error::raster(
                input,
                "wildcards are allowed in the file name only, not in folders",
            ));
        }
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let path = entry.map_err(|e| Error::io(dir, e))?.path();
            let file = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_file() && wildcard_match(name, file) {
                found.push(path);
            }
        }
        found.sort();
        if found.is_empty() {
            return Err(Error::raster(input, "matches no file"));
        }
        return Ok((found, true));
    }
    let ext = input
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if input.is_file() && (ext == "txt" || ext == "list") {
        let text = std::fs::read_to_string(input).map_err(|e| Error::io(input, e))?;
        let base = input.parent().unwrap_or(Path::new("."));
        let mut found = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let path = base.join(line);
            if !path.is_file() {
                return Err(Error::raster(
                    input,
                    format!("line {}: {} is not a file", i + 1, path.display()),
                ));
            }
            found.push(path);
        }
        if found.is_empty() {
            return Err(Error::raster(input, "the list names no raster"));
        }
        return Ok((found, true));
    }
    let many = input.is_dir();
    Ok((crate::raster::list_rasters(input)?, many))
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters and `?` for one.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Greedy match with back-tracking to the last `*`.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::write(p, b"x").unwrap();
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*", "a.tif"));
        assert!(wildcard_match("*.tif", "a.tif"));
        assert!(!wildcard_match("*.tif", "a.tiff"));
        assert!(wildcard_match("a*b*c", "aXXbYYc"));
        assert!(!wildcard_match("a*b*c", "aXXbYY"));
        assert!(wildcard_match("s?.tif", "s1.tif"));
    }

    #[test]
    fn folders_globs_and_lists_name_the_same_scenes_and_complete_ones_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let scenes = dir.path().join("scenes");
        std::fs::create_dir(&scenes).unwrap();
        for n in ["b.tif", "a.tif", "c.vrt", "notes.md"] {
            touch(&scenes.join(n));
        }
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        touch(&out.join("b.tif")); // done by an earlier run

        let list = SceneList::new(&scenes, &out).unwrap();
        assert!(list.many);
        let todo: Vec<_> = list.todo.iter().map(|s| s.output.clone()).collect();
        assert_eq!(todo, [out.join("a.tif"), out.join("c.tif")]);
        assert_eq!(list.complete[0].input, scenes.join("b.tif"));

        let glob = SceneList::new(&scenes.join("?.tif"), &out).unwrap();
        assert_eq!(glob.todo.len() + glob.complete.len(), 2);

        let file = dir.path().join("scenes.txt");
        std::fs::write(
            &file,
            "# two scenes\nscenes/a.tif\n\nscenes/c.vrt  # a VRT\n",
        )
        .unwrap();
        let listed = SceneList::new(&file, &out).unwrap();
        assert_eq!(listed.todo, list.todo);

        let one = SceneList::new(&scenes.join("a.tif"), &dir.path().join("x.tif")).unwrap();
        assert!(!one.many && one.todo[0].output == dir.path().join("x.tif"));
    }

    #[test]
    fn bad_sets_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = SceneList::new(&dir.path().join("*.tif"), dir.path())
            .unwrap_err()
            .full_text();
        assert!(err.contains("matches no file"), "{err}");
        let file = dir.path().join("l.txt");
        std::fs::write(&file, "missing.tif\n").unwrap();
        let err = SceneList::new(&file, dir.path()).unwrap_err().full_text();
        assert!(
            err.contains("line 1") && err.contains("is not a file"),
            "{err}"
        );
        touch(&dir.path().join("a.tif"));
        touch(&dir.path().join("a.vrt"));
        let out = dir.path().join("o.tif");
        touch(&out);
        let err = SceneList::new(&dir.path().join("a.*"), &out)
            .unwrap_err()
            .full_text();
        assert!(err.contains("give a folder"), "{err}");
        let err = SceneList::new(&dir.path().join("a.*"), &dir.path().join("o"))
            .unwrap_err()
            .full_text();
        assert!(err.contains("same name"), "{err}");
    }
}
