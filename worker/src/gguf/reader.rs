//! Reading a GGUF file (versions 2 and 3, little-endian): the header, every metadata value
//! (all scalar types, strings, arrays — nested too), the tensor table, and the tensor bytes
//! through a memory map.
//!
//! Everything the header promises is checked against the file before it is used: a count, a
//! string length or a tensor's extent past the end of the file is a [`GgufError::Truncated`]
//! naming what was being read, so a damaged file is an error, never an out-of-bounds read or an
//! allocation the file's size cannot back.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::error::GgufError;
use super::types::{GgmlType, block_geometry, type_name};
use super::value::Value;

/// llama.cpp's alignment of the tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml tensors have at most four dimensions.
const MAX_DIMS: u32 = 4;
/// Arrays nest this deep at most; the format allows any depth, which would let a small
/// malicious file exhaust the stack.
const MAX_ARRAY_DEPTH: usize = 8;

/// One entry of the tensor table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions in ggml order: the fastest-moving (a row's length) first.
    pub dims: Vec<u64>,
    /// ggml type id (see [`super::types`]).
    pub type_id: u32,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
    pub n_elements: u64,
    pub n_bytes: u64,
}

impl TensorInfo {
    /// The shape in PyTorch order (slowest-moving first), as a Hugging Face snapshot stores it.
    pub fn shape(&self) -> Vec<u64> {
        self.dims.iter().rev().copied().collect()
    }

    /// The type, if it can be dequantized.
    pub fn ggml_type(&self) -> Option<GgmlType> {
        GgmlType::from_id(self.type_id)
    }

    /// `"Q4_K"`, or `"type 99"` for an unknown id.
    pub fn type_name(&self) -> String {
        type_name(self.type_id)
    }
}

/// An open GGUF file: its metadata and tensor table parsed, its bytes memory-mapped.
pub struct GgufFile {
    path: PathBuf,
    map: Mmap,
    version: u32,
    metadata: Vec<(String, Value)>,
    by_key: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    alignment: u64,
    data_start: u64,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

/// A bounds-checked little-endian reader over the file's bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn truncated(&self, what: &str, needed: u64) -> GgufError {
        GgufError::Truncated {
            path: self.path.to_path_buf(),
            what: what.to_string(),
            needed,
            len: self.bytes.len() as u64,
        }
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8], GgufError> {
        let end = (self.pos as u64).saturating_add(n);
        if end > self.bytes.len() as u64 {
            return Err(self.truncated(&what(), end));
        }
        let s = &self.bytes[self.pos..end as usize];
        self.pos = end as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N], GgufError> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, GgufError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, GgufError> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A length-prefixed UTF-8 string.
    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String, GgufError> {
        let len = self.u64(what)?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|e| GgufError::Malformed {
            path: self.path.to_path_buf(),
            what: what(),
            why: format!("string is not UTF-8 ({e})"),
        })
    }

    fn value(&mut self, type_id: u32, key: &str, depth: usize) -> Result<Value, GgufError> {
        let what = || format!("the metadata value `{key}`");
        Ok(match type_id {
            0 => Value::U8(u8::from_le_bytes(self.array(&what)?)),
            1 => Value::I8(i8::from_le_bytes(self.array(&what)?)),
            2 => Value::U16(u16::from_le_bytes(self.array(&what)?)),
            3 => Value::I16(i16::from_le_bytes(self.array(&what)?)),
            4 => Value::U32(u32::from_le_bytes(self.array(&what)?)),
            5 => Value::I32(i32::from_le_bytes(self.array(&what)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(&what)?)),
            7 => {
                let [b] = self.array(&what)?;
                match b {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    other => return Err(self.bad(key, format!("bool byte is {other}, not 0 or 1"))),
                }
            }
            8 => Value::String(self.string(&what)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(
                        self.bad(key, format!("arrays nested deeper than {MAX_ARRAY_DEPTH}"))
                    );
                }
                let elem = self.u32(&what)?;
                let count = self.u64(&what)?;
                let min_size = match elem {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    9 => 12,
                    other => {
                        return Err(self.bad(
                            key,
                            format!("array of unknown value type {other} (known: 0 to 12)"),
                        ));
                    }
                };
                // Reject a count the rest of the file cannot hold before allocating for it.
                let needed = count.saturating_mul(min_size);
                if needed > self.remaining() as u64 {
                    return Err(self.truncated(
                        &format!("the {count} elements of metadata `{key}`"),
                        (self.pos as u64).saturating_add(needed),
                    ));
                }
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.value(elem, key, depth + 1)?);
                }
                Value::Array(elem, items)
            }
            10 => Value::U64(u64::from_le_bytes(self.array(&what)?)),
            11 => Value::I64(i64::from_le_bytes(self.array(&what)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(&what)?)),
            other => {
                return Err(self.bad(key, format!("unknown value type {other} (known: 0 to 12)")));
            }
        })
    }

    fn bad(&self, key: &str, why: String) -> GgufError {
        GgufError::Metadata { path: self.path.to_path_buf(), key: key.to_string(), why }
    }
}

