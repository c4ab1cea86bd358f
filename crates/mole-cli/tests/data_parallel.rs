//! Data-parallel training (`--devices`) on the CPU: replicas on several Flex devices, gradients
//! summed by Burn's collective all-reduce, must follow the same trajectory as one device
//! training on the combined batch.
//!
//! Dropout is off (a model TOML with every dropout probability 0): with dropout on, each device
//! draws its own masks, so the runs are statistically but not numerically equivalent.
//!
//! Tolerances: the two runs differ only in float summation order (per-shard sums combined by the
//! all-reduce instead of one sum over the batch), a relative error of ~1e-7 per step in f32.
//! Losses are compared at 1e-5 relative. Weights after a dozen Adam steps are compared at 1e-4
//! absolute: Adam divides by √v, so a rounding difference in a near-zero gradient can move its
//! weight by up to ~lr (1e-3) in one step; the bound is an order below that, and unrelated runs
//! differ by ~1e-3 or more.

mod common;

use std::path::{Path, PathBuf};

use common::{metrics, mole_ok, repo_root, scratch, small_corpus};

/// The tiny preset with dropout off.
fn tiny_without_dropout(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo_root().join("configs/tiny.toml")).unwrap();
    let text = text
        .replace("hidden_dropout_prob = 0.1", "hidden_dropout_prob = 0.0")
        .replace(
            "attention_probs_dropout_prob = 0.1",
            "attention_probs_dropout_prob = 0.0",
        );
    assert!(!text.contains("dropout_prob = 0.1"));
    let path = dir.join("tiny-no-dropout.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// 12 pretraining steps of `model` on `data` in batches of 15 (odd: the shards differ in size
/// and in masked-atom count), logging every step, a checkpoint every 5; then `extra`.
fn pretrain_args(data: &Path, model: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "pretrain",
        "--data",
        data.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--max-steps",
        "12",
        "--batch-size",
        "15",
        "--out",
        out.to_str().unwrap(),
        "--set",
        "train.log_every=1",
        "--set",
        "train.checkpoint_every=5",
        "--set",
        "data.valid_fraction=0.05",
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn train_losses(run: &Path) -> Vec<(u64, f64)> {
    metrics(run)
        .into_iter()
        .filter(|m| m["kind"] == "train")
        .map(|m| (m["step"].as_u64().unwrap(), m["loss"].as_f64().unwrap()))
        .collect()
}

fn assert_same_trajectory(one: &Path, many: &Path) {
    let a = train_losses(one);
    let b = train_losses(many);
    assert!(a.len() >= 10, "too few steps logged: {}", a.len());
    assert_eq!(
        a.iter().map(|x| x.0).collect::<Vec<_>>(),
        b.iter().map(|x| x.0).collect::<Vec<_>>()
    );
    for ((step, la), (_, lb)) in a.iter().zip(&b) {
        assert!(
            (la - lb).abs() <= 1e-5 * la.abs().max(1.0),
            "step {step}: one device {la} vs data-parallel {lb}"
        );
    }
    // The comparison is not trivially constant: the model learned.
    assert!((a[0].1 - a[a.len() - 1].1).abs() > 0.05);

    let wa = mole_nn::StateDict::load(&one.join("last.safetensors")).unwrap();
    let wb = mole_nn::StateDict::load(&many.join("last.safetensors")).unwrap();
    assert_eq!(wa.tensors.len(), wb.tensors.len());
    let mut compared = 0;
    for (name, ta) in &wa.tensors {
        let tb = &wb.tensors[name];
        assert_eq!(ta.shape, tb.shape, "{name}");
        let worst = ta
            .data
            .iter()
            .zip(&tb.data)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(worst <= 1e-4, "{name}: weights differ by {worst}");
        compared += ta.data.len();
    }
    assert!(compared > 100_000, "only {compared} weights compared");
}

#[test]
fn two_devices_pretrain_like_one_device_with_the_combined_batch() {
    let dir = scratch("dp-pretrain");
    let data = small_corpus(&dir, 400);
    let model = tiny_without_dropout(&dir);
    let args = |out: &Path, extra: &[&str]| pretrain_args(&data, &model, out, extra);
    let run = |out: &Path, extra: &[&str]| {
        mole_ok(&as_strs(&args(out, extra)));
    };
    let one = dir.join("one");
    let two = dir.join("two");
    run(&one, &["--device", "cpu"]);
    run(&two, &["--devices", "cpu,cpu"]);
    assert_same_trajectory(&one, &two);

    // Interrupted after 7 steps (last checkpoint at step 5) and resumed: the data-parallel run
    // continues on the uninterrupted run's trajectory.
    let broken = dir.join("broken");
    let interrupted = common::mole(&as_strs(&args(
        &broken,
        &["--devices", "cpu,cpu", "--interrupt-after", "7"],
    )));
    assert!(
        !interrupted.status.success(),
        "the interrupted run must fail"
    );
    let stderr = String::from_utf8_lossy(&interrupted.stderr);
    assert!(stderr.contains("interrupted after 7 steps"), "{stderr}");
    run(&broken, &["--devices", "cpu,cpu", "--resume"]);
    common::assert_same_trajectory(&two, &broken, 12);
}

#[test]
fn three_devices_finetune_with_missing_labels_and_a_batch_smaller_than_the_devices() {
    let dir = scratch("dp-finetune");
    let model = tiny_without_dropout(&dir);
    // 61 labelled molecules, no held-out split, batches of 6: ten full batches and one of a
    // single molecule, which leaves two of the three devices without molecules.
    let text = std::fs::read_to_string(repo_root().join("datasets/tox21_500.csv")).unwrap();
    let data = dir.join("tox21_61.csv");
    std::fs::write(
        &data,
        text.lines().take(62).collect::<Vec<_>>().join("\n") + "\n",
    )
    .unwrap();
    assert!(text.lines().take(62).any(|l| l.contains(",,")));
    let run = |out: &Path, devices: &[&str]| {
        let mut args = vec![
            "finetune",
            "--data",
            data.to_str().unwrap(),
            "--task",
            "classification",
            "--model",
            model.to_str().unwrap(),
            "--epochs",
            "2",
            "--batch-size",
            "6",
            "--lr",
            "1e-3",
            "--out",
            out.to_str().unwrap(),
            "--set",
            "train.log_every=1",
            "--set",
            "task.head_dropout=0",
            "--set",
            "data.valid_fraction=0",
            "--set",
            "data.test_fraction=0",
        ];
        args.extend_from_slice(devices);
        mole_ok(&args);
    };
    let one = dir.join("one");
    let three = dir.join("three");
    run(&one, &["--device", "cpu"]);
    run(&three, &["--devices", "cpu,cpu,cpu"]);
    assert_eq!(train_losses(&one).len(), 22);
    assert_same_trajectory(&one, &three);
}

#[test]
fn stand_in_shards_add_nothing_to_the_logged_accuracy() {
    // Batches of 2 on 3 devices: every step leaves one device a stand-in molecule at weight 0.
    let dir = scratch("dp-padding");
    let data = small_corpus(&dir, 200);
    let model = tiny_without_dropout(&dir);
    let logged = |out: &Path, devices: &[&str]| -> Vec<(f64, f64)> {
        let mut args = vec![
            "pretrain",
            "--data",
            data.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--max-steps",
            "6",
            "--batch-size",
            "2",
            "--out",
            out.to_str().unwrap(),
            "--set",
            "train.log_every=3",
            "--set",
            "data.valid_fraction=0.05",
        ];
        args.extend_from_slice(devices);
        mole_ok(&args);
        metrics(out)
            .into_iter()
            .filter(|m| m["kind"] == "train")
            .map(|m| {
                (
                    m["loss"].as_f64().unwrap(),
                    m["masked_accuracy"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let one = logged(&dir.join("one"), &["--device", "cpu"]);
    let three = logged(&dir.join("three"), &["--devices", "cpu,cpu,cpu"]);
    assert_eq!(one.len(), 2);
    for ((la, aa), (lb, ab)) in one.iter().zip(&three) {
        assert!(
            (la - lb).abs() <= 1e-5 * la.abs().max(1.0),
            "loss {la} vs {lb}"
        );
        assert_eq!(aa, ab, "masked accuracy");
    }
}

/// `N` TCP ports free on 127.0.0.1 right now (the OS picks them; held together so they differ).
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|k| listeners[k].local_addr().unwrap().port())
}

/// What a node's process left: its exit status and its stderr.
struct NodeRun {
    success: bool,
    stderr: String,
}

/// Runs one `mole` process per node of a two-node group on 127.0.0.1 (each with one CPU
/// device) and waits for both, at most five minutes (a hung group fails the test instead of
/// the CI job); node 0 first.
fn two_nodes(args: &[String]) -> Vec<NodeRun> {
    two_nodes_with(args, |_| Vec::new())
}

/// [`two_nodes`] with arguments for one node only (`per_node(rank)`, after the common ones).
fn two_nodes_with(args: &[String], per_node: impl Fn(usize) -> Vec<String>) -> Vec<NodeRun> {
    let [orchestrator, port0, port1] = free_ports::<3>();
    let logs = scratch("dp-nodes-logs");
    let mut children: Vec<(std::process::Child, PathBuf)> = [(0, port0), (1, port1)]
        .into_iter()
        .map(|(rank, port)| {
            let log = logs.join(format!("node-{rank}.log"));
            let child = std::process::Command::new(env!("CARGO_BIN_EXE_mole"))
                .args(args)
                .args([
                    "--device".to_string(),
                    "cpu".into(),
                    "--nodes".into(),
                    "2".into(),
                    "--node-rank".into(),
                    rank.to_string(),
                    "--master-addr".into(),
                    format!("127.0.0.1:{orchestrator}"),
                    "--node-addr".into(),
                    format!("127.0.0.1:{port}"),
                ])
                .args(per_node(rank))
                .current_dir(repo_root())
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap();
            (child, log)
        })
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let mut statuses = vec![None; children.len()];
    while statuses.iter().any(Option::is_none) {
        for (k, (child, _)) in children.iter_mut().enumerate() {
            if statuses[k].is_none() {
                statuses[k] = child.try_wait().unwrap();
            }
        }
        if std::time::Instant::now() > deadline {
            for (child, _) in &mut children {
                let _ = child.kill();
            }
            panic!("the two-node group did not finish within five minutes");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    children
        .iter()
        .zip(statuses)
        .map(|((_, log), status)| NodeRun {
            success: status.unwrap().success(),
            stderr: std::fs::read_to_string(log).unwrap_or_default(),
        })
        .collect()
}

#[test]
fn two_nodes_on_loopback_pretrain_like_one_process_with_the_combined_batch() {
    let dir = scratch("dp-nodes");
    let data = small_corpus(&dir, 400);
    let model = tiny_without_dropout(&dir);
    let args = |out: &Path, extra: &[&str]| pretrain_args(&data, &model, out, extra);
    let succeeded = |nodes: &[NodeRun]| {
        for (rank, node) in nodes.iter().enumerate() {
            assert!(node.success, "node {rank}: {}", node.stderr);
        }
    };
    let one = dir.join("one");
    let two = dir.join("two");
    mole_ok(&as_strs(&args(&one, &["--device", "cpu"])));
    succeeded(&two_nodes(&args(&two, &[])));
    // node 0 writes the run; node 1 its own copy, on the same trajectory
    assert_same_trajectory(&one, &two);
    assert_same_trajectory(&one, &two.join("node-1"));

    // Both nodes interrupted after 7 steps (last checkpoint at 5) and resumed: the group
    // continues on the uninterrupted run's trajectory.
    let broken = dir.join("broken");
    let interrupted = two_nodes(&args(&broken, &["--interrupt-after", "7"]));
    assert!(interrupted.iter().all(|node| !node.success));
    succeeded(&two_nodes(&args(&broken, &["--resume"])));
    common::assert_same_trajectory(&two, &broken, 12);

    // Node 1 lost its checkpoint and starts over while node 0 resumes at step 5: both refuse
    // to mix gradients of different steps.
    let split = dir.join("split");
    two_nodes(&args(&split, &["--interrupt-after", "7"]));
    std::fs::remove_dir_all(split.join("node-1/resume")).unwrap();
    let outputs = two_nodes(&args(&split, &["--resume"]));
    for (rank, node) in outputs.iter().enumerate() {
        assert!(!node.success, "node {rank} must fail");
        assert!(
            node.stderr.contains("not at the same step"),
            "node {rank}: {}",
            node.stderr
        );
    }

    // Node 1 stops after 3 steps (an error, as a crash would): node 0 is not left waiting
    // forever; it gives up after --node-timeout seconds without a step.
    let orphan = dir.join("orphan");
    let started = std::time::Instant::now();
    let outputs = two_nodes_with(&args(&orphan, &["--node-timeout", "5"]), |rank| {
        if rank == 1 {
            vec!["--interrupt-after".into(), "3".into()]
        } else {
            Vec::new()
        }
    });
    assert!(!outputs[1].success);
    assert!(!outputs[0].success, "node 0 must give up");
    assert!(
        outputs[0]
            .stderr
            .contains("another node has failed or stopped"),
        "{}",
        outputs[0].stderr
    );
    assert!(started.elapsed().as_secs() < 120);
}
