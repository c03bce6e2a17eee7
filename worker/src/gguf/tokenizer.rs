//! `tokenizer.json` and `tokenizer_config.json` from a GGUF's `tokenizer.*` metadata, for
//! byte-level BPE vocabularies (`tokenizer.ggml.model = "gpt2"`).
//!
//! The tokenizer is the one transformers builds from the same metadata
//! (`AutoTokenizer.from_pretrained(dir, gguf_file=…)`), so that both give the same ids:
//!
//! - the vocabulary as the file spells it; a token using characters outside the byte-level
//!   alphabet is respelled from its UTF-8 bytes;
//! - the merges as listed;
//! - tokens typed CONTROL (3) become special added tokens (unless spelled outside the byte-level
//!   alphabet: a llama.cpp mislabel), USER_DEFINED (4) ones plain added tokens, matched whole;
//! - the pre-tokenizer from `tokenizer.ggml.pre`: a split regex followed by byte-level mapping
//!   for the families that have their own regex, otherwise GPT-2's byte-level regex.
//!
//! One known difference from llama.cpp remains, inherited from transformers: for the
//! digit-splitting families (`smollm`, `starcoder`, …) llama.cpp, like the models' own
//! `tokenizer.json`, first cuts every digit off; GPT-2's regex instead keeps a digit with the
//! whitespace run before it. Ids differ only where two or more whitespace characters precede a
//! digit (`"x  1"`, indented numbers in code). Unknown `tokenizer.ggml.pre` values are refused
//! rather than guessed.

use std::collections::BTreeMap;

use serde_json::{Value as Json, json};

use super::config::SpecialIds;
use super::error::GgufError;
use super::reader::GgufFile;

/// The `tokenizer.ggml.model` values [`tokenizer_files`] reads.
pub const SUPPORTED_MODELS: &[&str] = &["gpt2"];

const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const TEKKEN_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// `tokenizer.ggml.pre` values with a split regex of their own.
const SPLITS: &[(&str, &str)] = &[
    ("llama3", LLAMA3_SPLIT),
    ("llama-v3", LLAMA3_SPLIT),
    ("llama-bpe", LLAMA3_SPLIT),
    ("falcon3", LLAMA3_SPLIT),
    ("falcon-h1", LLAMA3_SPLIT),
    ("pixtral", LLAMA3_SPLIT),
    ("midm-2.0", LLAMA3_SPLIT),
    ("lfm2", LLAMA3_SPLIT),
    ("jina-v5-nano", LLAMA3_SPLIT),
    ("dbrx", LLAMA3_SPLIT),
    ("smaug-bpe", LLAMA3_SPLIT),
    ("tekken", TEKKEN_SPLIT),
    ("qwen2", QWEN2_SPLIT),
    ("deepseek-r1-qwen", QWEN2_SPLIT),
    ("kormo", QWEN2_SPLIT),
    ("f2llmv2", QWEN2_SPLIT),
    ("megrez", QWEN2_SPLIT),
    ("qwen35", QWEN35_SPLIT),
    ("gpt-4o", GPT4O_SPLIT),
    ("llama4", GPT4O_SPLIT),
    ("kanana2", GPT4O_SPLIT),
    ("talkie", GPT4O_SPLIT),
    ("minimax-m2", GPT4O_SPLIT),
];

/// `tokenizer.ggml.pre` values that use GPT-2's byte-level regex: llama.cpp's GPT-2-regex
/// family, and its digit-splitting family (see the module docs).
const GPT2_REGEX: &[&str] = &[
    "default",
    "gpt-2",
    "gpt2",
    "mpt",
    "olmo",
    "jais",
    "smollm",
    "starcoder",
    "refact",
    "command-r",
    "codeshell",
    "exaone",
    "minerva-7b",
];

/// Every supported `tokenizer.ggml.pre` value, for error messages.
fn supported_pre() -> String {
    let mut all: Vec<&str> = SPLITS.iter().map(|s| s.0).chain(GPT2_REGEX.iter().copied()).collect();
    all.sort_unstable();
    all.join(", ")
}

/// GPT-2's map from bytes to printable characters: printable Latin-1 maps to itself, the rest
/// to code points from 256 on, in byte order.
pub fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xa1..=0xac | 0xae..=0xff);
        table[b as usize] = if printable {
            char::from(b)
        } else {
            let c = char::from_u32(next).unwrap_or('\u{fffd}');
            next += 1;
            c
        };
    }
    table
}

