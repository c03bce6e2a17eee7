//! ggml tensor types: the ids a GGUF file stores, their names and their block geometry.
//!
//! [`KNOWN`] lists every type of ggml's enumeration (so that a file's size can be checked and an
//! unsupported type named in an error); [`GgmlType`] is the subset [`super::dequant`] turns
//! into `f32`.

/// `(id, name, elements per block, bytes per block)` of every ggml type.
const KNOWN: &[(u32, &str, u64, u64)] = &[
    (0, "F32", 1, 4),
    (1, "F16", 1, 2),
    (2, "Q4_0", 32, 18),
    (3, "Q4_1", 32, 20),
    (6, "Q5_0", 32, 22),
    (7, "Q5_1", 32, 24),
    (8, "Q8_0", 32, 34),
    (9, "Q8_1", 32, 40),
    (10, "Q2_K", 256, 84),
    (11, "Q3_K", 256, 110),
    (12, "Q4_K", 256, 144),
    (13, "Q5_K", 256, 176),
    (14, "Q6_K", 256, 210),
    (15, "Q8_K", 256, 292),
    (16, "IQ2_XXS", 256, 66),
    (17, "IQ2_XS", 256, 74),
    (18, "IQ3_XXS", 256, 98),
    (19, "IQ1_S", 256, 50),
    (20, "IQ4_NL", 32, 18),
    (21, "IQ3_S", 256, 110),
    (22, "IQ2_S", 256, 82),
    (23, "IQ4_XS", 256, 136),
    (24, "I8", 1, 1),
    (25, "I16", 1, 2),
    (26, "I32", 1, 4),
    (27, "I64", 1, 8),
    (28, "F64", 1, 8),
    (29, "IQ1_M", 256, 56),
    (30, "BF16", 1, 2),
    (34, "TQ1_0", 256, 54),
    (35, "TQ2_0", 256, 66),
    (39, "MXFP4", 32, 17),
    (40, "NVFP4", 64, 36),
    (41, "Q1_0", 128, 18),
];

fn known(id: u32) -> Option<&'static (u32, &'static str, u64, u64)> {
    KNOWN.iter().find(|k| k.0 == id)
}

/// The name of ggml type `id` (`"Q4_K"`), or `"type <id>"` for an id ggml does not define.
pub fn type_name(id: u32) -> String {
    known(id).map_or_else(|| format!("type {id}"), |k| k.1.to_string())
}

/// `(elements per block, bytes per block)` of ggml type `id`, if ggml defines it.
pub fn block_geometry(id: u32) -> Option<(u64, u64)> {
    known(id).map(|k| (k.2, k.3))
}

/// The tensor types that can be dequantized (spelled as ggml spells them).
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q8_0,
    Q4_0,
    Q4_1,
    Q4_K,
    Q6_K,
}

impl GgmlType {
    /// Every supported type.
    pub const ALL: [GgmlType; 8] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
    ];

    /// The supported type with ggml id `id`.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        GgmlType::ALL.into_iter().find(|t| t.id() == id)
    }

    /// ggml's id of this type.
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q8_0 => 8,
            GgmlType::Q4_K => 12,
            GgmlType::Q6_K => 14,
            GgmlType::BF16 => 30,
        }
    }

    pub fn name(self) -> &'static str {
        known(self.id()).map_or("?", |k| k.1)
    }

    /// Elements per block (1 for the plain float types).
    pub fn block_elems(self) -> usize {
        known(self.id()).map_or(1, |k| k.2 as usize)
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        known(self.id()).map_or(1, |k| k.3 as usize)
    }

    /// `"F32, F16, …"`: the supported types, for error messages.
    pub fn supported_list() -> String {
        GgmlType::ALL.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_types_round_trip_through_their_ids() {
        for t in GgmlType::ALL {
            assert_eq!(GgmlType::from_id(t.id()), Some(t));
            assert_eq!(type_name(t.id()), t.name());
        }
        assert_eq!(GgmlType::from_id(13), None);
        assert_eq!(type_name(13), "Q5_K");
        assert_eq!(type_name(99), "type 99");
        assert_eq!(block_geometry(12), Some((256, 144)));
        assert_eq!((GgmlType::Q6_K.block_elems(), GgmlType::Q6_K.block_bytes()), (256, 210));
    }
}
