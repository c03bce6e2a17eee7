//! Judges of generated text: OpenAI-compatible HTTP, a local wax model, an offline proxy.
//!
//! [`judge_all`] is the one entry point. It compresses each response's trailing loop
//! ([`mod@compress`], docs/protocol.md §6.6), settles the backtracking responses the deterministic
//! rules decide ([`prelabel`], §6.3), asks the judge about the rest with wax's rubrics
//! ([`rubric`]) and parses the output markers ([`labels`]); an output without a valid marker
//! gives a verdict with no label, its text kept. Judges: [`http::HttpJudge`] (a served model
//! such as Qwen3-8B, the paper's judge), [`local::LocalJudge`] (a snapshot loaded by wax), and
//! [`lexicon::LexiconJudge`], a lexicon/rule PROXY for offline runs whose verdicts are marked
//! as such. [`build`] makes one from a [`JudgeConfig`].

pub mod compress;
pub mod config;
pub mod error;
pub mod http;
pub mod labels;
pub mod lexicon;
pub mod local;
pub mod prelabel;
pub mod rubric;

pub use compress::{Compressed, TrailingLoop, compress};
pub use config::{DEFAULT_API_KEY_ENV, JudgeConfig, build};
pub use error::JudgeError;
pub use labels::{BacktrackClass, Label, RefusalClass, Task, parse_label};

use serde::{Deserialize, Serialize};

/// One response to judge, with the user message it answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JudgeItem {
    /// The user's message (shown to the judge as context).
    pub prompt: String,
    /// The generated response to label.
    pub response: String,
}

/// Who decided a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictSource {
    /// A deterministic pre-label (§6.3); no judge was asked.
    PreLabel,
    /// A judge model.
    Judge,
    /// A proxy (lexicon and rules), not a judge model.
    Proxy,
}

/// The verdict on one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// `None` when the judge's output carried no valid marker.
    pub label: Option<Label>,
    pub source: VerdictSource,
    /// The judge's output, or the rule that decided.
    pub raw: String,
    /// The text judged (the response after trailing-loop compression).
    pub compressed: String,
}

/// One chat request to a judge model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JudgeRequest {
    pub system: String,
    pub user: String,
    /// Qwen3's `enable_thinking` (on for backtracking, off for sentiment and refusal).
    pub thinking: bool,
}

/// A judge: answers chat requests, or labels items directly (proxies).
pub trait Judge: Send {
    /// A name for logs and records (the served model, the snapshot, `offline-proxy`).
    fn name(&self) -> String;

    /// Whether the verdicts are a proxy's rather than a judge model's.
    fn is_proxy(&self) -> bool;

    /// The output text of each request, in request order (a `<think>` block removed).
    fn complete(
        &mut self,
        task: Task,
        requests: &[JudgeRequest],
    ) -> Result<Vec<String>, JudgeError>;

    /// Labels (already compressed) items without chat requests; `None` (the default): use
    /// [`Judge::complete`]. Called by [`judge_all`] only with the items no pre-label settled.
    fn label_direct(
        &mut self,
        task: Task,
        items: &[JudgeItem],
    ) -> Option<Result<Vec<Verdict>, JudgeError>> {
        let _ = (task, items);
        None
    }
}

/// Requests sent to [`Judge::complete`] at a time (progress is reported after each batch).
pub const REQUEST_BATCH: usize = 128;

