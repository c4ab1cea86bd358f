//! MolE trains under burn-train's `Learner` like any Burn model: the bundled pretrained encoder
//! under a new regression head, fine-tuned on ESOL for a few epochs through `SupervisedTraining`
//! with Burn's data loaders and MolE's `Batcher`.

use burn::backend::{Autodiff, Flex};
use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataset::InMemDataset;
use burn::module::AutodiffModule;
use burn::tensor::backend::Backend;
use burn::train::metric::LossMetric;
use burn::train::{Learner, SupervisedTraining};
use mole_featurize::Vocabulary;
use mole_metrics::TaskKind;
use mole_model::learner::ObjectiveBatcher;
use mole_model::objective::{Example, Objective};
use mole_model::training::FusedAdam;
use mole_model::{pretrained_encoder, zoo, HeadConfig, MolE, NewHeads, TaskType};

mod common;

use common::{esol, scratch_dir};

type B = Autodiff<Flex>;

/// Mean loss of `model` over `examples` in eval mode.
fn mean_loss<I: Backend>(
    model: &MolE<I>,
    examples: &[Example],
    objective: &Objective,
    vocab: &Vocabulary,
) -> f64 {
    let metrics = mole_train::evaluate(
        model,
        examples,
        objective,
        vocab,
        16,
        0,
        &Default::default(),
    )
    .expect("MolE has a head for the objective");
    metrics["loss"].as_f64().expect("the loss is a number")
}

#[test]
fn mole_trains_under_burn_learner() {
    let dir = scratch_dir("learner");
    let device = Default::default();
    let bundled = zoo::bundled_model("mole-tiny-zinc-chembl").expect("bundled model");
    let checkpoint = bundled.path_in(&dir).unwrap();
    let heads = NewHeads {
        head: Some(HeadConfig {
            task: TaskType::Regression,
            num_tasks: 1,
            num_classes: 1,
            dropout: Some(0.0),
        }),
        atom_env_head: None,
    };
    let (model, vocab) = pretrained_encoder::<B>(&checkpoint, heads, &device).unwrap();
    let examples = esol(&vocab, 96);
    assert_eq!(examples.len(), 96);
    let (train, valid) = examples.split_at(64);
    let objective = Objective::Supervised {
        kind: TaskKind::Regression,
        num_tasks: 1,
        positive_weights: None,
        standardization: None,
    };
    let before = mean_loss(&model.valid(), train, &objective, &vocab);

    let batcher = || ObjectiveBatcher::new(objective.clone(), vocab.clone(), 7);
    let train_loader = DataLoaderBuilder::new(batcher())
        .batch_size(16)
        .shuffle(7)
        .num_workers(1)
        .build(InMemDataset::new(train.to_vec()));
    let valid_loader = DataLoaderBuilder::new(batcher())
        .batch_size(16)
        .num_workers(1)
        .build(InMemDataset::new(valid.to_vec()));
    let training = SupervisedTraining::new(dir.join("learner"), train_loader, valid_loader)
        .metric_train_numeric(LossMetric::new())
        .metric_valid_numeric(LossMetric::new())
        .num_epochs(4);
    let optimizer = FusedAdam::new(0.9, 0.999, 1e-6).init::<B, MolE<B>>();
    let result = training.launch(Learner::new(model, optimizer, 3e-3));

    // 16 steps of Adam on a regression the pretrained encoder has not seen: the squared error
    // (logS values around -3, a fresh head near 0) must fall well below its start.
    let after = mean_loss(&result.model, train, &objective, &vocab);
    assert!(
        after < 0.5 * before,
        "training loss {before} before, {after} after the Learner's epochs"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
