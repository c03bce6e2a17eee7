//! A GGUF writer for the module's tests: small files built in memory, byte for byte as the
//! format lays them out, so the reader and the importer are tested on files they did not write
//! through their own code.

use super::types::GgmlType;
use super::value::Value;

/// One tensor to write: ggml-order dimensions and already encoded bytes.
pub struct RawTensor {
    pub name: String,
    pub dims: Vec<u64>,
    pub type_id: u32,
    pub data: Vec<u8>,
}

/// An F32 tensor with ggml-order `dims`.
pub fn tensor_f32(name: &str, dims: &[u64], values: &[f32]) -> RawTensor {
    RawTensor {
        name: name.to_string(),
        dims: dims.to_vec(),
        type_id: GgmlType::F32.id(),
        data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

#[derive(Default)]
pub struct GgufBuilder {
    kvs: Vec<(String, Value)>,
    tensors: Vec<RawTensor>,
    alignment: u64,
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

fn type_id(v: &Value) -> u32 {
    match v {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(..) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

fn put_payload(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.extend(x.to_le_bytes()),
        Value::I8(x) => out.extend(x.to_le_bytes()),
        Value::U16(x) => out.extend(x.to_le_bytes()),
        Value::I16(x) => out.extend(x.to_le_bytes()),
        Value::U32(x) => out.extend(x.to_le_bytes()),
        Value::I32(x) => out.extend(x.to_le_bytes()),
        Value::F32(x) => out.extend(x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(s) => put_string(out, s),
        Value::Array(elem, items) => {
            out.extend(elem.to_le_bytes());
            out.extend((items.len() as u64).to_le_bytes());
            for item in items {
                put_payload(out, item);
            }
        }
        Value::U64(x) => out.extend(x.to_le_bytes()),
        Value::I64(x) => out.extend(x.to_le_bytes()),
        Value::F64(x) => out.extend(x.to_le_bytes()),
    }
}

impl GgufBuilder {
    pub fn new() -> Self {
        GgufBuilder { alignment: 32, ..Default::default() }
    }

    pub fn kv(&mut self, key: &str, value: Value) -> &mut Self {
        self.kvs.push((key.to_string(), value));
        self
    }

    /// Sets `general.alignment`.
    pub fn alignment(&mut self, a: u32) -> &mut Self {
        self.alignment = u64::from(a);
        self.kv("general.alignment", Value::U32(a))
    }

    pub fn tensor(&mut self, t: RawTensor) -> &mut Self {
        self.tensors.push(t);
        self
    }

    /// The file's bytes; it ends right after the last tensor's data.
    pub fn build(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.kvs.len() as u64).to_le_bytes());
        for (k, v) in &self.kvs {
            put_string(&mut out, k);
            out.extend(type_id(v).to_le_bytes());
            put_payload(&mut out, v);
        }
        let align = |n: u64| n.div_ceil(self.alignment) * self.alignment;
        let mut offset = 0u64;
        let mut offsets = Vec::new();
        for t in &self.tensors {
            put_string(&mut out, &t.name);
            out.extend((t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(t.type_id.to_le_bytes());
            out.extend(offset.to_le_bytes());
            offsets.push(offset);
            offset = align(offset + t.data.len() as u64);
        }
        let data_start = align(out.len() as u64);
        for (t, off) in self.tensors.iter().zip(offsets) {
            out.resize((data_start + off) as usize, 0);
            out.extend(&t.data);
        }
        out
    }
}
