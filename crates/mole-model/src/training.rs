//! Gradient utilities the original training loop relies on and Burn does not ship as such:
//! global-norm clipping (`torch.nn.utils.clip_grad_norm_`; Burn's `GradientClipping::Norm`
//! clips each tensor on its own) and named access to gradients.

use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
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

/// Scales all gradients by `min(1, max_norm / (norm + 1e-6))`, the global-norm clipping of
/// PyTorch's `clip_grad_norm_`. Computed on the device.
pub fn clip_global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    mut grads: GradientsParams,
    max_norm: f64,
) -> GradientsParams {
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

/// Number of trainable scalars.
pub fn num_parameters<B: Backend, M: Module<B>>(model: &M) -> usize {
    model.num_params()
}