/// The two files, as JSON.
pub struct TokenizerFiles {
    pub tokenizer: Json,
    pub config: Json,
    /// Vocabulary size (the token list's length).
    pub vocab_size: usize,
}

fn pre_tokenizer(f: &GgufFile) -> Result<Json, GgufError> {
    let key = "tokenizer.ggml.pre";
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let pre = f.opt_str(key)?.unwrap_or("default");
    if let Some((_, regex)) = SPLITS.iter().find(|s| s.0 == pre) {
        return Ok(json!({
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
                byte_level(false),
            ],
        }));
    }
    if GPT2_REGEX.contains(&pre) {
        return Ok(byte_level(true));
    }
    Err(GgufError::UnsupportedTokenizer {
        path: f.path().to_path_buf(),
        key: key.into(),
        found: pre.into(),
        supported: supported_pre(),
    })
}

/// A special added token as transformers writes it.
fn added(id: usize, content: &str, special: bool) -> Json {
    json!({
        "id": id,
        "content": content,
        "single_word": false,
        "lstrip": false,
        "rstrip": false,
        "normalized": false,
        "special": special,
    })
}

/// `TemplateProcessing` adding BOS and/or EOS around each sequence.
fn post_processor(bos: Option<(&str, usize)>, eos: Option<(&str, usize)>) -> Json {
    let seq = |id: &str, type_id: u32| -> Vec<Json> {
        let mut v = Vec::new();
        if let Some((t, _)) = bos {
            v.push(json!({"SpecialToken": {"id": t, "type_id": type_id}}));
        }
        v.push(json!({"Sequence": {"id": id, "type_id": type_id}}));
        if let Some((t, _)) = eos {
            v.push(json!({"SpecialToken": {"id": t, "type_id": type_id}}));
        }
        v
    };
    let mut specials = serde_json::Map::new();
    for (t, id) in bos.into_iter().chain(eos) {
        specials.insert(t.into(), json!({"id": t, "ids": [id], "tokens": [t]}));
    }
    let mut pair = seq("A", 0);
    pair.extend(seq("B", 1));
    json!({"type": "TemplateProcessing", "single": seq("A", 0), "pair": pair, "special_tokens": specials})
}

