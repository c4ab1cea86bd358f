//! MolE: atom-environment embeddings + DeBERTa encoder, with a supervised head and/or the
//! masked atom-environment head used for self-supervised pretraining.

use burn::module::Module;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{backend::Backend, Bool, DType, Int, Tensor};
use mole_nn::common_init::{layer_norm, linear};
use mole_nn::precision;
use mole_nn::{
    AttentionMask, BertEmbeddings, BertEncoder, DebertaConfig, EncoderOutput, EncoderRequest,
    TaskPredictionHead,
};
use serde::{Deserialize, Serialize};

use crate::batch::BatchTensors;
use crate::loss::{
    cross_entropy, masked_bce_with_logits, masked_cross_entropy, masked_mse, MaskedLoss, TaskType,
};

/// The supervised head's task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadConfig {
    pub task: TaskType,
    pub num_tasks: usize,
    /// 1 for regression and binary classification (one logit per task); > 1 for softmax
    /// classification with that many classes per task.
    #[serde(default = "one")]
    pub num_classes: usize,
    /// Dropout inside the head (the original's `dropout`; `None` there means the encoder's
    /// hidden dropout).
    #[serde(default)]
    pub dropout: Option<f64>,
}

fn one() -> usize {
    1
}

impl HeadConfig {
    pub fn outputs(&self) -> usize {
        self.num_tasks * self.num_classes
    }
}

/// The masked atom-environment head: predicts each masked atom's radius-2 environment token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AtomEnvHeadConfig {
    /// Size of the radius-2 target vocabulary.
    pub num_targets: usize,
}

/// Everything needed to build a [`MolE`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MolEConfig {
    pub encoder: DebertaConfig,
    #[serde(default)]
    pub head: Option<HeadConfig>,
    #[serde(default)]
    pub atom_env_head: Option<AtomEnvHeadConfig>,
}

impl MolEConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> MolE<B> {
        MolE::new(self, device)
    }

    /// `encoder` with a supervised head of `num_tasks` outputs for `task` (one logit per task,
    /// the head's dropout = the encoder's hidden dropout) and no pretraining head.
    pub fn supervised(encoder: DebertaConfig, task: TaskType, num_tasks: usize) -> Self {
        Self {
            encoder,
            head: Some(HeadConfig {
                task,
                num_tasks,
                num_classes: 1,
                dropout: None,
            }),
            atom_env_head: None,
        }
    }
}

/// `MolE` in the original: token embeddings followed by the encoder.
#[derive(Module, Debug)]
pub struct AtomEnvEmbeddings<B: Backend> {
    pub embeddings: BertEmbeddings<B>,
    pub encoder: BertEncoder<B>,
    /// Dtype of the encoder's activations (mixed precision: bf16/f16 products over f32
    /// parameters); `None` computes in the parameters' dtype. Not saved with the weights.
    #[module(skip)]
    pub compute_dtype: Option<DType>,
}

impl<B: Backend> AtomEnvEmbeddings<B> {
    pub fn new(config: &DebertaConfig, device: &B::Device) -> Self {
        Self {
            embeddings: BertEmbeddings::new(config, device),
            encoder: BertEncoder::new(config, device),
            compute_dtype: None,
        }
    }

    /// Encodes a batch; `pair_mask [batch, seq, seq]` replaces the token mask for attention when
    /// given (pretraining's attention-span mask).
    pub fn forward(
        &self,
        batch: &BatchTensors<B>,
        pair_mask: Option<Tensor<B, 3, Bool>>,
        request: &EncoderRequest,
    ) -> (Tensor<B, 3>, EncoderOutput<B>) {
        let mut embedded = self
            .embeddings
            .forward(batch.input_ids.clone(), batch.input_mask.clone().float());
        if let Some(dtype) = self.compute_dtype {
            embedded = precision::cast_to(embedded, dtype);
        }
        let mask = match pair_mask {
            Some(m) => AttentionMask::Pairs(m),
            None => AttentionMask::Tokens(batch.input_mask.clone()),
        };
        let request = EncoderRequest {
            relative_rows: Some(batch.max_relative_pos + 1),
            ..request.clone()
        };
        let out = self.encoder.forward(
            embedded.clone(),
            &mask,
            batch.relative_pos.clone(),
            &request,
        );
        (embedded, out)
    }
}

