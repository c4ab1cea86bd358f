//! The `featurize` and `vocab` subcommands.

use super::*;

#[derive(Args)]
pub struct FeaturizeArgs {
    /// Input: .smi/.txt (SMILES [name] per line), .csv/.tsv with a `smiles` column, or an SD
    /// file (.sdf/.sd/.mol, V2000 or V3000); .gz ok; or .parquet.
    pub input: PathBuf,
    /// Output JSON Lines file (default: standard output).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Radius-0 vocabulary JSON for `tokens` (default: the bundled vocabulary).
    #[arg(long)]
    pub vocab: Option<PathBuf>,
    /// Molecules with more heavy atoms are rejected (a line with the reason): the distance
    /// matrix grows with the square of the atom count.
    #[arg(long, default_value_t = mole_featurize::DEFAULT_MAX_ATOMS, value_parser = crate::at_least_one)]
    pub max_atoms: usize,
}

/// One output line: the featurisation, or the reason the row was rejected.
#[derive(serde::Serialize)]
#[serde(untagged)]
pub(crate) enum FeaturizeLine {
    Ok(mole_featurize::FeaturizedMolecule),
    Err {
        smiles: String,
        line: usize,
        error: String,
    },
}

/// Checks before any output is created: the input can be read, and the output is neither the
/// input nor one of the files the command reads (`-i x -o x` would destroy the input; a typo in
/// `-i` must not truncate an existing result).
pub(crate) fn check_output(input: &Path, output: &Path, also_read: &[&Path]) -> Result<()> {
    readable(input)?;
    if let Ok(out) = output.canonicalize() {
        for read in std::iter::once(input).chain(also_read.iter().copied()) {
            if read.canonicalize().is_ok_and(|r| r == out) {
                bail!(
                    "{}: the output is also an input of this command; choose another output path",
                    output.display()
                );
            }
        }
    }
    Ok(())
}

/// Fails, naming `path`, when it cannot be opened as a file (checked before a command writes
/// anything).
pub(crate) fn readable(path: &Path) -> Result<()> {
    let file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot read", path.display()))?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        bail!("{}: is a directory, not a data file", path.display());
    }
    Ok(())
}

/// The first error of the file itself among a chunk of records (truncated gzip, I/O, binary
/// data), taken out of the chunk; row errors (a line that is not UTF-8) stay as rows.
pub(crate) fn file_error_of(chunk: &mut Vec<Result<MoleculeRecord, IoError>>) -> Result<()> {
    match chunk
        .iter()
        .position(|r| r.as_ref().is_err_and(|e| !e.is_row_error()))
    {
        Some(at) => match chunk.swap_remove(at) {
            Err(e) => Err(e.into()),
            Ok(_) => unreachable!("the position of an error"),
        },
        None => Ok(()),
    }
}

