//! Data-parallel training on several devices with Burn's collective operations
//! (`burn::collective`, cargo feature `collective`).
//!
//! Without the feature the types are here, so a training loop compiles either way, but a
//! group of more than one peer cannot form: [`Peer`]'s collective operations fail with
//! [`DataParallelError`] naming the missing feature.
//!
//! Each device holds a replica of the model and its optimiser, run by one thread (a *peer*).
//! Every step, each peer computes the gradients of its shard of the batch, the gradients are
//! summed across peers by Burn's all-reduce (as one flat tensor,
//! [`Peer::all_reduce_gradients`]), and every peer applies the same clipped optimiser step, so
//! the replicas stay identical.
//!
//! For the step to equal one step on the combined batch, each shard's loss is weighted by its
//! share of the loss normaliser ([`shard_weight`]): the losses are means over masked atoms or
//! present labels, and shards hold different numbers of them.
//!
//! A group may span several machines ([`NodeGroup`]): one process per machine, each with its
//! local devices, joined by burn-collective's global mode (node 0 serves the orchestrator over
//! WebSocket, and nodes exchange gradient slices peer to peer). Every process reads the same
//! data in the same order and takes its own shards of each batch ([`Group::local_shards`]), so
//! nothing but gradients and a few statistics crosses the network.

#[cfg(feature = "collective")]
use burn::collective::{
    self, AllReduceStrategy, CollectiveConfig, CollectiveError, PeerId, ReduceOperation,
};
#[cfg(feature = "collective")]
use burn::module::ParamId;
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
#[cfg(feature = "collective")]
use burn::tensor::TensorPrimitive;

/// Errors of the collective operations.
#[derive(Debug, thiserror::Error)]
#[error("data-parallel {operation} failed on peer {peer}: {error}")]
pub struct DataParallelError {
    pub operation: &'static str,
    pub peer: usize,
    /// burn-collective's error, or the missing `collective` feature.
    pub error: String,
}

/// Errors setting up a group that spans several machines.
#[derive(Debug, thiserror::Error)]
pub enum NodeGroupError {
    #[error("--node-rank {rank} is not below --nodes {nodes}")]
    RankOutOfRange { rank: u32, nodes: u32 },
    #[error("a group of several nodes needs at least 2 nodes, not {0}")]
    TooFewNodes(u32),
    #[error("the orchestrator's port {port} cannot be opened on this machine: {source}")]
    OrchestratorPort {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the orchestrator: {0}")]
    Orchestrator(#[source] std::io::Error),
}

/// This process's place in a data-parallel group spanning several machines (nodes): one process
/// per node, started with the same settings and data, like `torchrun`'s ranks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeGroup {
    /// Number of nodes (processes) in the group.
    pub nodes: u32,
    /// This node's rank, `0..nodes`. Node 0 serves the orchestrator.
    pub rank: u32,
    /// Host of node 0, where the orchestrator listens (a name or IP every node can reach).
    pub orchestrator_host: String,
    /// Port of the orchestrator on node 0.
    pub orchestrator_port: u16,
    /// Host other nodes reach this node at (its name or IP on the cluster network).
    pub host: String,
    /// Port of this node's tensor service, which the other nodes download gradient slices from.
    pub port: u16,
    /// How long a node waits for the others at a step before it gives up: burn-collective has
    /// no timeouts, so a node whose peer died would otherwise wait forever.
    pub stall_timeout: std::time::Duration,
}

impl NodeGroup {
    /// Checks the rank against the node count.
    pub fn validate(&self) -> Result<(), NodeGroupError> {
        if self.nodes < 2 {
            return Err(NodeGroupError::TooFewNodes(self.nodes));
        }
        if self.rank >= self.nodes {
            return Err(NodeGroupError::RankOutOfRange {
                rank: self.rank,
                nodes: self.nodes,
            });
        }
        Ok(())
    }

