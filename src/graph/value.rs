//! Tensors inside the tail: f32 activations and parameters, i64 shapes and indices.

use ndarray::{ArrayD, IxDyn};

pub use crate::backend::Value;
use crate::onnx::pb;

/// What an op reports when its inputs do not fit; the tail adds the node's name.
pub type OpResult<T> = std::result::Result<T, String>;

/// The f32 array of `v`, or an error naming `what`.
pub fn as_f32<'a>(v: &'a Value, what: &str) -> OpResult<&'a ArrayD<f32>> {
    match v {
        Value::F32(a) => Ok(a),
        other => Err(format!("{what} is {}, expected f32", other.dtype())),
    }
}

/// The i64 array of `v`, or an error naming `what`.
pub fn as_i64<'a>(v: &'a Value, what: &str) -> OpResult<&'a ArrayD<i64>> {
    match v {
        Value::I64(a) => Ok(a),
        other => Err(format!("{what} is {}, expected i64", other.dtype())),
    }
}

/// The elements of an integer tensor (shapes, axes, indices) as a flat list.
pub fn i64_list(v: &Value, what: &str) -> OpResult<Vec<i64>> {
    Ok(as_i64(v, what)?.iter().copied().collect())
}

/// Decodes an initializer or `Constant` tensor. Integer and boolean types become i64, double
/// becomes f32; external data and other types are an error naming the tensor.
pub fn from_proto(t: &pb::TensorProto) -> OpResult<Value> {
    use pb::tensor_proto::DataType as T;
    let shape: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
    let n: usize = shape.iter().product();
    let raw = &t.raw_data;
    if !t.external_data.is_empty() {
        return Err(format!("tensor `{}` keeps its data in an external file, which the tail cannot read", t.name));
    }
    let dtype =
        T::try_from(t.data_type).map_err(|_| format!("tensor `{}` has unknown type {}", t.name, t.data_type))?;
    let chunks = |w: usize| raw.chunks_exact(w);
    let value = match dtype {
        T::Float => Value::F32(vec_to(
            shape,
            if raw.is_empty() {
                t.float_data.clone()
            } else {
                chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
            },
            &t.name,
        )?),
        T::Double => Value::F32(vec_to(
            shape,
            if raw.is_empty() {
                t.double_data.iter().map(|&x| x as f32).collect()
            } else {
                chunks(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32).collect()
            },
            &t.name,
        )?),
        T::Int64 => Value::I64(vec_to(
            shape,
            if raw.is_empty() {
                t.int64_data.clone()
            } else {
                chunks(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect()
            },
            &t.name,
        )?),
        T::Int32 => Value::I64(vec_to(
            shape,
            if raw.is_empty() {
                t.int32_data.iter().map(|&x| x as i64).collect()
            } else {
                chunks(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64).collect()
            },
            &t.name,
        )?),
        T::Bool | T::Uint8 | T::Int8 => {
            let signed = dtype == T::Int8;
            Value::I64(vec_to(
                shape,
                if raw.is_empty() {
                    t.int32_data.iter().map(|&x| x as i64).collect()
                } else {
                    raw.iter().map(|&b| if signed { b as i8 as i64 } else { b as i64 }).collect()
                },
                &t.name,
            )?)
        }
        other => {
            return Err(format!(
                "tensor `{}` has type {}, which the tail does not support",
                t.name,
                other.as_str_name()
            ))
        }
    };
    if value.shape().iter().product::<usize>() != n {
        return Err(format!("tensor `{}`: data does not match its dims {:?}", t.name, t.dims));
    }
    Ok(value)
}

fn vec_to<T>(shape: Vec<usize>, data: Vec<T>, name: &str) -> OpResult<ArrayD<T>> {
    let n = data.len();
    ArrayD::from_shape_vec(IxDyn(&shape), data)
        .map_err(|_| format!("tensor `{name}`: {n} values do not fill its dims {shape:?}"))
}

/// `ONNX` type code of the `Cast`/`ConstantOfShape` element types the tail handles.
pub fn is_float_type(code: i64) -> OpResult<bool> {
    use pb::tensor_proto::DataType as T;
    match T::try_from(code as i32) {
        Ok(T::Float | T::Double | T::Float16 | T::Bfloat16) => Ok(true),
        Ok(T::Int64 | T::Int32 | T::Int16 | T::Int8 | T::Uint8 | T::Uint16 | T::Uint32 | T::Uint64 | T::Bool) => {
            Ok(false)
        }
        _ => Err(format!("element type {code} is not supported")),
    }
}
