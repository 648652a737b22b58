//! What a fault does to a node's data directory: garbage in its state
//! files, the files emptied, writes that fail, the directory replaced by a
//! regular file. Name-agnostic: every regular file in the directory is a
//! state file, whatever the program calls it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Bytes no state file can parse: not UTF-8, not a number, no checksum.
const GARBAGE: &[u8] = b"\xff\xfe\x00 garbage, not a token ceiling \x01\x02\n";

/// The regular files in `dir`, sorted (none if it is not a directory).
pub fn state_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Overwrites every state file with garbage; returns the files.
pub fn fill_with_garbage(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let files = state_files(dir);
    for f in &files {
        fs::write(f, GARBAGE)?;
    }
    Ok(files)
}

/// Truncates every state file to 0 bytes; returns the files.
pub fn empty_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let files = state_files(dir);
    for f in &files {
        fs::write(f, b"")?;
    }
    Ok(files)
}

/// A copy of a directory's state files, to put back after a fault (as an
/// operator restores a backup).
pub struct Saved(Vec<(PathBuf, Vec<u8>)>);

impl Saved {
    /// Reads every state file of `dir`.
    pub fn of(dir: &Path) -> std::io::Result<Saved> {
        state_files(dir)
            .into_iter()
            .map(|f| fs::read(&f).map(|bytes| (f, bytes)))
            .collect::<std::io::Result<_>>()
            .map(Saved)
    }

    /// Writes the files back.
    pub fn restore(&self) -> std::io::Result<()> {
        for (f, bytes) in &self.0 {
            fs::write(f, bytes)?;
        }
        Ok(())
    }
}

/// Replaces the directory by a regular file of the same name (the state
/// files are kept aside in memory).
pub fn replace_by_file(dir: &Path) -> std::io::Result<Saved> {
    let saved = Saved::of(dir)?;
    fs::remove_dir_all(dir)?;
    fs::write(dir, b"not a directory\n")?;
    Ok(saved)
}

/// Puts the directory back after [`replace_by_file`].
pub fn put_back_dir(dir: &Path, saved: &Saved) -> std::io::Result<()> {
    if dir.is_file() {
        fs::remove_file(dir)?;
    }
    fs::create_dir_all(dir)?;
    saved.restore()
}

/// How a directory was made unwritable, to undo it.
#[derive(Debug)]
pub struct Unwritable {
    how: Lock,
    /// The directory and its state files, as locked.
    paths: Vec<PathBuf>,
}

/// A way to stop writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lock {
    /// Read-only modes: enough when the suite does not run as root.
    ReadOnlyMode,
    /// `chattr +i`: root ignores permissions, not the immutable attribute.
    Immutable,
}

impl Unwritable {
    /// Makes `dir` a directory where creating, replacing or writing a file
    /// fails, for this process and its children, reads still working; `Err`
    /// says why it cannot be done here.
    pub fn make(dir: &Path) -> Result<Unwritable, String> {
        let mut paths = state_files(dir);
        paths.push(dir.to_path_buf());
        for how in [Lock::ReadOnlyMode, Lock::Immutable] {
            let locked = Unwritable {
                how,
                paths: paths.clone(),
            };
            let result = paths.iter().try_for_each(|p| locked.apply(p, true));
            if result.is_ok() && !can_write(dir) {
                return Ok(locked);
            }
            // Dropping `locked` undoes what was applied.
            if let (Lock::Immutable, Err(e)) = (how, result) {
                return Err(e);
            }
        }
        Err(format!(
            "neither read-only modes nor chattr +i stop writes in {}",
            dir.display()
        ))
    }

    /// How it was done, for the run's log.
    pub fn how(&self) -> &'static str {
        match self.how {
            Lock::ReadOnlyMode => "read-only modes",
            Lock::Immutable => "chattr +i",
        }
    }

    fn apply(&self, path: &Path, lock: bool) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        match self.how {
            Lock::ReadOnlyMode => {
                let mode = match (path.is_dir(), lock) {
                    (true, true) => 0o555,
                    (true, false) => 0o755,
                    (false, true) => 0o444,
                    (false, false) => 0o644,
                };
                fs::set_permissions(path, fs::Permissions::from_mode(mode))
                    .map_err(|e| format!("chmod {}: {e}", path.display()))
            }
            Lock::Immutable => {
                let flag = if lock { "+i" } else { "-i" };
                match Command::new("chattr").arg(flag).arg(path).output() {
                    Ok(out) if out.status.success() => Ok(()),
                    Ok(out) => Err(format!(
                        "chattr {flag} {}: {}",
                        path.display(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    )),
                    Err(e) => Err(format!("cannot run chattr: {e}")),
                }
            }
        }
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        for p in &self.paths {
            let _ = self.apply(p, false);
        }
    }
}

fn can_write(dir: &Path) -> bool {
    let probe = dir.join(".write-probe");
    let ok = fs::write(&probe, b"x").is_ok();
    let _ = fs::remove_file(&probe);
    ok
}