/// BERT-style language-model head: dense → GELU → LayerNorm → decoder.
#[derive(Module, Debug)]
pub struct AtomEnvHead<B: Backend> {
    pub dense: Linear<B>,
    pub layer_norm: LayerNorm<B>,
    pub decoder: Linear<B>,
    /// The LayerNorm's epsilon (Burn's `LayerNorm` does not expose its own).
    #[module(skip)]
    pub layer_norm_eps: f64,
}

impl<B: Backend> AtomEnvHead<B> {
    pub fn new(encoder: &DebertaConfig, num_targets: usize, device: &B::Device) -> Self {
        let h = encoder.hidden_size;
        let std = encoder.initializer_range;
        Self {
            dense: linear(h, h, std, device),
            layer_norm: layer_norm(h, encoder.layer_norm_eps, device),
            decoder: linear(h, num_targets, std, device),
            layer_norm_eps: encoder.layer_norm_eps,
        }
    }

    /// `[atoms, hidden]` → `[atoms, num_targets]`
    pub fn forward(&self, states: Tensor<B, 2>) -> Tensor<B, 2> {
        let x = precision::linear_gelu(&self.dense, states);
        let x = precision::layer_norm(&self.layer_norm, self.layer_norm_eps, x);
        precision::linear(&self.decoder, x)
    }
}

/// The full model. Parameter names follow the original `Supervised` module: `MolE.*`,
/// `prediction_head.*`; the pretraining head (never released by the original) is `atom_env_head.*`.
#[derive(Module, Debug)]
pub struct MolE<B: Backend> {
    pub mole: AtomEnvEmbeddings<B>,
    pub prediction_head: Option<TaskPredictionHead<B>>,
    pub atom_env_head: Option<AtomEnvHead<B>>,
    pub num_tasks: usize,
    pub num_classes: usize,
    pub classification: bool,
}

/// Supervised outputs of one batch.
pub struct SupervisedOutput<B: Backend> {
    /// `[batch, num_tasks * num_classes]`
    pub logits: Tensor<B, 2>,
    /// Present when labels were given.
    pub loss: Option<MaskedLoss<B>>,
}

impl<B: Backend> MolE<B> {
    pub fn new(config: &MolEConfig, device: &B::Device) -> Self {
        let enc = &config.encoder;
        Self {
            mole: AtomEnvEmbeddings::new(enc, device),
            prediction_head: config.head.as_ref().map(|h| {
                TaskPredictionHead::new(
                    enc.hidden_size,
                    h.outputs(),
                    h.dropout.unwrap_or(enc.hidden_dropout_prob),
                    enc.initializer_range,
                    device,
                )
            }),
            atom_env_head: config
                .atom_env_head
                .as_ref()
                .map(|h| AtomEnvHead::new(enc, h.num_targets, device)),
            num_tasks: config.head.as_ref().map_or(0, |h| h.num_tasks),
            num_classes: config.head.as_ref().map_or(1, |h| h.num_classes),
            classification: config
                .head
                .as_ref()
                .is_some_and(|h| h.task == TaskType::Classification),
        }
    }

    /// The model computing in `dtype` (bf16 or f16 mixed precision; `None` or f32: the
    /// parameters' dtype). Parameters are untouched: keep them in f32 for training, so that
    /// small updates are not rounded away and the optimiser state keeps its range.
    pub fn with_compute_dtype(mut self, dtype: Option<DType>) -> Self {
        self.mole.compute_dtype = dtype.filter(|d| *d != DType::F32);
        self
    }

    /// The activations' dtype set by [`MolE::with_compute_dtype`], if any.
    pub fn compute_dtype(&self) -> Option<DType> {
        self.mole.compute_dtype
    }

