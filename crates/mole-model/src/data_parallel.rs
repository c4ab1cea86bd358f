//! Data-parallel training on several devices with Burn's collective operations
//! (`burn::collective`, cargo feature `collective`).
//!
//! Each device holds a replica of the model and its optimiser, run by one thread (a *peer*).
//! Every step, each peer computes the gradients of its shard of the batch, the gradients are
//! summed across peers by Burn's all-reduce ([`GradientsParams::all_reduce`]), and every peer
//! applies the same clipped optimiser step, so the replicas stay identical.
//!
//! For the step to equal one step on the combined batch, each shard's loss is weighted by its
//! share of the loss normaliser ([`shard_weight`]): the losses are means over masked atoms or
//! present labels, and shards hold different numbers of them.

use burn::collective::{self, CollectiveConfig, CollectiveError, PeerId, ReduceOperation};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorPrimitive};

/// Errors of the collective operations.
#[derive(Debug, thiserror::Error)]
#[error("data-parallel {operation} failed on peer {peer}: {error:?}")]
pub struct DataParallelError {
    pub operation: &'static str,
    pub peer: usize,
    pub error: CollectiveError,
}

/// One peer of a data-parallel group: its index and the group size.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub index: usize,
    pub count: usize,
}

impl Peer {
    fn id(self) -> PeerId {
        PeerId::from(self.index)
    }

    fn err(self, operation: &'static str) -> impl FnOnce(CollectiveError) -> DataParallelError {
        move |error| DataParallelError {
            operation,
            peer: self.index,
            error,
        }
    }

    /// Joins the group with `device`; blocks until all `count` peers have joined. Call once per
    /// peer, each from its own thread, before any reduction.
    pub fn register<B: AutodiffBackend>(self, device: &B::Device) -> Result<(), DataParallelError> {
        let config = CollectiveConfig::default().with_num_devices(self.count);
        collective::register::<B::InnerBackend>(self.id(), device.clone(), config)
            .map_err(self.err("register"))
    }

    /// Sums the gradients of all peers; every peer receives the sum on its own device.
    pub fn all_reduce_gradients<B: AutodiffBackend>(
        self,
        grads: GradientsParams,
    ) -> Result<GradientsParams, DataParallelError> {
        grads
            .all_reduce::<B::InnerBackend>(self.id(), ReduceOperation::Sum)
            .map_err(self.err("gradient all-reduce"))
    }

    /// Sums a float tensor (e.g. a weighted loss) over all peers.
    pub fn all_reduce_sum<B: Backend, const D: usize>(
        self,
        tensor: Tensor<B, D>,
    ) -> Result<Tensor<B, D>, DataParallelError> {
        let TensorPrimitive::Float(primitive) = tensor.into_primitive() else {
            unreachable!("float tensors outside quantization hold float primitives")
        };
        let summed = collective::all_reduce::<B>(self.id(), primitive, ReduceOperation::Sum)
            .map_err(self.err("all-reduce"))?;
        Ok(Tensor::from_primitive(TensorPrimitive::Float(summed)))
    }

    /// Leaves the group (after the last step).
    pub fn finish<B: AutodiffBackend>(self) -> Result<(), DataParallelError> {
        collective::finish_collective::<B::InnerBackend>(self.id()).map_err(self.err("finish"))
    }
}

struct Materialize;

impl<B: Backend> ModuleVisitor<B> for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let _ = param.val();
    }
}

/// Runs every pending lazy parameter initialisation of `module` now. Burn initialises parameters
/// on first use from the backend's global RNG; a clone handed to another thread before that
/// would initialise concurrently and interleave the draws, so replicas (and the original) could
/// end up with different weights. Call this before cloning a fresh model into replicas.
pub fn materialize<B: Backend, M: Module<B>>(module: &M) {
    module.visit(&mut Materialize);
}

/// Forgets any earlier group of backend `B` in this process (e.g. one whose peers failed).
pub fn reset<B: AutodiffBackend>() {
    collective::reset_collective::<B::InnerBackend>();
}

/// Weight of a shard's mean loss so that the weighted shard losses sum to the combined batch's
/// mean loss: `shard_count / total_count` (0 when nothing in the batch counts).
pub fn shard_weight(shard_count: usize, total_count: usize) -> f32 {
    if total_count == 0 {
        0.0
    } else {
        shard_count as f32 / total_count as f32
    }
}

/// Splits `items` into `peers` contiguous shards, as even as possible (earlier shards are the
/// larger). Shards are empty when there are fewer items than peers.
pub fn shard_ranges(items: usize, peers: usize) -> Vec<std::ops::Range<usize>> {
    let peers = peers.max(1);
    let (base, extra) = (items / peers, items % peers);
    let mut start = 0;
    (0..peers)
        .map(|p| {
            let len = base + usize::from(p < extra);
            let range = start..start + len;
            start += len;
            range
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_items_in_order() {
        assert_eq!(shard_ranges(5, 2), vec![0..3, 3..5]);
        assert_eq!(shard_ranges(1, 3), vec![0..1, 1..1, 1..1]);
        assert_eq!(shard_ranges(6, 3), vec![0..2, 2..4, 4..6]);
        assert_eq!(shard_weight(3, 12), 0.25);
        assert_eq!(shard_weight(0, 0), 0.0);
    }
}
