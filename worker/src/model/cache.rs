//! A preallocated key/value cache: one `[B, kv_heads, capacity, head_dim]` buffer per layer.

use tch::{Device, Kind, Tensor};

use super::error::ModelError;

/// Keys and values of the tokens seen so far, written in place (no reallocation per step).
///
/// Slot `s` of every row holds the token fed at absolute step `s` (pads included); the caller's
/// `attention_mask` says which slots are real.
#[derive(Debug)]
pub struct KvCache {
    pub(crate) keys: Vec<Tensor>,
    pub(crate) values: Vec<Tensor>,
    len: i64,
    capacity: i64,
    batch: i64,
}

impl KvCache {
    pub(crate) fn new(
        layers: i64,
        batch: i64,
        kv_heads: i64,
        capacity: i64,
        head_dim: i64,
        kind: Kind,
        device: Device,
    ) -> Result<KvCache, ModelError> {
        if batch <= 0 || capacity <= 0 {
            return Err(ModelError::Cache(format!(
                "batch ({batch}) and capacity ({capacity}) must be positive"
            )));
        }
        let shape = [batch, kv_heads, capacity, head_dim];
        let mut keys = Vec::with_capacity(layers as usize);
        let mut values = Vec::with_capacity(layers as usize);
        for _ in 0..layers {
            keys.push(Tensor::f_zeros(shape, (kind, device))?);
            values.push(Tensor::f_zeros(shape, (kind, device))?);
        }
        Ok(KvCache { keys, values, len: 0, capacity, batch })
    }

    /// Number of slots filled so far.
    pub fn len(&self) -> i64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> i64 {
        self.capacity
    }

    pub fn batch(&self) -> i64 {
        self.batch
    }

    /// Layer `layer`'s key buffer `[B, kv_heads, capacity, head_dim]` (a view; slots past
    /// [`KvCache::len`] hold stale or unwritten values).
    pub fn keys_of(&self, layer: usize) -> &Tensor {
        &self.keys[layer]
    }

    /// Forgets everything (the buffers are kept).
    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// Keeps only the first `len` slots.
    pub fn truncate(&mut self, len: i64) -> Result<(), ModelError> {
        if len < 0 || len > self.len {
            return Err(ModelError::Cache(format!(
                "cannot truncate to {len}: cache holds {}",
                self.len
            )));
        }
        self.len = len;
        Ok(())
    }

    pub(crate) fn advance(&mut self, t: i64) {
        self.len += t;
    }
}
