//! A streaming writer of float32 safetensors files: the header is computed from the shapes up
//! front, then each tensor's data is appended as it is produced, so an import never holds more
//! than one dequantized tensor in memory.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;

use serde_json::json;

/// One tensor of the file, in the order its data is written.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub shape: Vec<u64>,
}

impl Entry {
    pub fn n_bytes(&self) -> u64 {
        self.shape.iter().product::<u64>() * 4
    }
}

/// The 8-byte length, then the JSON header padded with spaces to a multiple of 8 (so the data
/// section starts aligned).
pub fn header(entries: &[Entry], metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let mut map = serde_json::Map::new();
    map.insert("__metadata__".into(), json!(metadata));
    let mut offset = 0u64;
    for e in entries {
        let end = offset + e.n_bytes();
        map.insert(
            e.name.clone(),
            json!({"dtype": "F32", "shape": e.shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut text = serde_json::Value::Object(map).to_string().into_bytes();
    while !text.len().is_multiple_of(8) {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text);
    out
}

/// The little-endian bytes of `data` (borrowed on little-endian machines).
pub fn f32_le_bytes(data: &[f32]) -> Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        // SAFETY: `f32` has no padding and every byte of it is initialised; `u8` has alignment
        // 1; the slice covers exactly the `data.len() * 4` bytes `data` owns and borrows them
        // for `data`'s lifetime.
        Cow::Borrowed(unsafe {
            std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), std::mem::size_of_val(data))
        })
    } else {
        Cow::Owned(data.iter().flat_map(|v| v.to_le_bytes()).collect())
    }
}

/// Writes `data` as little-endian f32.
pub fn write_f32(w: &mut impl Write, data: &[f32]) -> std::io::Result<()> {
    w.write_all(&f32_le_bytes(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_file_reads_back_with_the_safetensors_crate() {
        let entries = vec![
            Entry { name: "b".into(), shape: vec![2, 3] },
            Entry { name: "a".into(), shape: vec![1] },
        ];
        let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
        let mut bytes = header(&entries, &meta);
        assert_eq!((bytes.len() - 8) % 8, 0);
        write_f32(&mut bytes, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        write_f32(&mut bytes, &[-7.5]).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let b = st.tensor("b").unwrap();
        assert_eq!(b.shape(), [2, 3]);
        assert_eq!(b.dtype(), safetensors::Dtype::F32);
        assert_eq!(&b.data()[4..8], 2.0f32.to_le_bytes());
        assert_eq!(st.tensor("a").unwrap().data(), (-7.5f32).to_le_bytes());
        let (_, m) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(m.metadata().as_ref().unwrap()["format"], "pt");
    }
}