/// Judges every item for `task`, in item order; `progress(done, total)` is called as items are
/// settled.
pub fn judge_all(
    judge: &mut dyn Judge,
    task: Task,
    items: &[JudgeItem],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Verdict>, JudgeError> {
    let total = items.len();
    let mut out: Vec<Option<Verdict>> = vec![None; total];
    let mut pending: Vec<(usize, JudgeItem)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let c = compress(&item.response);
        let pre = match task {
            Task::Backtracking => prelabel::prelabel_backtracking(&c),
            _ => None,
        };
        match pre {
            Some((class, why)) => {
                out[i] = Some(Verdict {
                    label: Some(Label::Backtracking(class)),
                    source: VerdictSource::PreLabel,
                    raw: why,
                    compressed: c.text,
                });
            }
            None => pending.push((i, JudgeItem { prompt: item.prompt.clone(), response: c.text })),
        }
    }
    let mut done = total - pending.len();
    progress(done, total);
    let count_err =
        |judge: &dyn Judge, got, want| JudgeError::Count { judge: judge.name(), got, want };
    let direct: Vec<JudgeItem> = pending.iter().map(|(_, it)| it.clone()).collect();
    if !direct.is_empty()
        && let Some(verdicts) = judge.label_direct(task, &direct)
    {
        let verdicts = verdicts?;
        if verdicts.len() != direct.len() {
            return Err(count_err(judge, verdicts.len(), direct.len()));
        }
        for ((i, it), mut v) in pending.into_iter().zip(verdicts) {
            v.compressed = it.response;
            out[i] = Some(v);
        }
        progress(total, total);
    } else {
        let source = if judge.is_proxy() { VerdictSource::Proxy } else { VerdictSource::Judge };
        for batch in pending.chunks(REQUEST_BATCH) {
            let requests: Vec<JudgeRequest> = batch
                .iter()
                .map(|(_, it)| rubric::request(task, &it.prompt, &it.response))
                .collect();
            let outputs = judge.complete(task, &requests)?;
            if outputs.len() != requests.len() {
                return Err(count_err(judge, outputs.len(), requests.len()));
            }
            for ((i, it), raw) in batch.iter().zip(outputs) {
                let label = parse_label(task, &raw);
                out[*i] = Some(Verdict { label, source, raw, compressed: it.response.clone() });
            }
            done += batch.len();
            progress(done, total);
        }
    }
    Ok(out.into_iter().map(|v| v.expect("every item settled")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A judge that answers from a closure and records what it was asked.
    struct Scripted {
        asked: Vec<JudgeRequest>,
        answer: fn(&JudgeRequest) -> String,
    }

    impl Judge for Scripted {
        fn name(&self) -> String {
            "scripted".into()
        }
        fn is_proxy(&self) -> bool {
            false
        }
        fn complete(&mut self, _: Task, r: &[JudgeRequest]) -> Result<Vec<String>, JudgeError> {
            self.asked.extend_from_slice(r);
            Ok(r.iter().map(self.answer).collect())
        }
    }

    fn item(response: &str) -> JudgeItem {
        JudgeItem { prompt: "Q".into(), response: response.into() }
    }

    #[test]
    fn prelabels_skip_the_judge_and_the_rest_keep_their_order() {
        let mut j =
            Scripted { asked: Vec::new(), answer: |_| "BACKTRACKING_CLASS: backtracking".into() };
        let items = [
            item("wait no wait no hmm wait"),
            item("First 3+4=7. Then 7*2=14, so the answer is 14 and nothing else matters here."),
            item("42"),
        ];
        let mut calls = Vec::new();
        let v =
            judge_all(&mut j, Task::Backtracking, &items, &mut |d, t| calls.push((d, t))).unwrap();
        assert_eq!(j.asked.len(), 1);
        assert!(j.asked[0].thinking);
        assert!(j.asked[0].user.contains("answer is 14"));
        assert_eq!(v[0].label, Some(Label::Backtracking(BacktrackClass::Nonsensical)));
        assert_eq!(v[0].source, VerdictSource::PreLabel);
        assert_eq!(v[1].label, Some(Label::Backtracking(BacktrackClass::Backtracking)));
        assert_eq!(v[1].source, VerdictSource::Judge);
        assert_eq!(v[2].label, Some(Label::Backtracking(BacktrackClass::Normal)));
        assert_eq!(calls, [(2, 3), (3, 3)]);
    }

    #[test]
    fn the_judge_sees_the_compressed_text_and_bad_outputs_keep_their_raw_text() {
        let mut j = Scripted { asked: Vec::new(), answer: |_| "I cannot decide.".into() };
        let items = [item(&format!("I feel{}", " fine, thanks.".repeat(20)))];
        let v = judge_all(&mut j, Task::Sentiment, &items, &mut |_, _| {}).unwrap();
        assert!(!j.asked[0].thinking);
        assert!(j.asked[0].user.contains("[\"fine, thanks.\" repeated 20 times]"));
        assert_eq!(v[0].compressed, "I feel fine, thanks. [\"fine, thanks.\" repeated 20 times]");
        assert_eq!(v[0].label, None);
        assert_eq!(v[0].raw, "I cannot decide.");
    }

    #[test]
    fn a_wrong_output_count_is_an_error() {
        struct Short;
        impl Judge for Short {
            fn name(&self) -> String {
                "short".into()
            }
            fn is_proxy(&self) -> bool {
                false
            }
            fn complete(&mut self, _: Task, _: &[JudgeRequest]) -> Result<Vec<String>, JudgeError> {
                Ok(Vec::new())
            }
        }
        let e = judge_all(&mut Short, Task::Refusal, &[item("x")], &mut |_, _| {}).unwrap_err();
        assert_eq!(e.to_string(), "judge short returned 0 outputs for 1 requests");
    }

    #[test]
    fn no_items_no_requests() {
        let mut j = Scripted { asked: Vec::new(), answer: |_| String::new() };
        let v = judge_all(&mut j, Task::Refusal, &[], &mut |_, _| {}).unwrap();
        assert!(v.is_empty() && j.asked.is_empty());
    }
}
