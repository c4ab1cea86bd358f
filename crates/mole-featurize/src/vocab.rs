//! Vocabularies: Morgan identifier → token id, in the original MolE's layout.
//!
//! Identifiers get ids `1..=N`; `PAD = 0`, `MASK = N + 1`, `UNK = N + 2`, `CLS = N + 3`, as the
//! original `open_dictionary` assigns them, so `vocab_size = N + 4`. The same type serves the
//! radius-2 target vocabulary of pretraining (`radius = 2`).

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Errors reading or writing a vocabulary.
#[derive(Debug, thiserror::Error)]
pub enum VocabError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a vocabulary file: {why}")]
    Format { path: String, why: String },
}

#[derive(Serialize, Deserialize)]
struct VocabFile {
    identifier_to_token: std::collections::BTreeMap<String, u32>,
    #[serde(default)]
    special_tokens: Option<std::collections::BTreeMap<String, u32>>,
    #[serde(default)]
    vocab_size: Option<usize>,
    #[serde(default)]
    num_identifiers: Option<usize>,
    #[serde(default)]
    radius: Option<u32>,
}

/// Identifier → token id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vocabulary {
    to_token: HashMap<u32, u32>,
    /// `token id - 1` → identifier.
    identifiers: Vec<u32>,
    radius: u32,
}

impl Vocabulary {
    pub const PAD: u32 = 0;

    /// A vocabulary of `identifiers` in token order (the first gets id 1).
    pub fn from_identifiers(identifiers: Vec<u32>, radius: u32) -> Self {
        let to_token = identifiers
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, i as u32 + 1))
            .collect();
        Self {
            to_token,
            identifiers,
            radius,
        }
    }

    /// Keeps identifiers seen at least `min_count` times; ids by descending count, ties by
    /// ascending identifier (deterministic).
    pub fn build_from_counts(counts: &HashMap<u32, u64>, min_count: u64, radius: u32) -> Self {
        let mut kept: Vec<(u32, u64)> = counts
            .iter()
            .filter(|(_, &c)| c >= min_count)
            .map(|(&id, &c)| (id, c))
            .collect();
        kept.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        Self::from_identifiers(kept.into_iter().map(|(id, _)| id).collect(), radius)
    }

    pub fn pad_id(&self) -> u32 {
        Self::PAD
    }
    pub fn mask_id(&self) -> u32 {
        self.identifiers.len() as u32 + 1
    }
    pub fn unk_id(&self) -> u32 {
        self.identifiers.len() as u32 + 2
    }
    pub fn cls_id(&self) -> u32 {
        self.identifiers.len() as u32 + 3
    }
    /// Number of token ids, specials included.
    pub fn vocab_size(&self) -> usize {
        self.identifiers.len() + 4
    }
    pub fn len(&self) -> usize {
        self.vocab_size()
    }
    pub fn is_empty(&self) -> bool {
        self.identifiers.is_empty()
    }
    pub fn num_identifiers(&self) -> usize {
        self.identifiers.len()
    }
    /// Which Morgan radius the identifiers are (0: inputs, 2: pretraining targets).
    pub fn radius(&self) -> u32 {
        self.radius
    }

    /// Token of `identifier`, UNK when unknown.
    pub fn token(&self, identifier: u32) -> u32 {
        self.to_token
            .get(&identifier)
            .copied()
            .unwrap_or_else(|| self.unk_id())
    }

    /// Identifier of an identifier token (`None` for specials and out-of-range ids).
    pub fn identifier_of(&self, token: u32) -> Option<u32> {
        (token as usize)
            .checked_sub(1)
            .and_then(|i| self.identifiers.get(i))
            .copied()
    }

    pub fn from_json_str(text: &str) -> Result<Self, VocabError> {
        Self::parse(text, "<string>")
    }

    pub fn from_json_file(path: &Path) -> Result<Self, VocabError> {
        let text = std::fs::read_to_string(path).map_err(|e| VocabError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    fn parse(text: &str, source: &str) -> Result<Self, VocabError> {
        let bad = |why: String| VocabError::Format {
            path: source.to_string(),
            why,
        };
        let file: VocabFile = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let n = file.identifier_to_token.len();
        let mut identifiers = vec![None; n];
        for (key, token) in &file.identifier_to_token {
            let id: u32 = key
                .parse()
                .map_err(|_| bad(format!("identifier `{key}` is not an unsigned 32-bit integer")))?;
            let slot = (*token as usize)
                .checked_sub(1)
                .and_then(|i| identifiers.get_mut(i))
                .ok_or_else(|| bad(format!("token {token} of `{key}` is outside 1..={n}")))?;
            if slot.replace(id).is_some() {
                return Err(bad(format!("token {token} is used twice")));
            }
        }
        let identifiers: Vec<u32> = identifiers.into_iter().map(|x| x.unwrap_or(0)).collect();
        let vocab = Self::from_identifiers(identifiers, file.radius.unwrap_or(0));
        if let Some(size) = file.vocab_size {
            if size != vocab.vocab_size() {
                return Err(bad(format!(
                    "vocab_size {size} disagrees with {n} identifiers + 4 special tokens"
                )));
            }
        }
        if let Some(special) = &file.special_tokens {
            let expect = [
                ("PAD", vocab.pad_id()),
                ("MASK", vocab.mask_id()),
                ("UNK", vocab.unk_id()),
                ("CLS", vocab.cls_id()),
            ];
            for (name, id) in expect {
                if let Some(&got) = special.get(name) {
                    if got != id {
                        return Err(bad(format!("special token {name} = {got}, expected {id}")));
                    }
                }
            }
        }
        Ok(vocab)
    }

    /// The JSON form (the same layout as the original vocabulary's JSON export).
    pub fn to_json_string(&self) -> String {
        let file = VocabFile {
            identifier_to_token: self
                .identifiers
                .iter()
                .enumerate()
                .map(|(i, id)| (id.to_string(), i as u32 + 1))
                .collect(),
            special_tokens: Some(
                [
                    ("PAD".to_string(), self.pad_id()),
                    ("MASK".to_string(), self.mask_id()),
                    ("UNK".to_string(), self.unk_id()),
                    ("CLS".to_string(), self.cls_id()),
                ]
                .into_iter()
                .collect(),
            ),
            vocab_size: Some(self.vocab_size()),
            num_identifiers: Some(self.num_identifiers()),
            radius: Some(self.radius),
        };
        serde_json::to_string_pretty(&file).expect("vocabulary serialises")
    }

    pub fn save(&self, path: &Path) -> Result<(), VocabError> {
        std::fs::write(path, self.to_json_string()).map_err(|e| VocabError::Io {
            path: path.display().to_string(),
            source: e,
        })
    }
}
