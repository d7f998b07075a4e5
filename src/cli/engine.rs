use clap::Args;
use graft::backend::{BackendKind, CudaTuning, DeviceRequest, EngineOptions, OrtOptions};

/// Engine flags shared by every command that runs a model.
#[derive(Args, Debug, Clone)]
pub struct EngineArgs {
    /// Inference engine: auto (ONNX Runtime, else tract), ort or tract.
    #[arg(long, default_value = "auto", value_parser = parse::<BackendKind>)]
    pub backend: BackendKind,
    /// ONNX Runtime device: auto (CUDA when usable, else CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto", value_parser = parse::<DeviceRequest>)]
    pub device: DeviceRequest,
    /// ONNX Runtime intra-op threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// CUDA: let convolutions and matrix products use TF32 tensor cores (faster; features differ
    /// from float32 ones by about 1e-3 relative).
    #[arg(long)]
    pub tf32: bool,
    /// CUDA: prefer [N, H, W, C] convolution kernels.
    #[arg(long)]
    pub nhwc: bool,
}

/// clap's parser for graft's `FromStr` types.
pub fn parse<T: std::str::FromStr<Err = graft::Error>>(s: &str) -> Result<T, String> {
    s.parse().map_err(|e: graft::Error| e.to_string())
}

impl EngineArgs {
    pub fn options(&self) -> EngineOptions {
        EngineOptions {
            backend: self.backend,
            ort: OrtOptions {
                device: self.device,
                threads: self.threads,
                cuda: CudaTuning { tf32: self.tf32, nhwc: self.nhwc },
            },
        }
    }
}
