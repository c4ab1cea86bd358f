//! Parameter import/export in the original PyTorch `state_dict` layout.
//!
//! Tensors travel as plain `f32` host buffers keyed by the original names ([`StateDict`]), so
//! weights trained by the original MolE load here and ours export back. Moving them in and out
//! of modules is Burn's `burn-store`: `ModuleSnapshot::collect`/`apply` walk the module, its
//! `PyTorchToBurnAdapter`/`BurnToPyTorchAdapter` transpose `Linear` weights (PyTorch `[out, in]`,
//! Burn `[in, out]`) and rename LayerNorm's `weight`/`bias` ↔ `gamma`/`beta`, and a
//! `KeyRemapper` per direction ([`TorchNames`]) maps the original module names onto Burn's
//! field paths. What this module adds: every missing, unexpected and mis-shaped tensor reported
//! at once, under the original names and layouts ([`load_torch_state`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use burn::module::{Module, ParamId};
use burn::tensor::{backend::Backend, Tensor, TensorData};
use burn_store::{
    ApplyError, BurnToPyTorchAdapter, KeyRemapper, ModuleSnapshot, PyTorchToBurnAdapter,
    TensorSnapshot,
};
use safetensors::tensor::{Dtype, TensorView};

use crate::NnError;

/// One host tensor: row-major `f32` values and their shape.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    pub fn from_tensor<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Self {
        let shape = tensor.dims().to_vec();
        let data = tensor
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .expect("float tensor converts to f32");
        Self { shape, data }
    }

    /// Shapes: the stored tensor's shape (`D` must be its rank).
    pub fn to_tensor<B: Backend, const D: usize>(&self, device: &B::Device) -> Tensor<B, D> {
        Tensor::from_data(
            TensorData::new(self.data.clone(), self.shape.clone()),
            device,
        )
    }
}

/// Named tensors plus string metadata, as stored in a safetensors file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateDict {
    pub tensors: BTreeMap<String, HostTensor>,
    pub metadata: BTreeMap<String, String>,
}

/// What a safetensors parse error means for the user: most are a file cut short (a copy or
/// download that did not finish) or a file of another kind.
fn describe(e: &safetensors::SafeTensorError) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::HeaderTooSmall | E::InvalidHeaderLength | E::MetadataIncompleteBuffer => {
            format!("truncated or not a safetensors file ({e:?}): the file ends before its data")
        }
        E::InvalidHeader | E::InvalidHeaderStart | E::InvalidHeaderDeserialization => {
            format!("not a safetensors file (its header is not valid: {e:?})")
        }
        other => format!("damaged safetensors file: {other}"),
    }
}