    /// CLS embedding: `[batch, hidden]`.
    pub fn embed(&self, batch: &BatchTensors<B>) -> Tensor<B, 2> {
        let (_, out) = self.mole.forward(batch, None, &EncoderRequest::default());
        cls_state(out.last_hidden)
    }

    /// Supervised head on the CLS state. `labels [batch, num_tasks]` (class index per task for
    /// softmax classification), NaN = missing; `weights [batch, num_tasks]` per-entry loss weights.
    ///
    /// # Panics
    /// When the model has no supervised head.
    pub fn forward_supervised(
        &self,
        batch: &BatchTensors<B>,
        labels: Option<Tensor<B, 2>>,
        weights: Option<Tensor<B, 2>>,
    ) -> SupervisedOutput<B> {
        let head = self
            .prediction_head
            .as_ref()
            .expect("forward_supervised needs a model with a prediction head");
        let cls = self.embed(batch);
        let logits = head.forward(cls);
        let loss = labels.map(|y| self.supervised_loss(logits.clone(), y, weights));
        SupervisedOutput { logits, loss }
    }

    /// The original's loss on `logits [batch, tasks*classes]` and `labels [batch, tasks]`,
    /// flattened molecule-major.
    pub fn supervised_loss(
        &self,
        logits: Tensor<B, 2>,
        labels: Tensor<B, 2>,
        weights: Option<Tensor<B, 2>>,
    ) -> MaskedLoss<B> {
        let [batch, _] = logits.dims();
        let entries = batch * self.num_tasks;
        let labels = labels.reshape([entries]);
        let weights = weights.map(|w| w.reshape([entries]));
        if !self.classification {
            masked_mse(logits.reshape([entries]), labels, weights)
        } else if self.num_classes == 1 {
            masked_bce_with_logits(logits.reshape([entries]), labels, weights)
        } else {
            masked_cross_entropy(logits.reshape([entries, self.num_classes]), labels, weights)
        }
    }

    /// Turns logits into predictions: raw values for regression, probabilities otherwise.
    pub fn predictions(&self, logits: Tensor<B, 2>) -> Tensor<B, 2> {
        if !self.classification {
            logits
        } else if self.num_classes == 1 {
            burn::tensor::activation::sigmoid(logits)
        } else {
            let [batch, _] = logits.dims();
            let probs = burn::tensor::activation::softmax(
                logits.reshape([batch * self.num_tasks, self.num_classes]),
                1,
            );
            probs.reshape([batch, self.num_tasks * self.num_classes])
        }
    }

    /// Masked atom-environment prediction. `masked_positions [atoms]` are flat indices
    /// (`b * seq + i`) of the masked tokens, `targets [atoms]` their radius-2 target ids, and
    /// `span_mask [batch, seq, seq]` the attention-span mask. Returns the logits
    /// `[atoms, num_targets]` and the mean cross-entropy.
    ///
    /// # Panics
    /// When the model has no atom-environment head.
    pub fn forward_atom_env(
        &self,
        batch: &BatchTensors<B>,
        span_mask: Tensor<B, 3, Bool>,
        masked_positions: Tensor<B, 1, Int>,
        targets: Tensor<B, 1, Int>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let head = self
            .atom_env_head
            .as_ref()
            .expect("forward_atom_env needs a model with an atom-environment head");
        let (_, out) = self
            .mole
            .forward(batch, Some(span_mask), &EncoderRequest::default());
        let [b, n, h] = out.last_hidden.dims();
        let states = out
            .last_hidden
            .reshape([b * n, h])
            .select(0, masked_positions);
        let logits = head.forward(states);
        let loss = cross_entropy(logits.clone(), targets);
        (logits, loss)
    }
}

/// `[batch, seq, hidden]` → `[batch, hidden]` (position 0, the CLS token).
pub fn cls_state<B: Backend>(hidden: Tensor<B, 3>) -> Tensor<B, 2> {
    let [b, _, h] = hidden.dims();
    hidden.slice([0..b, 0..1, 0..h]).reshape([b, h])
}