    /// Serves the group's orchestrator from this process (node 0 does this before
    /// registering). It runs on its own thread until the process ends. Burn's orchestrator
    /// stops on Ctrl-C or SIGTERM, which it takes over; `on_stop` then runs, so the caller can
    /// end the process as those signals otherwise would.
    #[cfg(feature = "collective")]
    pub fn serve_orchestrator(
        &self,
        on_stop: impl FnOnce() + Send + 'static,
    ) -> Result<(), NodeGroupError> {
        let port = self.orchestrator_port;
        // Burn's server only logs a failed bind; check the port first for a clear error.
        std::net::TcpListener::bind(("0.0.0.0", port))
            .map_err(|source| NodeGroupError::OrchestratorPort { port, source })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(NodeGroupError::Orchestrator)?;
        std::thread::Builder::new()
            .name("mole-orchestrator".into())
            .spawn(move || {
                runtime.block_on(burn_collective::start_global_orchestrator(port));
                on_stop();
            })
            .map_err(NodeGroupError::Orchestrator)?;
        Ok(())
    }
}

/// The peers of a data-parallel group: `local_devices` devices (one thread each) in this
/// process, on each node of `nodes` when the group spans several machines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub local_devices: usize,
    pub nodes: Option<NodeGroup>,
}

impl Group {
    /// A group within this process.
    pub fn local(devices: usize) -> Self {
        Self {
            local_devices: devices.max(1),
            nodes: None,
        }
    }

    /// Number of peers across all nodes.
    pub fn peers(&self) -> usize {
        self.local_devices * self.nodes.as_ref().map_or(1, |n| n.nodes as usize)
    }

    /// The peer of local device `local` (0 is this process's first device).
    pub fn peer(&self, local: usize) -> Peer {
        let rank = self.nodes.as_ref().map_or(0, |n| n.rank as usize);
        Peer {
            index: rank * self.local_devices + local,
            count: self.peers(),
        }
    }

    /// The shards of a batch (split into [`Group::peers`] shards) that this process's devices
    /// take, in device order.
    pub fn local_shards(&self) -> std::ops::Range<usize> {
        let first = self.peer(0).index;
        first..first + self.local_devices
    }

    /// Whether this process is the one that writes shared outputs (node 0).
    pub fn is_first_node(&self) -> bool {
        self.nodes.as_ref().is_none_or(|n| n.rank == 0)
    }

    #[cfg(feature = "collective")]
    fn collective_config(&self) -> CollectiveConfig {
        let config = CollectiveConfig::default().with_num_devices(self.local_devices);
        match &self.nodes {
            None => config,
            Some(n) => {
                let ws = |host: &str, port: u16| {
                    format!("ws://{host}:{port}")
                        .parse()
                        .expect("burn_communication::Address parses any string")
                };
                config
                    .with_num_nodes(n.nodes)
                    .with_global_address(ws(&n.orchestrator_host, n.orchestrator_port))
                    .with_node_address(ws(&n.host, n.port))
                    .with_data_service_port(n.port)
                    // Burn's ring all-reduce refuses tensors shorter than the node count (a
                    // one-element loss); a binary tree takes any shape.
                    .with_global_all_reduce_strategy(AllReduceStrategy::Tree(2))
            }
        }
    }
}

/// One peer of a data-parallel group: its index and the group size (across all nodes).
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub index: usize,
    pub count: usize,
}

#[cfg(feature = "collective")]
impl Peer {
    fn id(self) -> PeerId {
        PeerId::from(self.index)
    }

    fn err(self, operation: &'static str) -> impl FnOnce(CollectiveError) -> DataParallelError {
        move |error| DataParallelError {
            operation,
            peer: self.index,
            error: format!("{error:?}"),
        }
    }

    /// Joins `group` with `device`; blocks until all its peers (on every node) have joined.
    /// Call once per peer, each from its own thread, before any reduction.
    pub fn register<B: AutodiffBackend>(
        self,
        device: &B::Device,
        group: &Group,
    ) -> Result<(), DataParallelError> {
        let config = group.collective_config();
        collective::register::<B::InnerBackend>(self.id(), device.clone(), config)
            .map_err(self.err("register"))
    }

