use std::path::{Path, PathBuf};

use crate::preprocess::Skip;
use crate::{Error, Result};

/// File endings read as images.
pub const IMAGE_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "webp"];

/// A folder with one subfolder per class, as Keras's `image_dataset_from_directory` reads it.
#[derive(Clone, Debug)]
pub struct ImageFolder {
    /// The folder.
    pub root: PathBuf,
    /// Sorted subfolder names; index = label.
    pub classes: Vec<String>,
    /// Every image file and its class index, sorted by path.
    pub items: Vec<(PathBuf, usize)>,
}

fn is_image(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')))
        .collect();
    v.sort();
    Ok(v)
}

impl ImageFolder {
    /// Scans `root`; needs at least two class folders with an image each.
    pub fn scan(root: &Path) -> Result<ImageFolder> {
        let classes: Vec<PathBuf> = sorted_entries(root)?.into_iter().filter(|p| p.is_dir()).collect();
        if classes.len() < 2 {
            return Err(Error::data(root, None, "expected one subfolder per class, and at least two classes"));
        }
        let mut items = Vec::new();
        for (label, dir) in classes.iter().enumerate() {
            let files: Vec<PathBuf> = sorted_entries(dir)?.into_iter().filter(|p| p.is_file() && is_image(p)).collect();
            if files.is_empty() {
                return Err(Error::data(
                    dir,
                    None,
                    format!("no images (.{}) in this class folder", IMAGE_EXTENSIONS.join(", .")),
                ));
            }
            items.extend(files.into_iter().map(|f| (f, label)));
        }
        let classes =
            classes.iter().map(|c| c.file_name().unwrap_or_default().to_string_lossy().into_owned()).collect();
        Ok(ImageFolder { root: root.to_path_buf(), classes, items })
    }

    /// Checks that every class still has an example once unreadable images are left out: `kept` are
    /// the indices into `items` that could be used, `skipped` the others with the reason. A class
    /// with none left is an error naming its folder (like an empty class folder), not a class that
    /// the model silently never sees.
    pub fn check_kept(&self, kept: &[usize], skipped: &[Skip]) -> Result<()> {
        let counts =
            super::class_counts(&kept.iter().map(|&i| self.items[i].1).collect::<Vec<_>>(), self.classes.len());
        let Some(empty) = counts.iter().position(|&c| c == 0) else { return Ok(()) };
        let dir = self.root.join(&self.classes[empty]);
        let found = self.items.iter().filter(|(_, c)| *c == empty).count();
        let why = skipped
            .iter()
            .find(|s| Path::new(&s.path).parent() == Some(dir.as_path()))
            .map(|s| format!(" (e.g. {}: {})", s.path, s.reason))
            .unwrap_or_default();
        Err(Error::data(
            &dir,
            None,
            format!(
                "class `{}` has no usable images: all {found} in this class folder were skipped as unreadable{why}",
                self.classes[empty]
            ),
        ))
    }
}

/// Expands files and folders (recursively, sorted) into image files, for prediction.
pub fn collect_images(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut stack = vec![p.clone()];
            let mut found = Vec::new();
            while let Some(d) = stack.pop() {
                for e in sorted_entries(&d)? {
                    if e.is_dir() {
                        stack.push(e);
                    } else if is_image(&e) {
                        found.push(e);
                    }
                }
            }
            found.sort();
            out.extend(found);
        } else if p.exists() {
            out.push(p.clone());
        } else {
            return Err(Error::io(p, std::io::ErrorKind::NotFound.into()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_class_whose_every_image_was_skipped_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["cat/a.jpg", "cat/b.jpg", "dog/c.jpg", "dog/d.png"] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"").unwrap();
        }
        let folder = ImageFolder::scan(dir.path()).unwrap();
        assert_eq!(folder.classes, ["cat", "dog"]);
        folder.check_kept(&[0, 3], &[]).unwrap();
        let skip = |f: &str| Skip { path: dir.path().join(f).display().to_string(), reason: "empty file".into() };
        let err = folder.check_kept(&[0, 1], &[skip("dog/c.jpg"), skip("dog/d.png")]).unwrap_err().to_string();
        assert!(err.contains("dog: class `dog` has no usable images: all 2"), "{err}");
        assert!(err.contains("c.jpg: empty file"), "{err}");
    }
}