impl GgufFile {
    /// Opens and parses `path`; the tensor data stays mapped, not read.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, GgufError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(GgufError::io(path))?;
        let len = file.metadata().map_err(GgufError::io(path))?.len();
        if len < 4 {
            let mut head = Vec::new();
            std::io::Read::read_to_end(&mut &file, &mut head).map_err(GgufError::io(path))?;
            return Err(GgufError::BadMagic {
                path: path.to_path_buf(),
                found: String::from_utf8_lossy(&head).into_owned(),
            });
        }
        // SAFETY: the file is only read through the map, and is treated as immutable while
        // mapped: an importer reads a downloaded model file nobody writes to at the same time.
        let map = unsafe { Mmap::map(&file) }.map_err(GgufError::io(path))?;
        Self::parse(path, map)
    }

    fn parse(path: &Path, map: Mmap) -> Result<GgufFile, GgufError> {
        let mut c = Cursor { bytes: &map, pos: 0, path };
        let magic: [u8; 4] = c.array(&|| "the magic".into())?;
        if &magic != b"GGUF" {
            return Err(GgufError::BadMagic {
                path: path.to_path_buf(),
                found: magic.escape_ascii().to_string(),
            });
        }
        let version = c.u32(&|| "the version".into())?;
        if !(2..=3).contains(&version) {
            let hint = if version.swap_bytes() == 3 || version.swap_bytes() == 2 {
                " (this looks like a big-endian file)"
            } else {
                ""
            };
            return Err(GgufError::UnsupportedVersion { path: path.to_path_buf(), version, hint });
        }
        let tensor_count = c.u64(&|| "the tensor count".into())?;
        let kv_count = c.u64(&|| "the metadata count".into())?;
        let mut metadata = Vec::new();
        let mut by_key = HashMap::new();
        for i in 0..kv_count {
            let key = c.string(&|| format!("metadata key {i} of {kv_count}"))?;
            let type_id = c.u32(&|| format!("the type of metadata `{key}`"))?;
            let value = c.value(type_id, &key, 0)?;
            if by_key.insert(key.clone(), metadata.len()).is_some() {
                return Err(c.bad(&key, "appears twice".into()));
            }
            metadata.push((key, value));
        }
        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some((k, v)) => match v {
                Value::U32(a) if a.is_power_of_two() => u64::from(*a),
                other => {
                    return Err(c.bad(k, format!("expected a power of two (u32), found {other:?}")));
                }
            },
        };
        let mut tensors: Vec<TensorInfo> = Vec::new();
        let mut names = HashMap::new();
        for i in 0..tensor_count {
            let name = c.string(&|| format!("the name of tensor {i} of {tensor_count}"))?;
            let what = || format!("the description of tensor `{name}`");
            let n_dims = c.u32(&what)?;
            let bad = |why: String| GgufError::Tensor {
                path: path.to_path_buf(),
                tensor: name.clone(),
                why,
            };
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(bad(format!("{n_dims} dimensions (ggml allows 1 to {MAX_DIMS})")));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(c.u64(&what)?);
            }
            let type_id = c.u32(&what)?;
            let offset = c.u64(&what)?;
            let (block_elems, block_bytes) = block_geometry(type_id)
                .ok_or_else(|| bad(format!("unknown ggml type id {type_id}")))?;
            let n_elements = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| bad(format!("dimensions {dims:?} overflow")))?;
            if dims[0] % block_elems != 0 {
                return Err(bad(format!(
                    "rows of {} elements are not whole blocks of {block_elems} ({})",
                    dims[0],
                    type_name(type_id)
                )));
            }
            let n_bytes = (n_elements / block_elems)
                .checked_mul(block_bytes)
                .ok_or_else(|| bad(format!("dimensions {dims:?} overflow")))?;
            if offset % alignment != 0 {
                return Err(bad(format!("data offset {offset} is not a multiple of {alignment}")));
            }
            if names.insert(name.clone(), tensors.len()).is_some() {
                return Err(bad("appears twice in the tensor table".into()));
            }
            tensors.push(TensorInfo { name, dims, type_id, offset, n_elements, n_bytes });
        }
        let data_start = (c.pos as u64).div_ceil(alignment) * alignment;
        let file_len = map.len() as u64;
        for t in &tensors {
            let end = data_start.saturating_add(t.offset).saturating_add(t.n_bytes);
            if end > file_len {
                return Err(GgufError::Truncated {
                    path: path.to_path_buf(),
                    what: format!("the data of tensor `{}`", t.name),
                    needed: end,
                    len: file_len,
                });
            }
        }
        Ok(GgufFile {
            path: path.to_path_buf(),
            map,
            version,
            metadata,
            by_key,
            tensors,
            alignment,
            data_start,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Every metadata entry, in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.by_key.get(key).map(|&i| &self.metadata[i].1)
    }

    /// The tensor table, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The stored bytes of `info` (bounds were checked when the file was opened).
    pub fn tensor_bytes(&self, info: &TensorInfo) -> &[u8] {
        let start = (self.data_start + info.offset) as usize;
        &self.map[start..start + info.n_bytes as usize]
    }

    /// A metadata error naming `key`.
    pub fn metadata_error(&self, key: &str, why: impl Into<String>) -> GgufError {
        GgufError::Metadata { path: self.path.clone(), key: key.to_string(), why: why.into() }
    }

    fn typed<'a, T>(
        &'a self,
        key: &str,
        want: &str,
        f: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Result<Option<T>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => f(v).map(Some).ok_or_else(|| {
                self.metadata_error(key, format!("expected {want}, found {}", v.type_name()))
            }),
        }
    }

    /// A non-negative integer, if present.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        self.typed(key, "a non-negative integer", Value::as_u64)
    }

    /// A non-negative integer that must be present.
    pub fn req_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.opt_u64(key)?.ok_or_else(|| self.metadata_error(key, "missing"))
    }

    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>, GgufError> {
        self.typed(key, "a float", Value::as_f64)
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        self.typed(key, "a bool", Value::as_bool)
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        self.typed(key, "a string", Value::as_str)
    }

    pub fn req_str(&self, key: &str) -> Result<&str, GgufError> {
        self.opt_str(key)?.ok_or_else(|| self.metadata_error(key, "missing"))
    }

    /// An array of strings, if present.
    pub fn opt_strings(&self, key: &str) -> Result<Option<Vec<&str>>, GgufError> {
        self.typed(key, "an array of strings", |v| {
            v.as_array()?.iter().map(Value::as_str).collect::<Option<Vec<_>>>()
        })
    }

    /// An array of integers, if present.
    pub fn opt_ints(&self, key: &str) -> Result<Option<Vec<i64>>, GgufError> {
        self.typed(key, "an array of integers", |v| {
            v.as_array()?.iter().map(Value::as_i64).collect::<Option<Vec<_>>>()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{GgufBuilder, tensor_f32};
    use super::*;

    fn open_bytes(bytes: &[u8]) -> (tempfile::TempDir, Result<GgufFile, GgufError>) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.gguf");
        std::fs::write(&p, bytes).unwrap();
        let r = GgufFile::open(&p);
        (dir, r)
    }

    fn sample() -> Vec<u8> {
        let mut b = GgufBuilder::new();
        b.kv("general.architecture", Value::String("llama".into()));
        b.kv("u8", Value::U8(7));
        b.kv("i8", Value::I8(-7));
        b.kv("u16", Value::U16(65_000));
        b.kv("i16", Value::I16(-30_000));
        b.kv("u32", Value::U32(4_000_000_000));
        b.kv("i32", Value::I32(-2_000_000_000));
        b.kv("f32", Value::F32(1.5));
        b.kv("bool", Value::Bool(true));
        b.kv("u64", Value::U64(u64::MAX));
        b.kv("i64", Value::I64(i64::MIN));
        b.kv("f64", Value::F64(-0.25));
        b.kv(
            "strings",
            Value::Array(8, vec![Value::String("a b".into()), Value::String("é".into())]),
        );
        b.kv("ints", Value::Array(5, vec![Value::I32(3), Value::I32(-1)]));
        b.kv("nested", Value::Array(9, vec![Value::Array(7, vec![Value::Bool(false)])]));
        b.tensor(tensor_f32("a", &[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
        b.tensor(tensor_f32("b", &[5], &[-1.0; 5]));
        b.build()
    }

    #[test]
    fn reads_every_value_type_and_the_tensor_table() {
        let (_d, f) = open_bytes(&sample());
        let f = f.unwrap();
        assert_eq!(f.version(), 3);
        assert_eq!(f.alignment(), 32);
        assert_eq!(f.req_str("general.architecture").unwrap(), "llama");
        assert_eq!(f.get("u8"), Some(&Value::U8(7)));
        assert_eq!(f.get("i8"), Some(&Value::I8(-7)));
        assert_eq!(f.get("u16"), Some(&Value::U16(65_000)));
        assert_eq!(f.get("i16"), Some(&Value::I16(-30_000)));
        assert_eq!(f.req_u64("u32").unwrap(), 4_000_000_000);
        assert_eq!(f.get("i32"), Some(&Value::I32(-2_000_000_000)));
        assert_eq!(f.opt_f64("f32").unwrap(), Some(1.5));
        assert_eq!(f.opt_bool("bool").unwrap(), Some(true));
        assert_eq!(f.req_u64("u64").unwrap(), u64::MAX);
        assert_eq!(f.get("i64"), Some(&Value::I64(i64::MIN)));
        assert_eq!(f.opt_f64("f64").unwrap(), Some(-0.25));
        assert_eq!(f.opt_strings("strings").unwrap(), Some(vec!["a b", "é"]));
        assert_eq!(f.opt_ints("ints").unwrap(), Some(vec![3, -1]));
        assert_eq!(
            f.get("nested"),
            Some(&Value::Array(9, vec![Value::Array(7, vec![Value::Bool(false)])]))
        );
        assert_eq!(f.opt_u64("missing").unwrap(), None);
        let e = f.req_u64("strings").unwrap_err().to_string();
        assert!(e.contains("`strings`") && e.contains("array of string"), "{e}");
        assert_eq!(f.tensors().len(), 2);
        let a = f.tensor("a").unwrap();
        assert_eq!((a.dims.clone(), a.shape(), a.n_bytes), (vec![3, 2], vec![2, 3], 24));
        let bytes = f.tensor_bytes(a);
        let vals: Vec<f32> =
            bytes.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(vals, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let b = f.tensor("b").unwrap();
        assert_eq!(b.offset % 32, 0);
        assert_eq!(f.tensor_bytes(b).len(), 20);
    }

    #[test]
    fn a_custom_alignment_is_honoured() {
        let mut b = GgufBuilder::new();
        b.alignment(64);
        b.tensor(tensor_f32("x", &[1], &[2.0]));
        b.tensor(tensor_f32("y", &[1], &[3.0]));
        let (_d, f) = open_bytes(&b.build());
        let f = f.unwrap();
        assert_eq!(f.alignment(), 64);
        let y = f.tensor("y").unwrap();
        assert_eq!(y.offset, 64);
        assert_eq!(f.tensor_bytes(y), 3.0f32.to_le_bytes());
    }

    #[test]
    fn bad_magic_and_version_are_named() {
        let mut bytes = sample();
        bytes[..4].copy_from_slice(b"GGML");
        let e = open_bytes(&bytes).1.unwrap_err().to_string();
        assert!(e.contains("not a GGUF file") && e.contains("GGML"), "{e}");
        let e = open_bytes(b"GG").1.unwrap_err().to_string();
        assert!(e.contains("not a GGUF file"), "{e}");
        let e = open_bytes(b"").1.unwrap_err().to_string();
        assert!(e.contains("not a GGUF file"), "{e}");
        let mut bytes = sample();
        bytes[4..8].copy_from_slice(&1u32.to_le_bytes());
        let e = open_bytes(&bytes).1.unwrap_err().to_string();
        assert!(e.contains("version 1 is not supported"), "{e}");
        bytes[4..8].copy_from_slice(&3u32.to_be_bytes());
        let e = open_bytes(&bytes).1.unwrap_err().to_string();
        assert!(e.contains("big-endian"), "{e}");
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = sample();
        for len in 0..bytes.len() {
            let r = open_bytes(&bytes[..len]).1;
            let e = r.expect_err(&format!("a file cut at {len} bytes opened")).to_string();
            assert!(e.contains("truncated") || e.contains("not a GGUF file"), "cut at {len}: {e}");
        }
        assert!(open_bytes(&bytes).1.is_ok());
    }

    #[test]
    fn absurd_counts_and_types_are_refused() {
        // An array claiming 2^60 elements in a tiny file.
        let mut b = GgufBuilder::new();
        b.kv("big", Value::Array(4, vec![Value::U32(1)]));
        let mut bytes = b.build();
        let at = bytes.windows(3).position(|w| w == b"big").unwrap() + 3 + 4 + 4;
        bytes[at..at + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
        let e = open_bytes(&bytes).1.unwrap_err().to_string();
        assert!(e.contains("truncated") && e.contains("`big`"), "{e}");
        // A string that is not UTF-8.
        let mut b = GgufBuilder::new();
        b.kv("name", Value::String("abc".into()));
        let mut bytes = b.build();
        let at = bytes.windows(3).position(|w| w == b"abc").unwrap();
        bytes[at] = 0xff;
        let e = open_bytes(&bytes).1.unwrap_err().to_string();
        assert!(e.contains("metadata value `name`") && e.contains("not UTF-8"), "{e}");
        // An unknown value type.
        let mut b = GgufBuilder::new();
        b.kv("odd", Value::U8(1));
        let mut bytes = b.build();
        let at = bytes.windows(3).position(|w| w == b"odd").unwrap() + 3;
        bytes[at..at + 4].copy_from_slice(&77u32.to_le_bytes());
        let e = open_bytes(&bytes).1.unwrap_err().to_string();
        assert!(e.contains("`odd`") && e.contains("unknown value type 77"), "{e}");
        // An unknown tensor type.
        let mut b = GgufBuilder::new();
        let mut t = tensor_f32("w", &[4], &[0.0; 4]);
        t.type_id = 99;
        b.tensor(t);
        let e = open_bytes(&b.build()).1.unwrap_err().to_string();
        assert!(e.contains("`w`") && e.contains("unknown ggml type id 99"), "{e}");
        // Rows that are not whole blocks.
        let mut b = GgufBuilder::new();
        let mut t = tensor_f32("q", &[16], &[0.0; 16]);
        t.type_id = GgmlType::Q8_0.id();
        t.data.truncate(17);
        b.tensor(t);
        let e = open_bytes(&b.build()).1.unwrap_err().to_string();
        assert!(e.contains("`q`") && e.contains("whole blocks of 32"), "{e}");
    }
}
