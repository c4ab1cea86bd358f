//! Run-time choice among the backends compiled in (cargo features `flex`, `cuda`, `wgpu`,
//! `vulkan`, `metal`).

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Result};

/// A `--device` value: `cpu`, `cuda[:N]`, `vulkan[:N]`, `wgpu[:N]`, `metal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
    Wgpu(usize),
    Vulkan(usize),
    Metal,
}

impl FromStr for DeviceSpec {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let (kind, index) = match s.split_once(':') {
            Some((k, i)) => (
                k,
                i.parse::<usize>()
                    .map_err(|_| anyhow::anyhow!("device `{s}`: `{i}` is not a device index"))?,
            ),
            None => (s, 0),
        };
        Ok(match kind.to_ascii_lowercase().as_str() {
            "cpu" | "flex" => Self::Cpu,
            "cuda" | "gpu" => Self::Cuda(index),
            "wgpu" => Self::Wgpu(index),
            "vulkan" => Self::Vulkan(index),
            "metal" => Self::Metal,
            _ => {
                bail!("unknown device `{s}`: expected cpu, cuda[:N], vulkan[:N], wgpu[:N] or metal")
            }
        })
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => write!(f, "cpu"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
            Self::Wgpu(i) => write!(f, "wgpu:{i}"),
            Self::Vulkan(i) => write!(f, "vulkan:{i}"),
            Self::Metal => write!(f, "metal"),
        }
    }
}

/// Floating-point precision of the model's activations (`--precision`). Parameters and the
/// optimiser state stay in f32 (mixed precision); LayerNorm, softmax and losses run in f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    F32,
    Bf16,
    F16,
}

/// The compute dtype for `precision` on this device (`None` picks bf16 on CUDA and f32
/// elsewhere), or an error when the device cannot compute in it. `Ok(None)` means f32.
pub fn compute_dtype<B: burn::tensor::backend::Backend>(
    device: &B::Device,
    spec: DeviceSpec,
    precision: Option<Precision>,
) -> Result<Option<burn::tensor::DType>> {
    let precision = precision.unwrap_or(match spec {
        DeviceSpec::Cuda(_) => Precision::Bf16,
        _ => Precision::F32,
    });
    let dtype = match precision {
        Precision::F32 => return Ok(None),
        Precision::Bf16 => burn::tensor::DType::BF16,
        Precision::F16 => burn::tensor::DType::F16,
    };
    if !B::supports_dtype(device, dtype) {
        bail!("device {spec} cannot compute in {precision:?}; use --precision f32");
    }
    tracing::info!(
        "computing in {precision:?} on {spec} (f32 parameters; LayerNorm, softmax and losses in f32)"
    );
    Ok(Some(dtype))
}

/// The backends this binary was compiled with.
pub fn compiled_backends() -> Vec<&'static str> {
    let mut v = Vec::new();
    if cfg!(feature = "flex") {
        v.push("cpu (flex)");
    }
    if cfg!(feature = "cuda") {
        v.push("cuda");
    }
    if cfg!(feature = "wgpu") {
        v.push("wgpu");
    }
    if cfg!(feature = "vulkan") {
        v.push("vulkan");
    }
    if cfg!(feature = "metal") {
        v.push("metal");
    }
    v
}

/// The default device: the first GPU backend compiled in, else the CPU.
pub fn default_device() -> DeviceSpec {
    if cfg!(feature = "cuda") {
        DeviceSpec::Cuda(0)
    } else if cfg!(feature = "vulkan") {
        DeviceSpec::Vulkan(0)
    } else if cfg!(feature = "metal") {
        DeviceSpec::Metal
    } else if cfg!(feature = "wgpu") {
        DeviceSpec::Wgpu(0)
    } else {
        DeviceSpec::Cpu
    }
}

/// Fails with [`missing_feature`] when `spec`'s backend is not compiled in (checked before a
/// command writes anything).
pub fn ensure_compiled(spec: DeviceSpec) -> Result<()> {
    let compiled = match spec {
        DeviceSpec::Cpu => cfg!(feature = "flex"),
        DeviceSpec::Cuda(_) => cfg!(feature = "cuda"),
        DeviceSpec::Wgpu(_) => cfg!(feature = "wgpu"),
        DeviceSpec::Vulkan(_) => cfg!(feature = "vulkan"),
        DeviceSpec::Metal => cfg!(feature = "metal"),
    };
    if compiled {
        Ok(())
    } else {
        Err(missing_feature(spec))
    }
}

pub fn missing_feature(spec: DeviceSpec) -> anyhow::Error {
    let feature = match spec {
        DeviceSpec::Cpu => "flex",
        DeviceSpec::Cuda(_) => "cuda",
        DeviceSpec::Wgpu(_) => "wgpu",
        DeviceSpec::Vulkan(_) => "vulkan",
        DeviceSpec::Metal => "metal",
    };
    anyhow::anyhow!(
        "device `{spec}` needs the `{feature}` cargo feature, which this binary was built without \
         (compiled: {}). Rebuild with `cargo build --release -p mole-cli --features {feature}`.",
        compiled_backends().join(", ")
    )
}

