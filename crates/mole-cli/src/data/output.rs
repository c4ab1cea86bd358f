//! Output files that appear complete or not at all (`AtomicOutput`), and standard output.

use super::*;

/// Writes `bytes` to `path` via a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut out = AtomicOutput::create(path)?;
    out.write_all(bytes)?;
    out.commit()
}

/// An output file written under a temporary name in its own directory and renamed onto its
/// path only by [`AtomicOutput::commit`], so that a reader finds the complete file or none
/// (an earlier file of that name stays untouched until then). Dropped without a commit (the
/// command failed), the temporary file is removed; after a `kill -9` it remains as
/// `.<name>.partial-<pid>`, a name no reader mistakes for the result. Write errors (a full
/// disk, say) name the output file. The path `-` is standard output: written as it comes
/// (a pipe cannot be renamed into place), for `mole predict … -o - | …`.
pub struct AtomicOutput {
    path: PathBuf,
    tmp: PathBuf,
    sink: Option<Sink>,
}

/// Where an [`AtomicOutput`] writes.
pub(super) enum Sink {
    File(std::io::BufWriter<File>),
    Stdout(std::io::BufWriter<std::io::Stdout>),
}

/// Whether `path` means standard output (`-o -`).
pub fn is_stdout(path: &Path) -> bool {
    path.as_os_str() == "-"
}

impl AtomicOutput {
    pub fn create(path: &Path) -> Result<Self> {
        if is_stdout(path) {
            return Ok(Self {
                path: path.to_path_buf(),
                tmp: PathBuf::new(),
                sink: Some(Sink::Stdout(std::io::BufWriter::with_capacity(
                    1 << 16,
                    std::io::stdout(),
                ))),
            });
        }
        if path.is_dir() {
            bail!("{}: is a directory; give a file name", path.display());
        }
        let name = path
            .file_name()
            .ok_or_else(|| anyhow::anyhow!("{}: not a file path", path.display()))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".partial-{}", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        let file = File::create(&tmp)
            .with_context(|| format!("{}: cannot create the output", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            tmp,
            sink: Some(Sink::File(std::io::BufWriter::with_capacity(1 << 16, file))),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying file, everything buffered written out first (for seeking); standard
    /// output cannot seek.
    pub fn file_mut(&mut self) -> Result<&mut File> {
        let path = self.path.clone();
        match self.sink.as_mut().expect("sink present until commit") {
            Sink::File(w) => {
                w.flush()
                    .with_context(|| format!("{}: cannot write", path.display()))?;
                Ok(w.get_mut())
            }
            Sink::Stdout(_) => bail!("standard output (-o -) cannot hold this format; give a file"),
        }
    }

    /// Flushes, syncs and renames the file onto its path; on failure the temporary file is
    /// removed and the path left as it was. Standard output is flushed.
    pub fn commit(mut self) -> Result<()> {
        let result = match self.sink.take().expect("sink present until commit") {
            Sink::Stdout(mut w) => w.flush(),
            Sink::File(w) => {
                let result = w
                    .into_inner()
                    .map_err(|e| e.into_error())
                    .and_then(|file| file.sync_all())
                    .and_then(|()| std::fs::rename(&self.tmp, &self.path));
                if result.is_err() {
                    let _ = std::fs::remove_file(&self.tmp);
                }
                result
            }
        };
        result.with_context(|| format!("{}: cannot write", self.path.display()))
    }
}

/// Flushes a CSV writer over an [`AtomicOutput`] and commits the file.
pub fn commit_csv(w: csv::Writer<AtomicOutput>) -> Result<()> {
    w.into_inner()
        .map_err(|e| anyhow::anyhow!("{}", e.error()))?
        .commit()
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::File(w) => w.write(buf),
            Sink::Stdout(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::File(w) => w.flush(),
            Sink::Stdout(w) => w.flush(),
        }
    }
}

impl Write for AtomicOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let path = &self.path;
        self.sink
            .as_mut()
            .expect("sink present until commit")
            .write(buf)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let path = &self.path;
        self.sink
            .as_mut()
            .expect("sink present until commit")
            .flush()
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    }
}

impl Drop for AtomicOutput {
    fn drop(&mut self) {
        if let Some(Sink::File(_)) = self.sink.take() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
