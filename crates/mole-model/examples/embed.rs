//! CLS embeddings of SMILES from a mole checkpoint, using only the library crates.
//!
//! ```sh
//! cargo run --release -p mole-model --features flex --example embed -- \
//!     runs/esol/best.safetensors "CCO" "c1ccccc1O"
//! ```

use std::error::Error;
use std::path::Path;

use burn::backend::Flex;
use mole_featurize::{collate, featurize, MoleInput};
use mole_model::{BatchTensors, Checkpoint};

pub fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((checkpoint, smiles)) = args.split_first() else {
        return Err("usage: embed <checkpoint> <SMILES>...".into());
    };
    let smiles: Vec<&str> = smiles.iter().map(String::as_str).collect();
    for (s, e) in smiles.iter().zip(run(Path::new(checkpoint), &smiles)?) {
        println!("{s}\t{:?}…", &e[..e.len().min(4)]);
    }
    Ok(())
}

/// One embedding (`hidden` floats) per SMILES, in order.
pub fn run(checkpoint: &Path, smiles: &[&str]) -> Result<Vec<Vec<f32>>, Box<dyn Error>> {
    let device = Default::default();
    let ckpt = Checkpoint::<Flex>::load(checkpoint, &device)?;
    let inputs = smiles
        .iter()
        .map(|s| {
            Ok(MoleInput::from_featurized(
                &featurize(s, &ckpt.vocab)?,
                &ckpt.vocab,
            ))
        })
        .collect::<Result<Vec<_>, Box<dyn Error>>>()?;
    let batch =
        BatchTensors::<Flex>::from_batch(&collate(&inputs.iter().collect::<Vec<_>>()), &device);
    let embeddings = ckpt.model.embed(&batch); // [molecules, hidden]
    let [_, hidden] = embeddings.dims();
    let values = embeddings.into_data().to_vec::<f32>()?;
    Ok(values.chunks(hidden).map(<[f32]>::to_vec).collect())
}
