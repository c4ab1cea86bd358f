//! Gradient utilities the original training loop relies on and Burn does not ship as such:
//! global-norm clipping (`torch.nn.utils.clip_grad_norm_`; Burn's `GradientClipping::Norm`
//! clips each tensor on its own) and named access to gradients.

use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{
    AdamState, AdaptiveMomentumState, GradientsParams, LearningRate, SimpleOptimizer,
};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use mole_nn::attention::to_f32;
use mole_nn::StateDict;

use crate::checkpoint::to_state_dict;
use crate::model::MolE;

struct SquaredNorm<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    total: Option<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredNorm<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            // In f32: a half-precision sum of squares overflows (f16 tops out at 65504).
            let sq = to_f32(g).square().sum();
            self.total = Some(match self.total.take() {
                Some(t) => t + sq,
                None => sq,
            });
        }
    }
}

struct Scale<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    coef: Tensor<B::InnerBackend, 1>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            let coef = self.coef.clone().reshape([1; D]).cast(g.dtype());
            self.grads
                .register::<B::InnerBackend, D>(param.id, g * coef);
        }
    }
}

/// L2 norm of all gradients together, as a device tensor `[1]` (no host sync).
pub fn global_grad_norm_tensor<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    grads: &GradientsParams,
) -> Option<Tensor<B::InnerBackend, 1>> {
    let mut visitor = SquaredNorm::<B> { grads, total: None };
    model.visit(&mut visitor);
    visitor.total.map(|t| t.sqrt())
}

/// L2 norm of all gradients together (reads the value back to the host).
pub fn global_grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    grads: &GradientsParams,
) -> f32 {
    global_grad_norm_tensor::<B, M>(model, grads)
        .map(|t| t.into_scalar().elem::<f32>())
        .unwrap_or(0.0)
}

use burn::tensor::ElementConversion;

/// Multiplies every gradient by `factor` (on the device).
pub fn scale_gradients<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    mut grads: GradientsParams,
    factor: f64,
) -> GradientsParams {
    let device = match model.devices().first() {
        Some(d) => d.clone(),
        None => return grads,
    };
    let coef = Tensor::<B::InnerBackend, 1>::from_floats([factor as f32], &device);
    let mut scale = Scale::<B> {
        grads: &mut grads,
        coef,
    };
    model.visit(&mut scale);
    grads
}

/// Dynamic loss scaling for float16 training, with the defaults of PyTorch's `GradScaler`
/// (which the original's Lightning `precision=16` uses): the loss is multiplied by `scale` so
/// that small activation gradients survive f16's range; a step whose gradients overflow is
/// skipped and the scale halved; after `growth_interval` clean steps the scale doubles.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossScaler {
    pub scale: f32,
    pub clean_steps: u32,
    pub growth_interval: u32,
}

impl Default for LossScaler {
    fn default() -> Self {
        Self {
            scale: 65536.0,
            clean_steps: 0,
            growth_interval: 2000,
        }
    }
}

impl LossScaler {
    /// Divides the gradients of a scaled loss by the scale. Returns `None` (and backs off) when
    /// a gradient is infinite or NaN: the step must be skipped. Reads the gradient norm back to
    /// the host, as `GradScaler.step` does.
    pub fn unscale<B: AutodiffBackend, M: AutodiffModule<B>>(
        &mut self,
        model: &M,
        grads: GradientsParams,
    ) -> Option<GradientsParams> {
        let norm = global_grad_norm::<B, M>(model, &grads);
        if !norm.is_finite() {
            self.scale = (self.scale * 0.5).max(1.0);
            self.clean_steps = 0;
            return None;
        }
        let grads = scale_gradients::<B, M>(model, grads, 1.0 / f64::from(self.scale));
        self.clean_steps += 1;
        if self.clean_steps >= self.growth_interval {
            self.scale = (self.scale * 2.0).min(f32::MAX / 2.0);
            self.clean_steps = 0;
        }
        Some(grads)
    }
}

/// Scales all gradients by `min(1, max_norm / (norm + 1e-6))`, the global-norm clipping of
/// PyTorch's `clip_grad_norm_`. Computed on the device.
pub fn clip_global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    mut grads: GradientsParams,
    max_norm: f64,
) -> GradientsParams {
    #[cfg(feature = "flex")]
    if clip_global_norm_flex::<B, M>(model, &mut grads, max_norm) {
        return grads;
    }
    let Some(norm) = global_grad_norm_tensor::<B, M>(model, &grads) else {
        return grads;
    };
    let coef = (norm.add_scalar(1e-6).recip() * max_norm).clamp_max(1.0);
    let mut scale = Scale::<B> {
        grads: &mut grads,
        coef,
    };
    model.visit(&mut scale);
    grads
}

