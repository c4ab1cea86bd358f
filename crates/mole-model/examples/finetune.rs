//! Fine-tunes a pretrained MolE encoder under a new regression head, in a plain Burn loop,
//! using only the library crates.
//!
//! ```sh
//! cargo run --release -p mole-model --features flex --example finetune -- \
//!     runs/pretrain/best.safetensors datasets/esol.csv
//! ```

use std::error::Error;
use std::path::Path;

use burn::backend::{Autodiff, Flex};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::{ElementConversion, Tensor, TensorData};
use mole_featurize::{collate, featurize, MoleInput};
use mole_model::{pretrained_encoder, BatchTensors, HeadConfig, NewHeads, TaskType};

type B = Autodiff<Flex>;

pub fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(checkpoint), Some(table)) = (args.next(), args.next()) else {
        return Err("usage: finetune <pretrained checkpoint> <CSV: smiles,label>".into());
    };
    let losses = run(Path::new(&checkpoint), Path::new(&table), 200, 1e-4)?;
    println!(
        "loss: first step {:.3}, last step {:.3}",
        losses[0],
        losses[losses.len() - 1]
    );
    Ok(())
}

/// Trains `steps` batches of 16 (cycling over the table) and returns each step's loss.
pub fn run(
    checkpoint: &Path,
    table: &Path,
    steps: usize,
    lr: f64,
) -> Result<Vec<f32>, Box<dyn Error>> {
    let device = Default::default();
    // The pretrained encoder (weights, architecture, vocabulary) under a fresh one-task head.
    let head = HeadConfig {
        task: TaskType::Regression,
        num_tasks: 1,
        num_classes: 1,
        dropout: Some(0.1),
    };
    let heads = NewHeads {
        head: Some(head),
        atom_env_head: None,
    };
    let (mut model, vocab) = pretrained_encoder::<B>(checkpoint, heads, &device)?;

    // SMILES in the first column, the label in the second; rows that do not parse are skipped.
    let mut molecules: Vec<(MoleInput, f32)> = Vec::new();
    for line in std::fs::read_to_string(table)?.lines().skip(1) {
        let mut cells = line.split(',');
        let (Some(smiles), Some(label)) = (cells.next(), cells.next()) else {
            continue;
        };
        if let (Ok(molecule), Ok(label)) = (featurize(smiles, &vocab), label.trim().parse()) {
            molecules.push((MoleInput::from_featurized(&molecule, &vocab), label));
        }
    }
    if molecules.is_empty() {
        return Err(format!("{}: no usable rows", table.display()).into());
    }

    let mut optimizer = AdamConfig::new().init();
    let mut losses = Vec::with_capacity(steps);
    for batch in molecules.chunks(16).cycle().take(steps) {
        let inputs: Vec<&MoleInput> = batch.iter().map(|(m, _)| m).collect();
        let tensors = BatchTensors::<B>::from_batch(&collate(&inputs), &device);
        let labels: Vec<f32> = batch.iter().map(|(_, y)| *y).collect();
        // [batch, tasks]; a NaN label would be left out of the loss
        let labels = Tensor::<B, 2>::from_data(TensorData::new(labels, [batch.len(), 1]), &device);
        let output = model.forward_supervised(&tensors, Some(labels), None);
        let loss = output.loss.ok_or("labels were given")?.loss;
        losses.push(loss.clone().into_scalar().elem::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(lr, model, grads);
    }
    Ok(losses)
}