/// Builds both files; `context` becomes `model_max_length`.
pub fn tokenizer_files(
    f: &GgufFile,
    ids: &SpecialIds,
    context: u64,
) -> Result<TokenizerFiles, GgufError> {
    let model_key = "tokenizer.ggml.model";
    let model = f.req_str(model_key)?;
    if !SUPPORTED_MODELS.contains(&model) {
        return Err(GgufError::UnsupportedTokenizer {
            path: f.path().to_path_buf(),
            key: model_key.into(),
            found: model.into(),
            supported: SUPPORTED_MODELS.join(", "),
        });
    }
    let tokens_key = "tokenizer.ggml.tokens";
    let tokens =
        f.opt_strings(tokens_key)?.ok_or_else(|| f.metadata_error(tokens_key, "missing"))?;
    if tokens.is_empty() {
        return Err(f.metadata_error(tokens_key, "is empty"));
    }
    let types_key = "tokenizer.ggml.token_type";
    let types = f.opt_ints(types_key)?.unwrap_or_default();
    if !types.is_empty() && types.len() != tokens.len() {
        return Err(f.metadata_error(
            types_key,
            format!("{} types for {} tokens", types.len(), tokens.len()),
        ));
    }
    let merges_key = "tokenizer.ggml.merges";
    let merge_list =
        f.opt_strings(merges_key)?.ok_or_else(|| f.metadata_error(merges_key, "missing"))?;
    let mut merges = Vec::with_capacity(merge_list.len());
    for (i, m) in merge_list.iter().enumerate() {
        let (a, b) = m.split_once(' ').filter(|(_, b)| !b.contains(' ')).ok_or_else(|| {
            f.metadata_error(merges_key, format!("merge {i} ({m:?}) is not two tokens"))
        })?;
        merges.push(json!([a, b]));
    }

    let spelling = bytes_to_unicode();
    let alphabet: std::collections::HashSet<char> = spelling.iter().copied().collect();
    let in_alphabet = |t: &str| t.chars().all(|c| alphabet.contains(&c));
    let mut vocab = serde_json::Map::new();
    for (id, t) in tokens.iter().enumerate() {
        let spelled: String = if in_alphabet(t) {
            (*t).to_string()
        } else {
            t.bytes().map(|b| spelling[b as usize]).collect()
        };
        // A repeated spelling keeps its last id, as a Python dict built in order does.
        vocab.insert(spelled, json!(id));
    }

    let mut added_tokens: BTreeMap<usize, Json> = BTreeMap::new();
    for (id, (t, &ty)) in tokens.iter().zip(&types).enumerate() {
        if ty == 3 && in_alphabet(t) {
            added_tokens.insert(id, added(id, t, true));
        }
    }
    for (id, (t, &ty)) in tokens.iter().zip(&types).enumerate() {
        if ty == 4 && vocab.contains_key(*t) {
            added_tokens.entry(id).or_insert_with(|| added(id, t, false));
        }
    }

    let token_of = |key: &str, id: Option<u64>| -> Result<Option<(&str, usize)>, GgufError> {
        match id {
            None => Ok(None),
            Some(id) => match tokens.get(id as usize) {
                Some(t) => Ok(Some((*t, id as usize))),
                None => Err(f.metadata_error(
                    key,
                    format!("id {id} is outside the {} tokens", tokens.len()),
                )),
            },
        }
    };
    let bos = token_of("tokenizer.ggml.bos_token_id", ids.bos)?;
    let eos = token_of("tokenizer.ggml.eos_token_id", ids.eos)?;
    let unk = token_of("tokenizer.ggml.unknown_token_id", ids.unk)?;
    let pad = token_of("tokenizer.ggml.padding_token_id", ids.pad)?;
    // The named special tokens are matched whole even if the file types them as normal.
    for (t, id) in [bos, eos, unk, pad].into_iter().flatten() {
        if in_alphabet(t) {
            added_tokens.entry(id).or_insert_with(|| added(id, t, true));
        }
    }

    let add_bos = f.opt_bool("tokenizer.ggml.add_bos_token")?.unwrap_or(false);
    let add_eos = f.opt_bool("tokenizer.ggml.add_eos_token")?.unwrap_or(false);
    let tokenizer = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens.into_values().collect::<Vec<_>>(),
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer(f)?,
        "post_processor": post_processor(
            if add_bos { bos } else { None },
            if add_eos { eos } else { None },
        ),
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE",
            "dropout": null,
            "unk_token": null,
            "continuing_subword_prefix": null,
            "end_of_word_suffix": null,
            "fuse_unk": false,
            "byte_fallback": false,
            "ignore_merges": false,
            "vocab": vocab,
            "merges": merges,
        },
    });

    let mut config = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": add_bos,
        "add_eos_token": add_eos,
        "clean_up_tokenization_spaces": false,
        "model_max_length": context,
    });
    let obj = config.as_object_mut().expect("a JSON object literal");
    for (field, tok) in
        [("bos_token", bos), ("eos_token", eos), ("unk_token", unk), ("pad_token", pad)]
    {
        if let Some((t, _)) = tok {
            obj.insert(field.into(), json!(t));
        }
    }
    if let Some(template) = f.opt_str("tokenizer.chat_template")? {
        obj.insert("chat_template".into(), json!(template));
    }
    Ok(TokenizerFiles { tokenizer, config, vocab_size: tokens.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_alphabet_is_gpt2s() {
        let t = bytes_to_unicode();
        assert_eq!(t[b'A' as usize], 'A');
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[0], 'Ā');
        assert_eq!(t[0xad], 'Ń');
        let mut sorted = t.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 256);
    }

    #[test]
    fn post_processor_adds_bos_when_asked() {
        let p = post_processor(Some(("<s>", 1)), None);
        assert_eq!(p["single"][0]["SpecialToken"]["id"], "<s>");
        assert_eq!(p["single"].as_array().unwrap().len(), 2);
        assert_eq!(p["pair"].as_array().unwrap().len(), 4);
        assert_eq!(p["special_tokens"]["<s>"]["ids"], json!([1]));
        let none = post_processor(None, None);
        assert_eq!(none["single"].as_array().unwrap().len(), 1);
    }
}