    /// Sums the gradients of all peers; every peer receives the sum on its own device.
    ///
    /// The gradients travel as one flat tensor, in the order `module` visits its parameters:
    /// one all-reduce per step instead of one per parameter (a network round trip each across
    /// machines), and an order every process agrees on. (Burn's `GradientsParams::all_reduce`
    /// goes by sorted parameter ids, which are random per process: two machines would pair
    /// different parameters.)
    pub fn all_reduce_gradients<B: AutodiffBackend, M: Module<B>>(
        self,
        module: &M,
        mut grads: GradientsParams,
    ) -> Result<GradientsParams, DataParallelError> {
        let mut flatten = FlattenGradients::<B> {
            grads: &mut grads,
            flat: Vec::new(),
            ids: Vec::new(),
        };
        module.visit(&mut flatten);
        let (flat, ids) = (flatten.flat, flatten.ids);
        if flat.is_empty() {
            return Ok(grads);
        }
        let summed = self.all_reduce_sum(Tensor::cat(flat, 0))?;
        let mut unflatten = UnflattenGradients::<B> {
            grads: &mut grads,
            summed,
            ids: ids.into_iter().peekable(),
            offset: 0,
        };
        module.visit(&mut unflatten);
        Ok(grads)
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

    /// Leaves the group (after the last step). A group spanning several machines is left as
    /// the process ends instead: leaving asks node 0's orchestrator, whose process may have
    /// ended already, and burn-collective would wait for its answer forever.
    pub fn finish<B: AutodiffBackend>(self, group: &Group) -> Result<(), DataParallelError> {
        if group.nodes.is_some() {
            return Ok(());
        }
        collective::finish_collective::<B::InnerBackend>(self.id()).map_err(self.err("finish"))
    }
}

impl Peer {
    /// Sums `tensor` over all peers and tells, for each of `values` (e.g. the step number and
    /// the local device count), whether every peer passed the same value: peers at different
    /// steps would mix gradients of different steps (nodes resumed from different
    /// checkpoints). Each value travels as 4-bit pieces and their squares, small integers
    /// that f32 sums exactly (for fewer than 74,000 peers); a piece whose sum is `count ·
    /// piece` and whose sum of squares is `count · piece²` has zero variance, so it is the
    /// same on every peer, and every peer reaches the same verdict.
    pub fn all_reduce_sum_agreeing<B: Backend>(
        self,
        tensor: Tensor<B, 1>,
        values: &[u32],
    ) -> Result<(Tensor<B, 1>, Vec<bool>), DataParallelError> {
        let n = tensor.dims()[0];
        let pieces: Vec<f32> = values
            .iter()
            .flat_map(|v| (0..8).map(move |k| ((v >> (4 * k)) & 0xf) as f32))
            .collect();
        let squares: Vec<f32> = pieces.iter().map(|p| p * p).collect();
        let device = tensor.device();
        let marks =
            Tensor::<B, 1>::from_floats([pieces.as_slice(), &squares].concat().as_slice(), &device);
        let summed = self.all_reduce_sum(Tensor::cat(vec![tensor, marks], 0))?;
        let sums: Vec<f32> = summed
            .clone()
            .slice(n..n + 2 * pieces.len())
            .into_data()
            .iter::<f32>()
            .collect();
        let count = self.count as f32;
        let (piece_sums, square_sums) = sums.split_at(pieces.len());
        let agreeing = (0..values.len())
            .map(|v| {
                (8 * v..8 * v + 8).all(|k| {
                    piece_sums[k] == count * pieces[k] && square_sums[k] == count * squares[k]
                })
            })
            .collect();
        Ok((summed.slice(0..n), agreeing))
    }
}

/// Without the `collective` feature: every collective operation fails, naming the feature.
#[cfg(not(feature = "collective"))]
impl Peer {
    fn unavailable(self, operation: &'static str) -> DataParallelError {
        DataParallelError {
            operation,
            peer: self.index,
            error: "built without the `collective` feature (mole-model, mole-train)".into(),
        }
    }

