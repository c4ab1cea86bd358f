//! Vocabulary: Morgan identifier (u32) → token id.
//!
//! Token ids: PAD = 0, identifiers 1..=N, MASK = N+1, UNK = N+2, CLS = N+3, vocabulary size
//! N+4 (the layout of the original MolE `open_dictionary`). The same type serves the radius-0
//! input vocabulary and the radius-2 pretraining-target vocabulary (`radius` says which).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum VocabError {
    #[error("{path}: cannot read the vocabulary")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: cannot write the vocabulary")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid vocabulary JSON{}", path_suffix(.path))]
    Json {
        path: Option<PathBuf>,
        source: serde_json::Error,
    },
    #[error("invalid vocabulary{}: {reason}", path_suffix(.path))]
    Invalid {
        path: Option<PathBuf>,
        reason: String,
    },
}

fn path_suffix(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!(" {}", p.display()))
        .unwrap_or_default()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vocabulary {
    identifier_to_token: HashMap<u32, u32>,
    /// identifiers[token - 1]
    identifiers: Vec<u32>,
    /// Morgan radius whose identifiers this vocabulary indexes (0 for model inputs).
    pub radius: u32,
}

#[derive(Serialize, Deserialize)]
struct SpecialTokens {
    #[serde(rename = "PAD")]
    pad: u32,
    #[serde(rename = "MASK")]
    mask: u32,
    #[serde(rename = "UNK")]
    unk: u32,
    #[serde(rename = "CLS")]
    cls: u32,
}

#[derive(Serialize, Deserialize)]
struct VocabularyFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(default)]
    radius: u32,
    num_identifiers: Option<usize>,
    special_tokens: Option<SpecialTokens>,
    vocab_size: Option<usize>,
    identifier_to_token: std::collections::BTreeMap<String, u32>,
}

impl Vocabulary {
    /// Builds a vocabulary from identifiers listed in token order (token ids 1..=N).
    pub fn from_identifiers(identifiers: Vec<u32>, radius: u32) -> Result<Self, VocabError> {
        let mut identifier_to_token = HashMap::with_capacity(identifiers.len());
        for (i, &id) in identifiers.iter().enumerate() {
            if identifier_to_token.insert(id, i as u32 + 1).is_some() {
                return Err(VocabError::Invalid {
                    path: None,
                    reason: format!("identifier {id} listed twice"),
                });
            }
        }
        Ok(Vocabulary {
            identifier_to_token,
            identifiers,
            radius,
        })
    }

    /// Identifiers seen at least `min_count` times, most frequent first (ties: smaller
    /// identifier first), get tokens 1..=N.
    pub fn build_from_counts(counts: HashMap<u32, u64>, min_count: u64) -> Vocabulary {
        let mut entries: Vec<(u32, u64)> = counts
            .into_iter()
            .filter(|&(_, c)| c >= min_count)
            .collect();
        entries.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let identifiers = entries.into_iter().map(|(id, _)| id).collect();
        // identifiers are unique (they were HashMap keys)
        Self::from_identifiers(identifiers, 0).unwrap_or_else(|_| Vocabulary {
            identifier_to_token: HashMap::new(),
            identifiers: Vec::new(),
            radius: 0,
        })
    }

    /// Sets the Morgan radius the vocabulary indexes (builder style).
    pub fn with_radius(mut self, radius: u32) -> Self {
        self.radius = radius;
        self
    }

    /// Padding token id (always 0).
    pub const PAD: u32 = 0;