/// The device of backend kind `$kind` for `spec`, or an error when `spec` is another kind
/// (data-parallel devices must share one backend).
#[macro_export]
#[doc(hidden)]
macro_rules! __device_of_kind {
    ($first:expr, $spec:expr, $pattern:pat => $device:expr) => {
        match $spec {
            $pattern => Ok::<_, anyhow::Error>($device),
            other => Err(anyhow::anyhow!(
                "--devices {other} and {}: all devices must use the same backend",
                $first
            )),
        }
    };
}

/// Calls `$body` with the type alias `$B` bound to the autodiff backend for `$spec`, and
/// `$device` to its device. Each arm exists only when its feature is compiled in.
///
/// The forms with a precision also bind `$dtype: Option<DType>`, the compute dtype to give
/// the model (`MolE::with_compute_dtype`). The `devices` form takes a non-empty
/// `&[DeviceSpec]` of one backend kind and binds `$devices: Vec<B::Device>` (data-parallel
/// training).
#[macro_export]
macro_rules! with_backend {
    (devices = $specs:expr, $precision:expr, |$B:ident, $devices:ident, $dtype:ident| $body:expr) => {{
        let specs: &[$crate::backend::DeviceSpec] = $specs;
        let precision = $precision;
        let first = specs[0];
        $crate::with_backend!(@kinds first, |$B, make| {
            let $devices = specs
                .iter()
                .map(|s| make(*s))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut $dtype = None;
            for (d, s) in $devices.iter().zip(specs) {
                $dtype = $crate::backend::compute_dtype::<$B>(d, *s, precision)?;
            }
            $body
        })
    }};
    ($spec:expr, $precision:expr, |$B:ident, $device:ident, $dtype:ident| $body:expr) => {{
        let spec = $spec;
        let precision = $precision;
        $crate::with_backend!(spec, |$B, $device| {
            let $dtype = $crate::backend::compute_dtype::<$B>(&$device, spec, precision)?;
            $body
        })
    }};
    ($spec:expr, |$B:ident, $device:ident| $body:expr) => {{
        let spec = $spec;
        $crate::with_backend!(@kinds spec, |$B, make| {
            let $device = make(spec)?;
            $body
        })
    }};
    (@kinds $first:expr, |$B:ident, $make:ident| $body:expr) => {{
        let first: $crate::backend::DeviceSpec = $first;
        #[allow(unreachable_patterns)]
        match first {
            #[cfg(feature = "flex")]
            $crate::backend::DeviceSpec::Cpu => {
                type $B = burn::backend::Autodiff<burn::backend::Flex>;
                let $make = |s: $crate::backend::DeviceSpec| $crate::__device_of_kind!(first, s,
                    $crate::backend::DeviceSpec::Cpu => burn::backend::flex::FlexDevice);
                $body
            }
            #[cfg(feature = "cuda")]
            $crate::backend::DeviceSpec::Cuda(_) => {
                type $B = burn::backend::Autodiff<burn::backend::Cuda>;
                let $make = |s: $crate::backend::DeviceSpec| $crate::__device_of_kind!(first, s,
                    $crate::backend::DeviceSpec::Cuda(i) => burn::backend::cuda::CudaDevice::new(i));
                $body
            }
            #[cfg(feature = "vulkan")]
            $crate::backend::DeviceSpec::Vulkan(_) => {
                type $B = burn::backend::Autodiff<burn::backend::Vulkan>;
                let $make = |s: $crate::backend::DeviceSpec| $crate::__device_of_kind!(first, s,
                    $crate::backend::DeviceSpec::Vulkan(i) => burn::backend::wgpu::WgpuDevice::DiscreteGpu(i));
                $body
            }
            #[cfg(feature = "wgpu")]
            $crate::backend::DeviceSpec::Wgpu(_) => {
                type $B = burn::backend::Autodiff<burn::backend::Wgpu>;
                let $make = |s: $crate::backend::DeviceSpec| $crate::__device_of_kind!(first, s,
                    $crate::backend::DeviceSpec::Wgpu(i) => if i == 0 {
                        burn::backend::wgpu::WgpuDevice::DefaultDevice
                    } else {
                        burn::backend::wgpu::WgpuDevice::DiscreteGpu(i)
                    });
                $body
            }
            #[cfg(feature = "metal")]
            $crate::backend::DeviceSpec::Metal => {
                type $B = burn::backend::Autodiff<burn::backend::Metal>;
                let $make = |s: $crate::backend::DeviceSpec| $crate::__device_of_kind!(first, s,
                    $crate::backend::DeviceSpec::Metal => burn::backend::wgpu::WgpuDevice::DefaultDevice);
                $body
            }
            other => Err($crate::backend::missing_feature(other)),
        }
    }};
}

/// Keeps freed memory in the process instead of handing it back to the kernel (glibc only).
///
/// Why: glibc serves each allocation above its mmap threshold (128 KiB, raised only as large
/// blocks are freed) with fresh pages and trims freed heap memory back to the kernel, so every
/// step's activations, gradients and product outputs (base: ~10 MB each) arrive as new pages
/// that the kernel must zero and fault in; on the CPU that was ~10% of base's training time.
/// With a fixed 32 MiB mmap threshold (glibc's maximum) and no trimming, freed buffers are
/// reused by the next step. Peak memory is unchanged; memory is returned at exit.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes allocator parameters; called before any other thread
    // exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 * 1024 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
