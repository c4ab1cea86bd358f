//! Pretrains MolE from scratch on a SMILES file (stage 1: masked atom-environment prediction
//! with the attention-span mask), in a plain Burn loop, using only the library crates.
//!
//! ```sh
//! cargo run --release -p mole-model --features flex --example pretrain -- \
//!     datasets/moses_30k.smi.gz crates/mole-cli/assets/vocab_radius0.json
//! ```

use std::error::Error;
use std::path::Path;

use burn::backend::{Autodiff, Flex};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::ElementConversion;
use mole_featurize::{featurize, read_molecules, Vocabulary};
use mole_model::objective::{assign_targets, count_targets, Example, HostBatch, Objective};
use mole_model::{AtomEnvHeadConfig, Model, MolE, MolEConfig};
use mole_nn::DebertaConfig;
use rand::rngs::StdRng;
use rand::SeedableRng;

type B = Autodiff<Flex>;

pub fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(corpus), Some(vocab)) = (args.next(), args.next()) else {
        return Err("usage: pretrain <molecules: .smi/.csv/.sdf[.gz]> <vocabulary JSON>".into());
    };
    let vocab = Vocabulary::from_json_file(&vocab)?;
    let losses = run(Path::new(&corpus), &vocab, 2_000, 200, 1e-3)?;
    println!(
        "masked-atom loss: first step {:.3}, last step {:.3}",
        losses[0],
        losses[losses.len() - 1]
    );
    Ok(())
}

/// Reads the first `molecules` of `corpus`, then trains `steps` batches of 32 (cycling over
/// them) and returns each step's loss.
pub fn run(
    corpus: &Path,
    vocab: &Vocabulary,
    molecules: usize,
    steps: usize,
    lr: f64,
) -> Result<Vec<f32>, Box<dyn Error>> {
    let device = Default::default();
    let mut examples = Vec::new();
    for record in read_molecules(corpus)?.take(molecules) {
        // rows that do not parse are skipped
        if let Ok(molecule) = featurize(&record?.smiles, vocab) {
            if molecule.num_atoms > 0 {
                examples.push(Example::unlabelled(&molecule, vocab));
            }
        }
    }
    if examples.is_empty() {
        return Err(format!("{}: no usable molecules", corpus.display()).into());
    }
    // The targets: radius-2 environments seen at least twice get a class; the rest share UNK.
    let targets = Vocabulary::build_from_counts(count_targets(examples.iter()), 2).with_radius(2);
    assign_targets(&mut examples, &targets);

    // tiny: 2 layers, hidden 64, 4 heads
    let config = MolEConfig {
        encoder: DebertaConfig::new(vocab.vocab_size(), 64, 2, 4, 256),
        head: None,
        atom_env_head: Some(AtomEnvHeadConfig {
            num_targets: targets.vocab_size(),
        }),
    };
    let mut model = MolE::<B>::new(&config, &device);
    // 15 % of each molecule's atoms masked (80 % MASK, 10 % random, 10 % kept); a masked atom
    // does not see atoms 2-3 bonds away, whose environments overlap its own
    let objective = Objective::AtomEnv {
        mask_prob: 0.15,
        span: 3,
    };
    let mut rng = StdRng::seed_from_u64(0);
    let mut optimizer = AdamConfig::new().with_epsilon(1e-6).init();
    let mut losses = Vec::with_capacity(steps);
    for batch in examples.chunks(32).cycle().take(steps) {
        let batch: Vec<&Example> = batch.iter().collect();
        let batch = HostBatch::prepare(&batch, &objective, vocab, &mut rng);
        let loss = model.loss(batch, &device)?.loss;
        losses.push(loss.clone().into_scalar().elem::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(lr, model, grads);
    }
    Ok(losses)
}