impl StateDict {
    /// Parses a safetensors buffer. Float tensors of dtype F32, F64, F16 and BF16 are accepted
    /// and converted to `f32`; `source` names the file in errors.
    pub fn from_safetensors_bytes(bytes: &[u8], source: &str) -> Result<Self, NnError> {
        let bad = |why: String| NnError::Parse {
            path: source.to_string(),
            why,
        };
        let (_, meta) =
            safetensors::SafeTensors::read_metadata(bytes).map_err(|e| bad(describe(&e)))?;
        let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| bad(describe(&e)))?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            let raw = view.data();
            let data: Vec<f32> = match view.dtype() {
                Dtype::F32 => raw
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                Dtype::F64 => raw
                    .chunks_exact(8)
                    .map(|c| {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(c);
                        f64::from_le_bytes(b) as f32
                    })
                    .collect(),
                Dtype::BF16 => raw
                    .chunks_exact(2)
                    .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
                    .collect(),
                Dtype::F16 => raw
                    .chunks_exact(2)
                    .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                    .collect(),
                other => {
                    return Err(bad(format!(
                        "tensor `{name}` has dtype {other:?}; only float tensors are parameters"
                    )))
                }
            };
            tensors.insert(
                name,
                HostTensor {
                    shape: view.shape().to_vec(),
                    data,
                },
            );
        }
        let metadata = meta
            .metadata()
            .clone()
            .map(|m| m.into_iter().collect())
            .unwrap_or_default();
        Ok(Self { tensors, metadata })
    }

    pub fn load(path: &Path) -> Result<Self, NnError> {
        let bytes = std::fs::read(path).map_err(|e| NnError::Io {
            path: path.display().to_string(),
            error: e,
        })?;
        Self::from_safetensors_bytes(&bytes, &path.display().to_string())
    }

    /// Serialises as safetensors (all tensors `F32`, little-endian).
    pub fn to_safetensors_bytes(&self) -> Result<Vec<u8>, NnError> {
        let buffers: Vec<(String, Vec<usize>, Vec<u8>)> = self
            .tensors
            .iter()
            .map(|(name, t)| {
                let bytes = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
                (name.clone(), t.shape.clone(), bytes)
            })
            .collect();
        let views = buffers
            .iter()
            .map(|(name, shape, bytes)| {
                TensorView::new(Dtype::F32, shape.clone(), bytes)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| NnError::Export(format!("tensor `{name}`: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let meta: Option<HashMap<String, String>> = if self.metadata.is_empty() {
            None
        } else {
            Some(self.metadata.clone().into_iter().collect())
        };
        safetensors::serialize(views, &meta).map_err(|e| NnError::Export(e.to_string()))
    }

    /// Writes atomically: a temporary file in the same folder, then a rename, so an interrupted
    /// write never leaves a truncated file under `path`.
    pub fn save(&self, path: &Path) -> Result<(), NnError> {
        let bytes = self.to_safetensors_bytes()?;
        write_atomic(path, &bytes)
    }

    /// Removes `prefix` from every name that has it (e.g. Lightning's `model.`).
    pub fn strip_prefix(mut self, prefix: &str) -> Self {
        self.tensors = self
            .tensors
            .into_iter()
            .map(|(k, v)| match k.strip_prefix(prefix) {
                Some(rest) => (rest.to_string(), v),
                None => (k, v),
            })
            .collect();
        self
    }

    /// Merges another dict's tensors into this one.
    pub fn extend(&mut self, other: StateDict) {
        self.tensors.extend(other.tensors);
        self.metadata.extend(other.metadata);
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), NnError> {
    let io_err = |e| NnError::Io {
        path: path.display().to_string(),
        error: e,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io_err)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(io_err)?;
    std::fs::rename(&tmp, path).map_err(io_err)
}

pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: renormalise.
            let mut e = 127 - 15 + 1;
            let mut f = frac;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((f & 0x3ff) << 13)
        }
        (0x1f, _) => sign | 0x7f80_0000 | (frac << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

/// How the original PyTorch names map onto Burn's field paths, one regex rewrite table per
/// direction (applied in order, each to the result of the previous).
#[derive(Clone)]
pub struct TorchNames {
    to_burn: KeyRemapper,
    to_torch: KeyRemapper,
}

/// PyTorch → Burn for the DeBERTa modules of this crate. LayerNorm parameters are renamed here
/// (not through the adapter's alternative names, whose matches burn-store 0.21 also lists as
/// unused).
const DEBERTA_TO_BURN: [(&str, &str); 6] = [
    (r"(^|\.)layer\.(\d+)\.", "${1}layers.$2."),
    (r"(^|\.)attention\.self\.", "${1}attention.self_attention."),
    (
        r"(^|\.)encoder\.LayerNorm\.weight$",
        "${1}encoder.rel_layer_norm.gamma",
    ),
    (
        r"(^|\.)encoder\.LayerNorm\.bias$",
        "${1}encoder.rel_layer_norm.beta",
    ),
    (r"(^|\.)LayerNorm\.weight$", "${1}layer_norm.gamma"),
    (r"(^|\.)LayerNorm\.bias$", "${1}layer_norm.beta"),
];

/// Burn → PyTorch, the inverse of [`DEBERTA_TO_BURN`]. Collected paths have LayerNorm's
/// `weight`/`bias` already (the adapter renames them); paths reported as missing still say
/// `gamma`/`beta`.
const DEBERTA_TO_TORCH: [(&str, &str); 6] = [
    (r"(^|\.)layers\.(\d+)\.", "${1}layer.$2."),
    (r"(^|\.)attention\.self_attention\.", "${1}attention.self."),
    (r"(^|\.)rel_layer_norm\.", "${1}LayerNorm."),
    (r"(^|\.)layer_norm\.", "${1}LayerNorm."),
    (r"\.gamma$", ".weight"),
    (r"\.beta$", ".bias"),
];

impl TorchNames {
    /// The names of this crate's modules (`layer.N` ↔ `layers.N`, `attention.self` ↔
    /// `attention.self_attention`, `LayerNorm.weight`/`bias` ↔ `layer_norm.gamma`/`beta`, and
    /// the encoder's own `LayerNorm` ↔ `rel_layer_norm`), plus a model's own rewrites:
    /// `to_burn` applied first on load, `to_torch` last on save (e.g. a root field renamed).
    pub fn deberta(to_burn: &[(&str, &str)], to_torch: &[(&str, &str)]) -> Self {
        let table = |first: &[(&str, &str)], deberta: &[(&str, &str)], last: &[(&str, &str)]| {
            KeyRemapper::from_patterns(first.iter().chain(deberta).chain(last).copied().collect())
                .expect("the name tables are valid regexes")
        };
        Self {
            to_burn: table(to_burn, &DEBERTA_TO_BURN, &[]),
            to_torch: table(&[], &DEBERTA_TO_TORCH, to_torch),
        }
    }

    /// The original name of a Burn parameter path.
    pub fn torch_name(&self, burn_path: &str) -> String {
        rename(&self.to_torch, burn_path)
    }
}

fn rename(remapper: &KeyRemapper, path: &str) -> String {
    remapper
        .to_regex_pairs()
        .iter()
        .fold(path.to_string(), |path, (pattern, replacement)| {
            pattern
                .replace_all(&path, replacement.as_str())
                .into_owned()
        })
}

/// `module`'s parameters under their original names and layouts (`Linear` weights `[out, in]`).
pub fn to_torch_state<B: Backend, M: Module<B>>(module: &M, names: &TorchNames) -> StateDict {
    let collected = module.collect(None, Some(Box::new(BurnToPyTorchAdapter)), false);
    let (collected, _) = names.to_torch.remap(collected);
    let mut dict = StateDict::default();
    for snapshot in collected {
        let data = snapshot
            .to_data()
            .expect("a module's own parameters read back");
        let shape = data.shape.to_vec();
        let data = data
            .convert::<f32>()
            .into_vec::<f32>()
            .expect("float parameters convert to f32");
        dict.tensors
            .insert(snapshot.full_path(), HostTensor { shape, data });
    }
    dict
}

/// Loads `dict` (original names and layouts) into `module`, in one pass. Fails with every
/// missing, unexpected and mis-shaped tensor, under the original names and in PyTorch's layout.
pub fn load_torch_state<B: Backend, M: Module<B>>(
    module: M,
    dict: &StateDict,
    names: &TorchNames,
) -> Result<M, NnError> {
    let snapshots: Vec<TensorSnapshot> = dict
        .tensors
        .iter()
        .map(|(name, t)| {
            TensorSnapshot::from_data(
                TensorData::new(t.data.clone(), t.shape.clone()),
                name.split('.').map(str::to_string).collect(),
                Vec::new(),
                ParamId::new(),
            )
        })
        .collect();
    let (snapshots, renamed) = names.to_burn.remap(snapshots);
    // Only original names load: a key the tables leave as it is (a Burn path, say) or map onto
    // a path another key already took is unexpected.
    let mut original: HashMap<String, String> = HashMap::new();
    let mut unexpected = Vec::new();
    let mut accepted = Vec::with_capacity(snapshots.len());
    for (snapshot, (path, name)) in snapshots.into_iter().zip(renamed) {
        if names.torch_name(&path) == name && !original.contains_key(&path) {
            original.insert(path, name);
            accepted.push(snapshot);
        } else {
            unexpected.push(name);
        }
    }
    let torch_name = |path: &String| original.get(path).cloned().unwrap_or_else(|| path.clone());

    let mut module = module;
    let result = module.apply(accepted, None, Some(Box::new(PyTorchToBurnAdapter)), false);
    let missing: Vec<String> = result
        .missing
        .iter()
        .map(|(path, _)| names.torch_name(path))
        .collect();
    unexpected.extend(result.unused.iter().map(torch_name));
    // Linear weights were transposed on the way in: a mis-shaped one is reported as stored
    let linear_weights: HashSet<String> = if result.errors.is_empty() {
        HashSet::new()
    } else {
        module
            .collect(None, None, false)
            .iter()
            .filter(|s| {
                s.module_type().as_deref() == Some("Struct:Linear")
                    && s.path_stack
                        .as_ref()
                        .and_then(|p| p.last())
                        .map(String::as_str)
                        == Some("weight")
            })
            .map(TensorSnapshot::full_path)
            .collect()
    };
    let misshaped: Vec<String> = result
        .errors
        .iter()
        .map(|error| match error {
            ApplyError::ShapeMismatch { path, expected, .. } => {
                let name = torch_name(path);
                let mut expected = expected.to_vec();
                if linear_weights.contains(path) {
                    expected.reverse();
                }
                let found = dict
                    .tensors
                    .get(&name)
                    .map_or_else(Vec::new, |t| t.shape.clone());
                format!("{name}: expected {expected:?}, found {found:?}")
            }
            other => other.to_string(),
        })
        .collect();
    if missing.is_empty() && unexpected.is_empty() && misshaped.is_empty() {
        Ok(module)
    } else {
        Err(NnError::StateDict {
            missing,
            unexpected,
            misshaped,
        })
    }
}
