//! A judge model loaded by wax itself, decoded greedily.
//!
//! Requests are rendered with the snapshot's chat template (`system` and `user` messages, the
//! generation prompt, `enable_thinking` from the request), sorted by prompt length and decoded
//! [`BATCH`] at a time in one [`Session`] each, greedily, until an end-of-sequence id or the
//! token budget. The output is decoded without special tokens and any `<think>` block removed.

use super::error::JudgeError;
use super::http::strip_think;
use super::{Judge, JudgeRequest, Task};
use crate::generate::{Allowed, Chunk, GenerateOptions, Sampling, Session};
use crate::model::{Model, TokenRole};
use crate::tokenizer::{ChatArgs, Message, Tokenizer};
use std::path::{Path, PathBuf};
use tch::{Device, Kind};

/// Requests decoded together.
pub const BATCH: usize = 16;

/// A snapshot loaded as a judge.
pub struct LocalJudge {
    dir: PathBuf,
    model: Model,
    tokenizer: Tokenizer,
    max_new_tokens: usize,
}

impl LocalJudge {
    /// Loads the snapshot in `dir` onto `device` (`cpu`, `cuda`, `cuda:N`; `None`: CUDA when
    /// available), bfloat16 on CUDA and float32 on the CPU.
    pub fn load(
        dir: &Path,
        device: Option<&str>,
        max_new_tokens: usize,
    ) -> Result<LocalJudge, JudgeError> {
        let err = |why: String| JudgeError::Local { model: dir.display().to_string(), why };
        let device = match device {
            None => Device::cuda_if_available(),
            Some(s) => crate::device::parse_device(s)
                .ok_or_else(|| err(format!("unknown device {s:?} (use cpu, cuda or cuda:N)")))?,
        };
        if max_new_tokens == 0 {
            return Err(err("max_new_tokens must be at least 1".into()));
        }
        let kind = if device.is_cuda() { Kind::BFloat16 } else { Kind::Float };
        let tokenizer = Tokenizer::load(dir).map_err(|e| err(e.to_string()))?;
        if tokenizer.chat_template().is_none() {
            return Err(err("the snapshot has no chat template".into()));
        }
        if tokenizer.eos_ids().is_empty() {
            return Err(err("the snapshot names no end-of-sequence token".into()));
        }
        let model = Model::load(dir, device, kind).map_err(|e| err(e.to_string()))?;
        Ok(LocalJudge { dir: dir.to_path_buf(), model, tokenizer, max_new_tokens })
    }

    fn err(&self, why: impl std::fmt::Display) -> JudgeError {
        JudgeError::Local { model: self.dir.display().to_string(), why: why.to_string() }
    }

    /// Prompt token ids of one request.
    fn encode(&self, r: &JudgeRequest) -> Result<Vec<i64>, JudgeError> {
        let template =
            self.tokenizer.chat_template().ok_or_else(|| self.err("no chat template"))?;
        let messages = [Message::system(r.system.clone()), Message::user(r.user.clone())];
        let args = ChatArgs::new(true).enable_thinking(r.thinking);
        let text = template.render(&messages, &args).map_err(|e| self.err(e))?;
        let ids = self.tokenizer.encode(&text, false).map_err(|e| self.err(e))?;
        Ok(ids.into_iter().map(i64::from).collect())
    }

