//! Parameter import/export in the original PyTorch `state_dict` layout.
//!
//! Tensors travel as plain `f32` host buffers keyed by the original names, so weights trained by
//! the original MolE load here and ours export back. PyTorch stores `Linear` weights as
//! `[out, in]`; Burn's `Linear` holds `[in, out]`, so both directions transpose.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use burn::module::Param;
use burn::nn::{Embedding, LayerNorm, Linear};
use burn::tensor::{backend::Backend, Tensor, TensorData};
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

/// Consumes tensors from a [`StateDict`] by name, collecting every problem instead of stopping
/// at the first, so one error lists all missing, unexpected and mis-shaped tensors.
pub struct StateLoader<'a, B: Backend> {
    dict: &'a StateDict,
    used: BTreeSet<String>,
    missing: Vec<String>,
    misshaped: Vec<String>,
    device: B::Device,
}

impl<'a, B: Backend> StateLoader<'a, B> {
    pub fn new(dict: &'a StateDict, device: &B::Device) -> Self {
        Self {
            dict,
            used: BTreeSet::new(),
            missing: Vec::new(),
            misshaped: Vec::new(),
            device: device.clone(),
        }
    }

    /// The tensor `name` with `shape`, or `None` (recorded) when absent or mis-shaped.
    pub fn tensor<const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
    ) -> Option<Tensor<B, D>> {
        match self.dict.tensors.get(name) {
            None => {
                self.missing.push(name.to_string());
                None
            }
            Some(t) => {
                self.used.insert(name.to_string());
                if t.shape != shape {
                    self.misshaped
                        .push(format!("{name}: expected {shape:?}, found {:?}", t.shape));
                    None
                } else {
                    Some(t.to_tensor(&self.device))
                }
            }
        }
    }

    /// Replaces `param` by the stored tensor when it is present and well-shaped.
    pub fn param<const D: usize>(&mut self, param: &mut Param<Tensor<B, D>>, name: &str) {
        let shape: [usize; D] = param.val().dims();
        if let Some(t) = self.tensor(name, shape) {
            // Loaded weights stay trainable: a tensor built from data does not track gradients.
            *param = Param::initialized(param.id, t.require_grad());
        }
    }

    /// A PyTorch `nn.Linear` (`weight [out, in]`, `bias [out]`) into a Burn `Linear`.
    pub fn linear(&mut self, linear: &mut Linear<B>, prefix: &str) {
        let [d_in, d_out] = linear.weight.val().dims();
        if let Some(w) = self.tensor::<2>(&format!("{prefix}.weight"), [d_out, d_in]) {
            linear.weight = Param::initialized(linear.weight.id, w.transpose().require_grad());
        }
        if let Some(bias) = linear.bias.as_mut() {
            self.param(bias, &format!("{prefix}.bias"));
        }
    }

    pub fn layer_norm(&mut self, norm: &mut LayerNorm<B>, prefix: &str) {
        self.param(&mut norm.gamma, &format!("{prefix}.weight"));
        if let Some(beta) = norm.beta.as_mut() {
            self.param(beta, &format!("{prefix}.bias"));
        }
    }

    pub fn embedding(&mut self, embedding: &mut Embedding<B>, prefix: &str) {
        self.param(&mut embedding.weight, &format!("{prefix}.weight"));
    }

    /// Fails with every missing, unexpected (present but never read) and mis-shaped tensor.
    pub fn finish(self) -> Result<(), NnError> {
        let unexpected: Vec<String> = self
            .dict
            .tensors
            .keys()
            .filter(|k| !self.used.contains(*k))
            .cloned()
            .collect();
        if self.missing.is_empty() && unexpected.is_empty() && self.misshaped.is_empty() {
            Ok(())
        } else {
            Err(NnError::StateDict {
                missing: self.missing,
                unexpected,
                misshaped: self.misshaped,
            })
        }
    }
}

/// Collects parameters into a [`StateDict`] under the original names.
#[derive(Default)]
pub struct StateSaver {
    pub dict: StateDict,
}

impl StateSaver {
    pub fn tensor<B: Backend, const D: usize>(&mut self, name: &str, tensor: Tensor<B, D>) {
        self.dict
            .tensors
            .insert(name.to_string(), HostTensor::from_tensor(tensor));
    }

    pub fn linear<B: Backend>(&mut self, linear: &Linear<B>, prefix: &str) {
        self.tensor(&format!("{prefix}.weight"), linear.weight.val().transpose());
        if let Some(bias) = &linear.bias {
            self.tensor(&format!("{prefix}.bias"), bias.val());
        }
    }

    pub fn layer_norm<B: Backend>(&mut self, norm: &LayerNorm<B>, prefix: &str) {
        self.tensor(&format!("{prefix}.weight"), norm.gamma.val());
        if let Some(beta) = &norm.beta {
            self.tensor(&format!("{prefix}.bias"), beta.val());
        }
    }

    pub fn embedding<B: Backend>(&mut self, embedding: &Embedding<B>, prefix: &str) {
        self.tensor(&format!("{prefix}.weight"), embedding.weight.val());
    }
}

/// Modules whose parameters map onto the original PyTorch names.
pub trait TorchState<B: Backend> {
    /// Reads this module's parameters from `loader` under `prefix`.
    fn load_torch_state(&mut self, loader: &mut StateLoader<'_, B>, prefix: &str);
    /// Writes this module's parameters to `saver` under `prefix`.
    fn save_torch_state(&self, saver: &mut StateSaver, prefix: &str);
}