    pub fn register<B: AutodiffBackend>(
        self,
        _device: &B::Device,
        _group: &Group,
    ) -> Result<(), DataParallelError> {
        Err(self.unavailable("register"))
    }

    pub fn all_reduce_gradients<B: AutodiffBackend, M: Module<B>>(
        self,
        _module: &M,
        _grads: GradientsParams,
    ) -> Result<GradientsParams, DataParallelError> {
        Err(self.unavailable("all-reduce"))
    }

    pub fn all_reduce_sum<B: Backend, const D: usize>(
        self,
        _tensor: Tensor<B, D>,
    ) -> Result<Tensor<B, D>, DataParallelError> {
        Err(self.unavailable("all-reduce"))
    }

    /// Nothing to leave: no group formed.
    pub fn finish<B: AutodiffBackend>(self, _group: &Group) -> Result<(), DataParallelError> {
        Ok(())
    }
}

/// Takes every parameter's gradient out of `grads`, flattened, in visiting order.
#[cfg(feature = "collective")]
struct FlattenGradients<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    flat: Vec<Tensor<B::InnerBackend, 1>>,
    ids: Vec<ParamId>,
}

#[cfg(feature = "collective")]
impl<B: AutodiffBackend> ModuleVisitor<B> for FlattenGradients<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            let n = grad.shape().num_elements();
            self.flat.push(grad.reshape([n]));
            self.ids.push(param.id);
        }
    }
}

/// Puts the summed flat gradients back: the same visiting order meets the flattened
/// parameters in the same sequence.
#[cfg(feature = "collective")]
struct UnflattenGradients<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    summed: Tensor<B::InnerBackend, 1>,
    ids: std::iter::Peekable<std::vec::IntoIter<ParamId>>,
    offset: usize,
}

#[cfg(feature = "collective")]
impl<B: AutodiffBackend> ModuleVisitor<B> for UnflattenGradients<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if self.ids.next_if_eq(&param.id).is_none() {
            return;
        }
        let shape = param.shape();
        let n = shape.num_elements();
        let grad = self
            .summed
            .clone()
            .slice(self.offset..self.offset + n)
            .reshape(shape);
        self.offset += n;
        self.grads.register::<B::InnerBackend, D>(param.id, grad);
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
    #[cfg(feature = "collective")]
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
    fn nodes_take_consecutive_shards() {
        let node = |rank| NodeGroup {
            nodes: 3,
            rank,
            orchestrator_host: "head".into(),
            orchestrator_port: 29500,
            host: format!("node{rank}"),
            port: 29501,
            stall_timeout: std::time::Duration::from_secs(60),
        };
        let group = |rank| Group {
            local_devices: 2,
            nodes: Some(node(rank)),
        };
        assert_eq!(group(0).peers(), 6);
        assert_eq!(group(0).local_shards(), 0..2);
        assert_eq!(group(2).local_shards(), 4..6);
        assert_eq!(group(1).peer(1).index, 3);
        assert!(group(0).is_first_node() && !group(1).is_first_node());
        assert_eq!(Group::local(3).local_shards(), 0..3);
        assert!(node(2).validate().is_ok());
        assert!(node(3).validate().is_err());
    }

    #[test]
    fn shards_cover_items_in_order() {
        assert_eq!(shard_ranges(5, 2), vec![0..3, 3..5]);
        assert_eq!(shard_ranges(1, 3), vec![0..1, 1..1, 1..1]);
        assert_eq!(shard_ranges(6, 3), vec![0..2, 2..4, 4..6]);
        assert_eq!(shard_weight(3, 12), 0.25);
        assert_eq!(shard_weight(0, 0), 0.0);
    }
}
