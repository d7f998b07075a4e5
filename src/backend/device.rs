//! Device selection (`--device auto|cpu|cuda[:N]`), kept free of any engine so that it can be
//! tested on machines without a GPU.

use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

/// What the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceRequest {
    /// CUDA device 0 when it works, else the CPU, silently (falling back is what `auto` means).
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA device N; an error when it cannot be used.
    Cuda(u32),
}

impl FromStr for DeviceRequest {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(DeviceRequest::Auto),
            "cpu" => Ok(DeviceRequest::Cpu),
            "cuda" => Ok(DeviceRequest::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceRequest::Cuda)
                .ok_or_else(|| Error::Invalid(format!("unknown device `{s}`: expected auto, cpu, cuda or cuda:N"))),
        }
    }
}

impl fmt::Display for DeviceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceRequest::Auto => write!(f, "auto"),
            DeviceRequest::Cpu => write!(f, "cpu"),
            DeviceRequest::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

crate::backend::serde_as_str!(DeviceRequest);

/// Where a model actually runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// The CPU.
    Cpu,
    /// CUDA device N.
    Cuda(u32),
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// The chosen device, and why `auto` did not choose CUDA. That reason is not a warning: falling
/// back is what `auto` means, and an explicit `cuda` that cannot be used is an error instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    /// The device chosen.
    pub device: Device,
    /// Why `auto` fell back to the CPU, when it did.
    pub cuda_unavailable: Option<String>,
}

/// Chooses a device. `try_cuda(n)` attempts to set up CUDA device `n` and says why it cannot.
pub fn select(request: DeviceRequest, try_cuda: impl FnOnce(u32) -> Result<(), String>) -> Result<Selection> {
    match request {
        DeviceRequest::Cpu => Ok(Selection { device: Device::Cpu, cuda_unavailable: None }),
        DeviceRequest::Cuda(n) => match try_cuda(n) {
            Ok(()) => Ok(Selection { device: Device::Cuda(n), cuda_unavailable: None }),
            Err(why) => Err(Error::Backend { backend: "ort", msg: format!("--device cuda:{n} is not usable: {why}") }),
        },
        DeviceRequest::Auto => Ok(match try_cuda(0) {
            Ok(()) => Selection { device: Device::Cuda(0), cuda_unavailable: None },
            Err(why) => Selection { device: Device::Cpu, cuda_unavailable: Some(short(&why)) },
        }),
    }
}

/// The gist of an engine's error: the part after its last "error: ", on one line, at most 200
/// characters (ONNX Runtime's messages carry source paths and stack context).
fn short(why: &str) -> String {
    let gist = why.rsplit("error: ").next().unwrap_or(why);
    let one_line: String = gist.split_whitespace().collect::<Vec<_>>().join(" ");
    one_line.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests() {
        assert_eq!("auto".parse::<DeviceRequest>().unwrap(), DeviceRequest::Auto);
        assert_eq!("cpu".parse::<DeviceRequest>().unwrap(), DeviceRequest::Cpu);
        assert_eq!("cuda".parse::<DeviceRequest>().unwrap(), DeviceRequest::Cuda(0));
        assert_eq!("cuda:3".parse::<DeviceRequest>().unwrap(), DeviceRequest::Cuda(3));
        for bad in ["gpu", "cuda:", "cuda:x", "CPU"] {
            assert!(bad.parse::<DeviceRequest>().is_err(), "{bad}");
        }
        for d in [DeviceRequest::Auto, DeviceRequest::Cpu, DeviceRequest::Cuda(2)] {
            assert_eq!(d.to_string().parse::<DeviceRequest>().unwrap(), d);
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(serde_json::from_str::<DeviceRequest>(&json).unwrap(), d, "{json}");
        }
        let err = serde_json::from_str::<DeviceRequest>("\"gpu\"").unwrap_err().to_string();
        assert!(err.contains("unknown device `gpu`"), "{err}");
    }

    #[test]
    fn auto_falls_back_to_the_cpu_and_keeps_the_reason() {
        let s = select(DeviceRequest::Auto, |_| Err("no CUDA provider in this build".into())).unwrap();
        assert_eq!(s.device, Device::Cpu);
        assert!(s.cuda_unavailable.unwrap().contains("no CUDA provider"));
        let long = "/src/provider_bridge_ort.cc:2043 [ONNXRuntimeError] : FAIL : Failed to load library x.so with error: libcublasLt.so.13: cannot open shared object file\n";
        let s = select(DeviceRequest::Auto, |_| Err(long.into())).unwrap();
        assert_eq!(s.cuda_unavailable.unwrap(), "libcublasLt.so.13: cannot open shared object file");
        let s = select(DeviceRequest::Auto, |n| if n == 0 { Ok(()) } else { Err("?".into()) }).unwrap();
        assert_eq!(s, Selection { device: Device::Cuda(0), cuda_unavailable: None });
    }

    #[test]
    fn explicit_cuda_errors_when_unavailable() {
        let err = select(DeviceRequest::Cuda(1), |_| Err("device 1 not found".into())).unwrap_err();
        assert!(err.to_string().contains("cuda:1 is not usable: device 1 not found"));
        assert_eq!(select(DeviceRequest::Cuda(1), |_| Ok(())).unwrap().device, Device::Cuda(1));
    }

    #[test]
    fn cpu_never_probes_cuda() {
        let s = select(DeviceRequest::Cpu, |_| panic!("must not probe")).unwrap();
        assert_eq!(s.device, Device::Cpu);
    }
}