    pub fn pad_id(&self) -> u32 {
        Self::PAD
    }
    /// Morgan radius this vocabulary indexes (same as the `radius` field).
    pub fn radius(&self) -> u32 {
        self.radius
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
    /// Number of identifiers N (tokens 1..=N).
    pub fn num_identifiers(&self) -> usize {
        self.identifiers.len()
    }
    /// Total number of token ids, N + 4.
    pub fn vocab_size(&self) -> usize {
        self.identifiers.len() + 4
    }
    /// Same as [`Vocabulary::vocab_size`].
    pub fn len(&self) -> usize {
        self.vocab_size()
    }
    /// Never empty: the special tokens are always there.
    pub fn is_empty(&self) -> bool {
        false
    }
    /// Token of an identifier, UNK when it is not in the vocabulary.
    pub fn token(&self, identifier: u32) -> u32 {
        self.identifier_to_token
            .get(&identifier)
            .copied()
            .unwrap_or_else(|| self.unk_id())
    }
    /// Identifier of a token, `None` for special or out-of-range tokens.
    pub fn identifier_of(&self, token: u32) -> Option<u32> {
        let index = usize::try_from(token).ok()?.checked_sub(1)?;
        self.identifiers.get(index).copied()
    }
    /// Identifiers in token order.
    pub fn identifiers(&self) -> &[u32] {
        &self.identifiers
    }

    pub fn from_json_str(json: &str) -> Result<Self, VocabError> {
        Self::parse(json, None)
    }

    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self, VocabError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| VocabError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, Some(path.to_path_buf()))
    }

    fn parse(json: &str, path: Option<PathBuf>) -> Result<Self, VocabError> {
        let file: VocabularyFile =
            serde_json::from_str(json).map_err(|source| VocabError::Json {
                path: path.clone(),
                source,
            })?;
        let invalid = |reason: String| VocabError::Invalid {
            path: path.clone(),
            reason,
        };
        let n = file.identifier_to_token.len();
        let mut identifiers = vec![None; n];
        for (key, &token) in &file.identifier_to_token {
            let id: u32 = key
                .trim()
                .parse()
                .map_err(|_| invalid(format!("key {key:?} is not a u32 identifier")))?;
            let slot = usize::try_from(token)
                .ok()
                .and_then(|t| t.checked_sub(1))
                .and_then(|i| identifiers.get_mut(i))
                .ok_or_else(|| invalid(format!("token {token} outside 1..={n}")))?;
            if slot.is_some() {
                return Err(invalid(format!("token {token} used twice")));
            }
            *slot = Some(id);
        }
        let identifiers: Vec<u32> = identifiers.into_iter().flatten().collect();
        let vocab = Self::from_identifiers(identifiers, file.radius).map_err(|e| match e {
            VocabError::Invalid { reason, .. } => invalid(reason),
            other => other,
        })?;
        if let Some(expected) = file.num_identifiers {
            if expected != n {
                return Err(invalid(format!(
                    "num_identifiers is {expected} but {n} identifiers are listed"
                )));
            }
        }
        if let Some(size) = file.vocab_size {
            if size != vocab.vocab_size() {
                return Err(invalid(format!(
                    "vocab_size is {size}, expected {}",
                    vocab.vocab_size()
                )));
            }
        }
        if let Some(s) = &file.special_tokens {
            let expected = (0, vocab.mask_id(), vocab.unk_id(), vocab.cls_id());
            if (s.pad, s.mask, s.unk, s.cls) != expected {
                return Err(invalid(format!(
                    "special tokens PAD/MASK/UNK/CLS = {}/{}/{}/{}, expected {}/{}/{}/{}",
                    s.pad, s.mask, s.unk, s.cls, expected.0, expected.1, expected.2, expected.3
                )));
            }
        }
        Ok(vocab)
    }

    /// JSON in the fixture format (plus `radius`).
    pub fn to_json_string(&self) -> String {
        let file = VocabularyFile {
            description: Some(format!(
                "Morgan radius-{} atom identifier (uint32, as decimal string key) -> token id",
                self.radius
            )),
            radius: self.radius,
            num_identifiers: Some(self.num_identifiers()),
            special_tokens: Some(SpecialTokens {
                pad: self.pad_id(),
                mask: self.mask_id(),
                unk: self.unk_id(),
                cls: self.cls_id(),
            }),
            vocab_size: Some(self.vocab_size()),
            identifier_to_token: self
                .identifiers
                .iter()
                .enumerate()
                .map(|(i, id)| (id.to_string(), i as u32 + 1))
                .collect(),
        };
        // serialising plain strings and integers cannot fail
        serde_json::to_string_pretty(&file).unwrap_or_default()
    }

    /// Writes the vocabulary JSON through a temporary file in the same folder and a rename:
    /// the file is complete or untouched.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), VocabError> {
        let path = path.as_ref();
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".partial-{}", std::process::id()));
        let tmp = std::path::PathBuf::from(tmp);
        let write_err = |source| VocabError::Write {
            path: path.to_path_buf(),
            source,
        };
        if let Err(e) = std::fs::write(&tmp, self.to_json_string()) {
            let _ = std::fs::remove_file(&tmp);
            return Err(write_err(e));
        }
        std::fs::rename(&tmp, path).map_err(write_err)
    }
}
