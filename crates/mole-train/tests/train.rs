//! The library trainer (`mole_train::train`) from a Burn user's code: the bundled pretrained
//! encoder fine-tuned on ESOL under a new head, its progress collected by a closure observer.

use burn::backend::{Autodiff, Flex};
use mole_metrics::TaskKind;
use mole_model::objective::Objective;
use mole_model::{Checkpoint, CheckpointInfo, HeadConfig, MolE, TaskType};
use mole_train::{train, TrainConfig, TrainData, TrainEvent, TrainJob};

mod common;

use common::{bundled_encoder, esol, scratch_dir};

type B = Autodiff<Flex>;

#[test]
fn library_trainer_fine_tunes_and_reports_every_step() {
    let run_dir = scratch_dir("library");
    let (encoder, mut model_config, vocab) = bundled_encoder();
    model_config.head = Some(HeadConfig {
        task: TaskType::Regression,
        num_tasks: 1,
        num_classes: 1,
        dropout: Some(0.0),
    });
    let examples = esol(&vocab, 96);
    let (train_part, valid) = examples.split_at(64);
    let config = TrainConfig {
        batch_size: 16,
        epochs: 3,
        max_steps: 0,
        lr: 3e-3,
        warmup_fraction: 0.1,
        grad_clip: 1.0,
        adam_beta1: 0.9,
        adam_beta2: 0.999,
        adam_eps: 1e-6,
        checkpoint_every: 4,
        log_every: 2,
        validate_every: 1,
        early_stopping_patience: 0,
        seed: 11,
    };
    let job = TrainJob {
        config,
        run_dir: run_dir.clone(),
        model_config,
        vocab,
        target_vocab: None,
        train: TrainData::InMemory(train_part.to_vec()),
        valid: valid.to_vec(),
        objective: Objective::Supervised {
            kind: TaskKind::Regression,
            num_tasks: 1,
            positive_weights: None,
            standardization: None,
        },
        init: Some(encoder),
        resume: false,
        info: CheckpointInfo::default(),
        interrupt_after: None,
        nodes: None,
        on_stall: None,
    };

    let (mut steps, mut losses, mut validations) = (Vec::new(), Vec::new(), Vec::new());
    let (mut planned, mut finished) = (None, false);
    let mut observer = |event: &TrainEvent<'_>| -> Result<(), mole_train::BoxError> {
        match event {
            TrainEvent::Started(plan) => planned = Some(plan.total_steps),
            TrainEvent::Step { step } => steps.push(*step),
            TrainEvent::Logged(log) => losses.push((log.step, log.loss)),
            TrainEvent::Validated { metrics, .. } => {
                validations.push(metrics["loss"].as_f64().unwrap())
            }
            TrainEvent::Finished { .. } => finished = true,
            _ => {}
        }
        Ok(())
    };
    let device = Default::default();
    let outcome = train::<B, MolE<B>>(job, &[device], None, &mut observer).unwrap();

    // 64 molecules in batches of 16: 4 steps per epoch, 3 epochs
    assert_eq!(planned, Some(12));
    assert_eq!(outcome.steps, 12);
    assert_eq!(steps, (1..=12).collect::<Vec<_>>());
    let logged: Vec<usize> = losses.iter().map(|(step, _)| *step).collect();
    assert_eq!(logged, vec![2, 4, 6, 8, 10, 12]);
    assert_eq!(validations.len(), 3);
    assert!(finished);
    assert!(losses.iter().all(|(_, loss)| loss.is_finite()));
    // a fresh head predicts about 0 for logS values around -3: the validation error falls at
    // every epoch, to under half (batches differ too much for the per-step losses to show it)
    assert!(
        validations.windows(2).all(|w| w[1] < w[0]) && validations[2] < 0.5 * validations[0],
        "validation losses {validations:?}"
    );

    // the checkpoints are complete MolE files that load with their head
    for path in [&outcome.best_checkpoint, &outcome.last_checkpoint] {
        let checkpoint = Checkpoint::<Flex>::load(path, &Default::default()).unwrap();
        assert!(checkpoint.config.head.is_some());
    }
    assert!(run_dir.join("resume/state.json").is_file());
    let _ = std::fs::remove_dir_all(&run_dir);
}