    /// Greedy outputs of one batch of prompts.
    fn decode_batch(&self, prompts: &[&Vec<i64>]) -> Result<Vec<String>, JudgeError> {
        let longest = prompts.iter().map(|p| p.len()).max().unwrap_or(0);
        let capacity = (longest + self.max_new_tokens) as i64;
        let seeds = vec![0u64; prompts.len()];
        let mut session =
            Session::new(&self.model, &seeds, capacity, Vec::new()).map_err(|e| self.err(e))?;
        let chunks: Vec<Chunk> =
            prompts.iter().map(|p| Chunk::uniform((*p).clone(), TokenRole::Prompt)).collect();
        session.append(&chunks).map_err(|e| self.err(e))?;
        let eos: Vec<i64> = self.tokenizer.eos_ids().iter().map(|&i| i64::from(i)).collect();
        let opts = GenerateOptions {
            max_new_tokens: self.max_new_tokens,
            sampling: Sampling::GREEDY,
            allowed: Allowed::Any,
            stop_tokens: eos.clone(),
            check_every: 8,
            ..Default::default()
        };
        let g = session.generate(&opts).map_err(|e| self.err(e))?;
        let mut out = Vec::with_capacity(prompts.len());
        for tokens in g.tokens {
            let ids: Vec<u32> =
                tokens.iter().filter(|t| !eos.contains(t)).map(|&t| t as u32).collect();
            let text = self.tokenizer.decode(&ids, true).map_err(|e| self.err(e))?;
            out.push(strip_think(&text).trim().to_string());
        }
        Ok(out)
    }
}

impl Judge for LocalJudge {
    fn name(&self) -> String {
        format!("local:{}", self.dir.display())
    }

    fn is_proxy(&self) -> bool {
        false
    }

    fn complete(&mut self, _: Task, requests: &[JudgeRequest]) -> Result<Vec<String>, JudgeError> {
        let _guard = tch::no_grad_guard();
        let prompts = requests.iter().map(|r| self.encode(r)).collect::<Result<Vec<_>, _>>()?;
        if let Some(i) = prompts.iter().position(Vec::is_empty) {
            return Err(self.err(format!("request {i} renders to no tokens")));
        }
        // Similar lengths together keep the left padding small.
        let mut order: Vec<usize> = (0..prompts.len()).collect();
        order.sort_by_key(|&i| prompts[i].len());
        let mut out = vec![String::new(); prompts.len()];
        for batch in order.chunks(BATCH) {
            let ps: Vec<&Vec<i64>> = batch.iter().map(|&i| &prompts[i]).collect();
            for (&i, text) in batch.iter().zip(self.decode_batch(&ps)?) {
                out[i] = text;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::rubric;
    use super::*;
    use crate::builtin::{BuiltinRef, LADDER, builtin_snapshot_in, builtin_tokenizer_dir_in};

    /// The smallest builtin model (random weights, ChatML template with `enable_thinking`),
    /// cached under the target directory like the other builtin-model tests.
    fn tiny() -> PathBuf {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
        let root = target.join("wax-builtin-cache");
        let tok = builtin_tokenizer_dir_in(&root).unwrap();
        builtin_snapshot_in(&root, BuiltinRef { size: &LADDER[0], seed: 0 }, &tok).unwrap()
    }

    #[test]
    fn outputs_follow_request_order_across_batches() {
        let mut j = LocalJudge::load(&tiny(), Some("cpu"), 5).unwrap();
        assert!(!j.is_proxy());
        // 20 prompts of distinct lengths: two batches, sorted by length inside `complete`.
        let reqs: Vec<JudgeRequest> = (0..20)
            .map(|i| {
                let task = Task::ALL[i % 3];
                rubric::request(task, "q", &format!("item {i} {}", "word ".repeat(3 * i)))
            })
            .collect();
        let a = j.complete(Task::Sentiment, &reqs).unwrap();
        assert_eq!(a.len(), 20);
        let reversed: Vec<JudgeRequest> = reqs.iter().rev().cloned().collect();
        let b = j.complete(Task::Sentiment, &reversed).unwrap();
        assert_eq!(a, b.into_iter().rev().collect::<Vec<_>>());
    }

    #[test]
    fn bad_devices_and_directories_are_named() {
        let e = LocalJudge::load(Path::new("/nonexistent"), Some("tpu"), 8).err().unwrap();
        assert!(e.to_string().contains("unknown device \"tpu\""), "{e}");
        let e = LocalJudge::load(Path::new("/nonexistent"), Some("cpu"), 8).err().unwrap();
        assert!(e.to_string().starts_with("local judge /nonexistent:"), "{e}");
    }
}