/// [`clip_global_norm`] on the Flex CPU backend in f32: the squared norms in one parallel pass
/// per gradient (no temporaries) and the scaling in one more, only when it clips (a factor of
/// exactly 1 changes nothing). Returns false, having changed nothing, when a gradient is not
/// Flex f32.
#[cfg(feature = "flex")]
fn clip_global_norm_flex<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> bool {
    use mole_nn::flex_kernels::{scale, sum_of_squares};

    struct HostSquares<'a, B: AutodiffBackend> {
        grads: &'a GradientsParams,
        total: Option<f64>,
        _b: core::marker::PhantomData<B>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for HostSquares<'_, B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
                self.total = match (self.total, sum_of_squares(&g)) {
                    (Some(t), Some(sq)) => Some(t + sq),
                    _ => None,
                };
            }
        }
    }
    struct HostScale<'a, B: AutodiffBackend> {
        grads: &'a mut GradientsParams,
        coef: f32,
        _b: core::marker::PhantomData<B>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for HostScale<'_, B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
                let scaled = scale(g, self.coef).unwrap_or_else(|g| g.mul_scalar(self.coef));
                self.grads.register::<B::InnerBackend, D>(param.id, scaled);
            }
        }
    }

    let mut squares = HostSquares::<B> {
        grads,
        total: Some(0.0),
        _b: core::marker::PhantomData,
    };
    model.visit(&mut squares);
    let Some(total) = squares.total else {
        return false;
    };
    let norm = total.sqrt();
    // PyTorch's clip_grad_norm_: coef = max_norm / (norm + 1e-6), clamped to 1 (in f32).
    let coef = ((max_norm as f32) / (norm as f32 + 1e-6)).min(1.0);
    if coef < 1.0 {
        let mut scaling = HostScale::<B> {
            grads,
            coef,
            _b: core::marker::PhantomData,
        };
        model.visit(&mut scaling);
    }
    true
}

struct GradsAsValues<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    _b: core::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleMapper<B> for GradsAsValues<'_, B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let id: ParamId = param.id;
        let value = param.val();
        let grad = match self.grads.get::<B::InnerBackend, D>(id) {
            Some(g) => Tensor::from_inner(g),
            None => value.zeros_like(),
        };
        Param::initialized(id, grad)
    }
}

/// Gradients under the original parameter names and layouts (a parameter without gradient
/// reads as zeros).
pub fn grads_as_state_dict<B: AutodiffBackend>(
    model: &MolE<B>,
    grads: &GradientsParams,
) -> StateDict {
    let mapped = model.clone().map(&mut GradsAsValues::<B> {
        grads,
        _b: core::marker::PhantomData,
    });
    to_state_dict(&mapped)
}

/// Adam as the original trains with it (`torch.optim.Adam`, no weight decay), computed with the
/// formulas of Burn's `Adam`. With feature `flex`, a step on the Flex CPU backend is one
/// parallel pass over each parameter, its gradient and both moments, in place
/// (`mole_nn::flex_kernels::adam_step`); elsewhere the same arithmetic runs op by op. The state
/// is Burn's `AdamState`, so optimiser records (resume files) are interchangeable with Burn's
/// `Adam`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FusedAdam {
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
}

impl FusedAdam {
    pub fn new(beta_1: f32, beta_2: f32, epsilon: f32) -> Self {
        Self {
            beta_1,
            beta_2,
            epsilon,
        }
    }

    /// The optimiser for module `M` (what `AdamConfig::init` returns for Burn's `Adam`).
    pub fn init<B: AutodiffBackend, M: AutodiffModule<B>>(self) -> OptimizerAdaptor<Self, M, B> {
        OptimizerAdaptor::from(self)
    }
}

impl<B: Backend> SimpleOptimizer<B> for FusedAdam {
    type State<const D: usize> = AdamState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let time = state.as_ref().map_or(1, |s| s.momentum.time + 1);
        let bias_correction2_sqrt = (1.0 - self.beta_2.powi(time as i32)).sqrt();
        let combined = bias_correction2_sqrt / (1.0 - self.beta_1.powi(time as i32));
        let epsilon = self.epsilon * bias_correction2_sqrt;
        let moments = state.map(|s| (s.momentum.moment_1, s.momentum.moment_2));
        let done = |(p, m, v): (Tensor<B, D>, Tensor<B, D>, Tensor<B, D>)| {
            let momentum = AdaptiveMomentumState {
                time,
                moment_1: m,
                moment_2: v,
                max_moment_2: None,
            };
            (p, Some(AdamState { momentum }))
        };
        #[cfg(feature = "flex")]
        let (tensor, grad, moments) = {
            let coefficients = mole_nn::flex_kernels::AdamCoefficients {
                beta_1: self.beta_1,
                beta_2: self.beta_2,
                combined,
                epsilon,
                lr: lr as f32,
            };
            match mole_nn::flex_kernels::adam_step(tensor, grad, moments, coefficients) {
                Ok(out) => return done(out),
                Err(inputs) => inputs,
            }
        };
        let (m, v) = match moments {
            Some((m, v)) => (
                m.mul_scalar(self.beta_1)
                    .add(grad.clone().mul_scalar(1.0 - self.beta_1)),
                v.mul_scalar(self.beta_2)
                    .add(grad.square().mul_scalar(1.0 - self.beta_2)),
            ),
            None => (
                grad.clone().mul_scalar(1.0 - self.beta_1),
                grad.square().mul_scalar(1.0 - self.beta_2),
            ),
        };
        let update = m
            .clone()
            .mul_scalar(combined)
            .div(v.clone().sqrt().add_scalar(epsilon));
        done((tensor - update.mul_scalar(lr), m, v))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        state.momentum.moment_1 = state.momentum.moment_1.to_device(device);
        state.momentum.moment_2 = state.momentum.moment_2.to_device(device);
        state
    }
}

