//! `import`, `export` and `info`.

use super::*;

#[derive(Args)]
pub struct ImportArgs {
    /// Original weights: a PyTorch Lightning checkpoint (.ckpt), a `torch.save` state dict
    /// (.pt/.pth, any float dtype) or safetensors; repeat for several files whose union is the
    /// state_dict. No Python needed.
    #[arg(long = "weights", required = true)]
    pub weights: Vec<PathBuf>,
    /// Encoder config: the original's hydra YAML (`config_file.yaml` of a run), a .ckpt whose
    /// hyper-parameters hold it, or JSON/TOML with the original deberta_config fields (or a JSON
    /// holding `model_config_resolved` / `deberta_config`). Default: the hyper-parameters of
    /// the first .ckpt in --weights.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Vocabulary JSON the weights were trained with (default: bundled).
    #[arg(long)]
    pub vocab: Option<PathBuf>,
    /// Task of the prediction head, when the weights have one.
    #[arg(long, value_enum, default_value_t = TaskType::Regression)]
    pub task: TaskType,
    #[arg(long, default_value_t = 1)]
    pub num_classes: usize,
    #[arg(short, long)]
    pub output: PathBuf,
}

/// Whether `path` is a PyTorch (zip) file rather than safetensors.
pub(crate) fn is_torch_file(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && magic == *b"PK\x03\x04"
}

/// The `deberta_config` a Lightning checkpoint's hyper-parameters hold.
pub(crate) fn deberta_config_of_checkpoint(
    hyper_parameters: Option<serde_json::Value>,
    path: &Path,
) -> Result<mole_nn::DebertaConfig> {
    let hp = hyper_parameters.with_context(|| {
        format!(
            "{}: no hyper_parameters (a plain state dict); pass --config with the model config",
            path.display()
        )
    })?;
    let deberta = hp
        .pointer("/model/deberta_config")
        .or_else(|| hp.get("deberta_config"))
        .filter(|v| v.is_object())
        .with_context(|| {
            format!(
                "{}: hyper_parameters hold no model.deberta_config; pass --config",
                path.display()
            )
        })?;
    serde_json::from_value(deberta.clone())
        .with_context(|| format!("{}: not a DeBERTa config", path.display()))
}

/// The `deberta_config:` block of the original's hydra YAML (a mapping of scalars, the only
/// part of the run config the model needs), as JSON.
pub(crate) fn deberta_config_of_yaml(text: &str, path: &Path) -> Result<serde_json::Value> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == "deberta_config:")
        .with_context(|| format!("{}: no `deberta_config:` block", path.display()))?;
    let indent = |l: &str| l.len() - l.trim_start().len();
    let base = indent(lines[start]);
    let mut map = serde_json::Map::new();
    for line in &lines[start + 1..] {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if indent(line) <= base {
            break;
        }
        let Some((key, value)) = line.trim().split_once(':') else {
            continue;
        };
        let value = value.trim().trim_matches(|c| c == '\'' || c == '"');
        let parsed = match value {
            "null" | "~" | "" => serde_json::Value::Null,
            "true" | "True" => serde_json::Value::Bool(true),
            "false" | "False" => serde_json::Value::Bool(false),
            v => v
                .parse::<i64>()
                .map(serde_json::Value::from)
                .or_else(|_| v.parse::<f64>().map(serde_json::Value::from))
                .unwrap_or_else(|_| serde_json::Value::String(v.to_string())),
        };
        map.insert(key.trim().to_string(), parsed);
    }
    Ok(serde_json::Value::Object(map))
}

pub(crate) fn read_encoder_config(path: &Path) -> Result<mole_nn::DebertaConfig> {
    if is_torch_file(path) {
        let torch = mole_nn::TorchFile::open(path)?;
        deberta_config_of_checkpoint(torch.hyper_parameters(), path)
    } else {
        read_encoder_config_text(path)
    }
}

pub(crate) fn read_encoder_config_text(path: &Path) -> Result<mole_nn::DebertaConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let is_yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
    let cfg: mole_nn::DebertaConfig = if is_yaml {
        serde_json::from_value(deberta_config_of_yaml(&text, path)?)
            .with_context(|| format!("{}: not a DeBERTa config", path.display()))?
    } else if path.extension().is_some_and(|e| e == "json") {
        let v: serde_json::Value = serde_json::from_str(&text)?;
        let inner = v
            .get("model_config_resolved")
            .or_else(|| v.get("deberta_config"))
            .cloned()
            .unwrap_or(v);
        serde_json::from_value(inner)
            .with_context(|| format!("{}: not a DeBERTa config", path.display()))?
    } else {
        toml::from_str(&text)
            .with_context(|| format!("{}: not a DeBERTa config", path.display()))?
    };
    Ok(cfg)
}