pub fn featurize(args: FeaturizeArgs) -> Result<()> {
    if let Some(output) = &args.output {
        check_output(&args.input, output, &[])?;
    }
    let vocab = load_vocab(args.vocab.as_deref())?;
    let reader = read_molecules(&args.input)?;
    let mut file_out = args
        .output
        .as_deref()
        .map(data::AtomicOutput::create)
        .transpose()?;
    let mut stdout_out;
    let out: &mut dyn Write = match file_out.as_mut() {
        Some(f) => f,
        None => {
            stdout_out = BufWriter::new(std::io::stdout().lock());
            &mut stdout_out
        }
    };
    let bar = data::progress_spinner("{spinner} featurize {pos} molecules ({per_sec})");
    let (mut rows, mut ok, mut rejected) = (0usize, 0usize, 0usize);
    // Chunks keep memory bounded on large files while rayon featurises each chunk in parallel.
    let mut chunk = Vec::with_capacity(8192);
    let mut reader = reader.peekable();
    loop {
        chunk.clear();
        while chunk.len() < 8192 {
            match reader.next() {
                Some(r) => chunk.push(r),
                None => break,
            }
        }
        if chunk.is_empty() {
            break;
        }
        // a file-level error (truncated gzip, I/O) fails the command: no partial output
        if let Err(e) = file_error_of(&mut chunk) {
            bar.finish_and_clear();
            return Err(e);
        }
        let lines: Vec<FeaturizeLine> = chunk
            .par_iter()
            .map(|record| match record {
                Ok(r) => match featurize_with_limit(&r.smiles, &vocab, args.max_atoms) {
                    Ok(f) => FeaturizeLine::Ok(f),
                    Err(e) => FeaturizeLine::Err {
                        smiles: r.smiles.clone(),
                        line: r.line,
                        error: e.to_string(),
                    },
                },
                // only row errors are left (see `file_error_of`)
                Err(e) => FeaturizeLine::Err {
                    smiles: String::new(),
                    line: e.line(),
                    error: e.reason(),
                },
            })
            .collect();
        for l in &lines {
            rows += 1;
            match l {
                FeaturizeLine::Ok(_) => ok += 1,
                FeaturizeLine::Err { line, error, .. } => {
                    rejected += 1;
                    if rejected <= 5 {
                        tracing::warn!("{}:{line}: {error}", args.input.display());
                    }
                }
            }
            serde_json::to_writer(&mut *out, l)?;
            out.write_all(b"\n")?;
        }
        bar.set_position(rows as u64);
    }
    out.flush()?;
    if let Some(f) = file_out {
        f.commit()?;
    }
    bar.finish_and_clear();
    eprintln!("featurize: {rows} rows, {ok} ok, {rejected} rejected");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// vocab

#[derive(Subcommand)]
pub enum VocabCommand {
    /// Count Morgan identifiers over a SMILES corpus and keep those seen at least --min-count times.
    Build {
        /// Molecule corpora (.smi/.txt/.csv/.tsv/.sdf, optionally .gz, or .parquet); counts are
        /// summed over all.
        #[arg(required = true)]
        corpus: Vec<PathBuf>,
        /// 0 for the input vocabulary, 2 for pretraining targets.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=2))]
        radius: u32,
        #[arg(long, default_value_t = 1)]
        min_count: u64,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Print a vocabulary's size and special tokens.
    Show { vocab: Option<PathBuf> },
}

/// Molecules `mole vocab build` featurises at a time.
pub(crate) const VOCAB_CHUNK: usize = 16_384;

pub fn vocab(cmd: VocabCommand) -> Result<()> {
    match cmd {
        VocabCommand::Build {
            corpus,
            radius,
            min_count,
            output,
        } => {
            // one streaming pass: chunks of molecules counted in parallel, only the counts
            // kept (memory: the distinct identifiers, whatever the corpus size)
            let mut files = Vec::new();
            for c in &corpus {
                files.extend(mole_train::data::stream::expand(c)?);
            }
            let bar = data::progress_spinner("{spinner} counted {pos} molecules ({per_sec})");
            let mut counts: std::collections::HashMap<u32, u64> = std::collections::HashMap::new();
            let (mut molecules, mut failed) = (0usize, 0usize);
            for file in &files {
                let mut records = read_molecules(file)?;
                loop {
                    let mut chunk: Vec<_> = records.by_ref().take(VOCAB_CHUNK).collect();
                    if chunk.is_empty() {
                        break;
                    }
                    // a damaged file (truncated gzip, I/O error) fails, naming it
                    file_error_of(&mut chunk)?;
                    let ids: Vec<Option<Vec<u32>>> = chunk
                        .par_iter()
                        .map(|r| {
                            let r = r.as_ref().ok()?;
                            let mol = mole_featurize::parse_smiles(&r.smiles).ok()?;
                            let envs = mole_featurize::morgan_environments(&mol, radius as usize);
                            Some(envs[radius as usize].iter().flatten().copied().collect())
                        })
                        .collect();
                    for found in ids {
                        match found {
                            Some(ids) => {
                                molecules += 1;
                                for id in ids {
                                    *counts.entry(id).or_insert(0u64) += 1;
                                }
                            }
                            None => failed += 1,
                        }
                    }
                    bar.inc(chunk.len() as u64);
                }
            }
            bar.finish_and_clear();
            let distinct = counts.len();
            let vocab = Vocabulary::build_from_counts(counts, min_count).with_radius(radius);
            vocab.save(&output)?;
            eprintln!(
                "vocab: {distinct} distinct radius-{radius} identifiers in {molecules} molecules \
                 from {} file(s) ({failed} unparsable rows); kept {} with count >= {min_count}; \
                 vocab_size {} → {}",
                files.len(),
                vocab.num_identifiers(),
                vocab.vocab_size(),
                output.display()
            );
            Ok(())
        }
        VocabCommand::Show { vocab } => {
            let v = load_vocab(vocab.as_deref())?;
            println!(
                "radius {}: {} identifiers, vocab_size {} (PAD {}, MASK {}, UNK {}, CLS {})",
                v.radius,
                v.num_identifiers(),
                v.vocab_size(),
                v.pad_id(),
                v.mask_id(),
                v.unk_id(),
                v.cls_id()
            );
            Ok(())
        }
    }
}