/// Number of trainable scalars.
pub fn num_parameters<B: Backend, M: Module<B>>(model: &M) -> usize {
    model.num_params()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::nn::{Linear, LinearConfig};

    type AD = Autodiff<Flex>;

    fn grads_of(layer: &Linear<AD>, input: [f32; 2], loss_scale: f32) -> GradientsParams {
        let device = Default::default();
        let x = Tensor::<AD, 2>::from_floats([input], &device);
        let loss = layer.forward(x).sum().mul_scalar(loss_scale);
        GradientsParams::from_grads(loss.backward(), layer)
    }

    /// Three steps of `FusedAdam` (fused on Flex when feature `flex` is on) against Burn's
    /// `Adam` with the same settings: the same arithmetic, so parameters agree to f32 rounding.
    #[test]
    fn fused_adam_follows_burns_adam() {
        use burn::optim::{AdamConfig, Optimizer};
        let device = Default::default();
        let start: Linear<AD> = LinearConfig::new(3, 2).init(&device);
        // Burn initialises parameters lazily; initialise before cloning so both copies start
        // from the same weights.
        let _ = (start.weight.val(), start.bias.as_ref().map(|b| b.val()));
        let mut ours = FusedAdam::new(0.9, 0.999, 1e-6).init::<AD, Linear<AD>>();
        let mut burns = AdamConfig::new()
            .with_beta_1(0.9)
            .with_beta_2(0.999)
            .with_epsilon(1e-6)
            .init::<AD, Linear<AD>>();
        let (mut a, mut b) = (start.clone(), start);
        for step in 0..3 {
            let input = [1.0 + step as f32, -2.0, 0.5 * step as f32];
            let ga = {
                let x = Tensor::<AD, 2>::from_floats([input], &device);
                GradientsParams::from_grads(a.forward(x).square().sum().backward(), &a)
            };
            let gb = {
                let x = Tensor::<AD, 2>::from_floats([input], &device);
                GradientsParams::from_grads(b.forward(x).square().sum().backward(), &b)
            };
            a = ours.step(1e-2, a, ga);
            b = burns.step(1e-2, b, gb);
        }
        let host = |l: &Linear<AD>| {
            let mut v = l.weight.val().into_data().to_vec::<f32>().unwrap();
            v.extend(
                l.bias
                    .as_ref()
                    .unwrap()
                    .val()
                    .into_data()
                    .to_vec::<f32>()
                    .unwrap(),
            );
            v
        };
        let (pa, pb) = (host(&a), host(&b));
        assert!(pa.iter().zip(&pb).any(|(x, y)| x != &0.0 || y != &0.0));
        for (x, y) in pa.iter().zip(&pb) {
            assert!((x - y).abs() <= 1e-6 * y.abs().max(1.0), "{pa:?} vs {pb:?}");
        }
    }

    #[test]
    fn loss_scaler_unscales_clean_gradients_and_skips_overflowing_ones() {
        let device = Default::default();
        let layer: Linear<AD> = LinearConfig::new(2, 1).init(&device);
        let mut scaler = LossScaler {
            scale: 1024.0,
            clean_steps: 0,
            growth_interval: 2,
        };
        let reference = global_grad_norm::<AD, _>(&layer, &grads_of(&layer, [3.0, 4.0], 1.0));
        let unscaled = scaler
            .unscale::<AD, _>(&layer, grads_of(&layer, [3.0, 4.0], 1024.0))
            .expect("finite gradients");
        let norm = global_grad_norm::<AD, _>(&layer, &unscaled);
        assert!(
            (norm - reference).abs() <= 1e-6 * reference,
            "{norm} vs {reference}"
        );
        assert_eq!((scaler.scale, scaler.clean_steps), (1024.0, 1));

        let overflow = grads_of(&layer, [f32::INFINITY, 1.0], 1024.0);
        assert!(scaler.unscale::<AD, _>(&layer, overflow).is_none());
        assert_eq!((scaler.scale, scaler.clean_steps), (512.0, 0));

        for _ in 0..2 {
            assert!(scaler
                .unscale::<AD, _>(&layer, grads_of(&layer, [1.0, 1.0], 512.0))
                .is_some());
        }
        assert_eq!(
            (scaler.scale, scaler.clean_steps),
            (1024.0, 0),
            "grows after the interval"
        );
    }
}