pub fn import(args: ImportArgs) -> Result<()> {
    let vocab = load_vocab(args.vocab.as_deref())?;
    // each weights file is read once; the first PyTorch file's hyper-parameters are kept in
    // case they have to give the config
    let mut dict = StateDict::default();
    let mut first_torch: Option<(&Path, Option<serde_json::Value>)> = None;
    for w in &args.weights {
        if is_torch_file(w) {
            let torch = mole_nn::TorchFile::open(w)?;
            dict.extend(torch.state_dict()?);
            if first_torch.is_none() {
                first_torch = Some((w, torch.hyper_parameters()));
            }
        } else {
            dict.extend(StateDict::load(w)?);
        }
    }
    let mut encoder = match (&args.config, first_torch) {
        (Some(path), _) => read_encoder_config(path)?,
        (None, Some((path, hyper_parameters))) => {
            deberta_config_of_checkpoint(hyper_parameters, path)?
        }
        (None, None) => bail!("--config is needed: no .ckpt among --weights to read it from"),
    };
    encoder.vocab_size = vocab.vocab_size();
    encoder.validate()?;
    if dict.tensors.keys().all(|k| k.starts_with("model.")) {
        dict = dict.strip_prefix("model.");
    }
    if let Some(table) = dict.tensors.get("MolE.embeddings.word_embeddings.weight") {
        let rows = table.shape.first().copied().unwrap_or(0);
        if rows != vocab.vocab_size() {
            bail!(
                "the weights' token table has {rows} rows but the vocabulary has {} tokens: pass \
                 --vocab with the vocabulary the weights were trained with (the original MolE's \
                 207 atom environments give 211 tokens)",
                vocab.vocab_size()
            );
        }
    }
    let head = dict
        .tensors
        .get("prediction_head.classifier.weight")
        .map(|t| {
            let outputs = t.shape[0];
            HeadConfig {
                task: args.task,
                num_tasks: outputs / args.num_classes.max(1),
                num_classes: args.num_classes,
                dropout: None,
            }
        });
    let config = MolEConfig {
        encoder,
        head,
        atom_env_head: None,
    };
    type I = burn::backend::Flex;
    let device = Default::default();
    let model = mole_model::load_state_dict(MolE::<I>::new(&config, &device), &dict)?;
    Checkpoint {
        config,
        model,
        vocab,
        target_vocab: None,
        info: mole_model::CheckpointInfo {
            imported_from: args
                .weights
                .iter()
                .map(|w| w.display().to_string())
                .collect(),
            ..Default::default()
        },
    }
    .save(&args.output)?;
    eprintln!(
        "import: {} tensors → {}",
        dict.tensors.len(),
        args.output.display()
    );
    Ok(())
}

#[derive(Args)]
pub struct ExportArgs {
    /// A mole checkpoint (or a bundled model's name).
    #[arg(value_parser = crate::checkpoint_arg)]
    pub checkpoint: PathBuf,
    /// Output safetensors, tensors under the original PyTorch names (`MolE.*`,
    /// `prediction_head.*`).
    #[arg(short, long)]
    pub output: PathBuf,
    /// pytorch: the tensors alone, as the original's `state_dict`; mole: a mole checkpoint
    /// (the tensors plus mole's metadata: configuration, vocabulary, how it was made).
    #[arg(long, value_enum, default_value = "pytorch")]
    pub format: ExportFormat,
    /// Keep the encoder only: drop the prediction and radius-2 heads (and the target
    /// vocabulary), as for a model shared for embeddings and fine-tuning.
    #[arg(long)]
    pub encoder_only: bool,
}

/// What `mole export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Pytorch,
    Mole,
}

pub fn export(args: ExportArgs) -> Result<()> {
    let (_, _, mut dict) = read_checkpoint_parts(&args.checkpoint)?;
    if args.encoder_only {
        dict = mole_model::encoder_only(dict, &args.checkpoint.display().to_string())?;
    }
    if args.format == ExportFormat::Pytorch {
        dict.metadata.clear();
    }
    dict.save(&args.output)?;
    eprintln!(
        "export: {} tensors → {}",
        dict.tensors.len(),
        args.output.display()
    );
    Ok(())
}

pub fn info() -> Result<()> {
    println!("mole {}", env!("CARGO_PKG_VERSION"));
    println!("compiled backends: {}", compiled_backends().join(", "));
    println!("default device: {}", default_device());
    println!("cpu threads: {}", rayon::current_num_threads());
    println!(
        "bundled models (--checkpoint NAME; cache: {}):",
        mole_model::zoo::cache_dir().display()
    );
    for m in mole_model::zoo::BUNDLED_MODELS {
        println!("  {} (version {}): {}", m.name, m.version, m.summary);
    }
    for spec in [
        DeviceSpec::Cpu,
        DeviceSpec::Cuda(0),
        DeviceSpec::Vulkan(0),
        DeviceSpec::Wgpu(0),
        DeviceSpec::Metal,
    ] {
        let probe = std::panic::catch_unwind(|| {
            with_backend!(spec, |B, device| {
                let t = Tensor::<B, 1>::from_floats([1.0, 2.0, 3.0], &device);
                let s: f32 = burn::tensor::ElementConversion::elem(t.sum().into_scalar());
                Ok::<_, anyhow::Error>(s)
            })
        });
        match probe {
            Ok(Ok(v)) if (v - 6.0).abs() < 1e-6 => println!("  {spec}: available"),
            Ok(Ok(v)) => println!("  {spec}: wrong result {v}"),
            Ok(Err(e)) if e.to_string().contains("cargo feature") => {}
            Ok(Err(e)) => println!("  {spec}: unavailable ({e})"),
            Err(_) => println!("  {spec}: unavailable (device initialisation failed)"),
        }
    }
    Ok(())
}
