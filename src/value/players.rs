//! Players of a model game: spans of the input (tokens, words, sentences, marked spans) and
//! attention heads, plus how an ablated player is removed ([`TokenMode`], [`HeadMode`]).
//!
//! A [`Prompt`] is split into a fixed prefix (an instruction or chat template, never ablated), the
//! player text, and a fixed suffix. [`tokenize_prompt`] tokenizes the whole string once (exactly
//! what the model sees unablated) and assigns each token of the player text to a player by byte
//! offsets: a token belongs to the unit holding its first non-whitespace byte (so `" What"` after
//! the prefix `"Question:"` is a player though its space ends the prefix); a token of whitespace
//! only joins the next token's player. Special tokens and tokens outside the player text are
//! fixed. A token whose visible bytes lie both in the player text and in the prefix or suffix
//! (`"xa"` from the prefix `"x"` and the text `"a"`) is refused ([`SetupError::AcrossEdge`]):
//! as a player it would ablate fixed text, as fixed text it would hide a player. So is a word,
//! sentence or marked part that starts no token ([`SetupError::NoToken`]): it would silently not
//! be a player.

use std::ops::Range;

use crate::model::{ModelError, ModelInfo, Tokenizer};

/// Errors while setting up a model value function (bad prompt, spans, heads, options).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Nothing to explain.
    #[error("empty input: {0}")]
    Empty(String),
    /// A marked span does not lie inside the player text.
    #[error("span {start}..{end} lies outside the player text ({len} bytes) or splits a character")]
    SpanOutOfRange {
        /// Start byte.
        start: usize,
        /// End byte.
        end: usize,
        /// Length of the player text.
        len: usize,
    },
    /// A token span references a position past the prompt.
    #[error("player {player} uses token position {position}, but the prompt has {len} tokens")]
    PositionOutOfRange {
        /// Player index.
        player: usize,
        /// Offending position.
        position: usize,
        /// Prompt length in tokens.
        len: usize,
    },
    /// Two spans overlap.
    #[error("players {a} and {b} overlap at token position {position}")]
    Overlap {
        /// First player.
        a: usize,
        /// Second player.
        b: usize,
        /// Shared position.
        position: usize,
    },
    /// A head player names a layer or head the model does not have.
    #[error("head player (layer {layer}, head {head}) out of range: the model has {layers} layers x {heads} heads")]
    HeadOutOfRange {
        /// Layer index.
        layer: usize,
        /// Head index.
        head: usize,
        /// Layers in the model.
        layers: usize,
        /// Query heads per layer.
        heads: usize,
    },
    /// The input (prompt plus target) does not fit the model.
    #[error("input of {tokens} tokens is longer than the model's context of {max} tokens")]
    TooLong {
        /// Tokens needed.
        tokens: usize,
        /// Context length.
        max: usize,
    },
    /// A token runs across the edge between the player text and the fixed prefix or suffix, so it
    /// can be neither a player (it would ablate fixed text) nor fixed (it would hide player text).
    #[error(
        "the token {token:?} runs across the edge between the {side} and the player text; separate them with a space or a newline"
    )]
    AcrossEdge {
        /// The token's text.
        token: String,
        /// `"prefix"` or `"suffix"`.
        side: &'static str,
    },
    /// A word, sentence or marked part starts no token: its text lies inside a token that starts
    /// elsewhere (`"ance"` marked in `"France"`), so it could not be ablated on its own.
    #[error(
        "the player {player:?} starts no token of its own{}; mark whole words, or use --players tokens",
        .inside.as_ref().map(|t| format!(" (its text lies inside the token {t:?})")).unwrap_or_default()
    )]
    NoToken {
        /// The player's text.
        player: String,
        /// The token holding its text, if one does.
        inside: Option<String>,
    },
    /// An option does not fit this model or input.
    #[error("{0}")]
    Invalid(String),
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// How the player text is cut into players.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Unit {
    /// Every token is a player.
    Tokens,
    /// Whitespace-separated words (the default).
    #[default]
    Words,
    /// Sentences (split after `.`, `!` or `?` followed by whitespace).
    Sentences,
    /// Byte ranges of the player text chosen by the user (sorted, non-overlapping); tokens outside
    /// every range are fixed.
    Spans(Vec<Range<usize>>),
}

/// An input to explain: fixed prefix, player text, fixed suffix.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Prompt {
    /// Fixed text before the players (instruction, chat-template head). Never ablated.
    pub prefix: String,
    /// The text whose parts are players.
    pub text: String,
    /// Fixed text after the players (chat-template tail). Never ablated.
    pub suffix: String,
    /// How `text` is cut into players.
    pub unit: Unit,
}

impl Prompt {
    /// A prompt whose whole text is players, cut into words.
    pub fn new(text: impl Into<String>) -> Self {
        Prompt { text: text.into(), ..Default::default() }
    }

    /// Sets the fixed prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the fixed suffix.
    pub fn with_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.suffix = suffix.into();
        self
    }

    /// Sets the player unit.
    pub fn with_unit(mut self, unit: Unit) -> Self {
        self.unit = unit;
        self
    }
}

/// One input player: a set of token positions (ascending) and a label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenSpan {
    /// What the player is (the word, sentence or token text).
    pub label: String,
    /// Token positions in the prompt, ascending.
    pub positions: Vec<usize>,
    /// Bytes of the whole input text (prefix, player text, suffix) the player covers.
    pub text: Range<usize>,
}

impl TokenSpan {
    /// A player of the one token at `position`, labelled `#position`, with no text span (prompts
    /// built from token ids, as in benchmarks).
    pub fn token(position: usize) -> Self {
        TokenSpan { label: format!("#{position}"), positions: vec![position], text: 0..0 }
    }
}

/// A tokenized prompt and its token players.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenizedPrompt {
    /// Token ids of the whole prompt (prefix, text, suffix, special tokens).
    pub ids: Vec<u32>,
    /// The players, in text order. Positions not in any span are fixed.
    pub spans: Vec<TokenSpan>,
}

impl TokenizedPrompt {
    /// Builds from ids and spans, checking that spans are non-empty, inside the prompt and
    /// disjoint.
    pub fn new(ids: Vec<u32>, spans: Vec<TokenSpan>) -> Result<Self, SetupError> {
        if ids.is_empty() {
            return Err(SetupError::Empty("the prompt has no tokens".into()));
        }
        let mut owner: Vec<Option<usize>> = vec![None; ids.len()];
        for (i, s) in spans.iter().enumerate() {
            if s.positions.is_empty() {
                return Err(SetupError::Invalid(format!("player {i} ({:?}) covers no token", s.label)));
            }
            for &p in &s.positions {
                if p >= ids.len() {
                    return Err(SetupError::PositionOutOfRange { player: i, position: p, len: ids.len() });
                }
                if let Some(a) = owner[p] {
                    return Err(SetupError::Overlap { a, b: i, position: p });
                }
                owner[p] = Some(i);
            }
        }
        Ok(TokenizedPrompt { ids, spans })
    }

    /// For each token position, the player that owns it (`None` = fixed).
    pub fn owners(&self) -> Vec<Option<usize>> {
        let mut owner = vec![None; self.ids.len()];
        for (i, s) in self.spans.iter().enumerate() {
            for &p in &s.positions {
                owner[p] = Some(i);
            }
        }
        owner
    }
}

/// Tokenizes `prompt` and cuts its text into players (see the module docs).
pub fn tokenize_prompt(tokenizer: &Tokenizer, prompt: &Prompt) -> Result<TokenizedPrompt, SetupError> {
    if prompt.text.trim().is_empty() {
        return Err(SetupError::Empty("the player text is empty".into()));
    }
    let full = format!("{}{}{}", prompt.prefix, prompt.text, prompt.suffix);
    let text_start = prompt.prefix.len();
    let text_end = text_start + prompt.text.len();
    let enc = tokenizer
        .encode(full.as_str(), true)
        .map_err(|e| SetupError::Invalid(format!("tokenizing the prompt failed: {e}")))?;
    let ids = enc.get_ids().to_vec();
    let offsets = enc.get_offsets();
    let special = enc.get_special_tokens_mask();
    let bytes = full.as_bytes();

    // Units: absolute byte ranges inside the text.
    let units: Option<Vec<Range<usize>>> = match &prompt.unit {
        Unit::Tokens => None,
        Unit::Words => {
            Some(word_ranges(&prompt.text).into_iter().map(|r| r.start + text_start..r.end + text_start).collect())
        }
        Unit::Sentences => {
            Some(sentence_ranges(&prompt.text).into_iter().map(|r| r.start + text_start..r.end + text_start).collect())
        }
        Unit::Spans(spans) => {
            let mut prev_end = 0;
            for r in spans {
                if r.start >= r.end
                    || r.end > prompt.text.len()
                    || r.start < prev_end
                    || !prompt.text.is_char_boundary(r.start)
                    || !prompt.text.is_char_boundary(r.end)
                {
                    return Err(SetupError::SpanOutOfRange { start: r.start, end: r.end, len: prompt.text.len() });
                }
                prev_end = r.end;
            }
            Some(spans.iter().map(|r| r.start + text_start..r.end + text_start).collect())
        }
    };

    // Anchor of each token: its first non-whitespace byte. A token anchored in the text is a
    // player token even when its leading space ends the prefix (" What" after "Question:").
    let in_text = |i: usize| (text_start..text_end).contains(&i);
    let mut unit_of: Vec<Option<usize>> = vec![None; ids.len()];
    let mut whitespace_only = vec![false; ids.len()];
    for (t, &(s, e)) in offsets.iter().enumerate() {
        if special.get(t).copied().unwrap_or(0) == 1 || e <= s {
            continue;
        }
        let e = e.min(bytes.len());
        let visible: Vec<usize> = (s..e).filter(|&i| !bytes[i].is_ascii_whitespace()).collect();
        let Some(&anchor) = visible.first() else {
            whitespace_only[t] = in_text(s);
            continue;
        };
        let across = |side| SetupError::AcrossEdge { token: String::from_utf8_lossy(&bytes[s..e]).into_owned(), side };
        if !in_text(anchor) {
            if visible.iter().any(|&i| in_text(i)) {
                return Err(across("prefix"));
            }
            continue;
        }
        if visible.iter().any(|&i| i >= text_end) {
            return Err(across("suffix"));
        }
        unit_of[t] = match &units {
            None => Some(t),
            Some(units) => units.iter().position(|r| r.contains(&anchor)),
        };
    }
    // Whitespace-only tokens join the next token's player.
    for t in (0..ids.len()).rev() {
        if whitespace_only[t] && t + 1 < ids.len() {
            unit_of[t] = unit_of[t + 1];
        }
    }
    // Group tokens by unit, in order of first appearance.
    let mut spans: Vec<TokenSpan> = Vec::new();
    let mut index_of_unit: std::collections::HashMap<usize, usize> = Default::default();
    for (t, u) in unit_of.iter().enumerate() {
        let Some(u) = *u else { continue };
        let i = *index_of_unit.entry(u).or_insert_with(|| {
            spans.push(TokenSpan { label: String::new(), positions: Vec::new(), text: 0..0 });
            spans.len() - 1
        });
        spans[i].positions.push(t);
    }
    if let Some(units) = &units {
        if let Some(r) = units.iter().enumerate().find(|(u, _)| !index_of_unit.contains_key(u)).map(|(_, r)| r) {
            let inside = offsets.iter().find(|&&(s, e)| s < r.end && r.start < e);
            let text = |r: Range<usize>| String::from_utf8_lossy(&bytes[r.start..r.end.min(bytes.len())]).into_owned();
            return Err(SetupError::NoToken { player: text(r.clone()), inside: inside.map(|&(s, e)| text(s..e)) });
        }
    }
    for (u, &i) in &index_of_unit {
        spans[i].text = match &units {
            Some(units) => units[*u].clone(),
            None => offsets[*u].0..offsets[*u].1.min(full.len()),
        };
        spans[i].label = full.get(spans[i].text.clone()).unwrap_or("").to_string();
    }
    if spans.is_empty() {
        return Err(SetupError::Empty("no token of the player text became a player".into()));
    }
    if units.is_none() {
        number_split_characters(&mut spans);
    }
    TokenizedPrompt::new(ids, spans)
}

/// Labels token players that share one text range (byte-level tokens of one character, e.g.
/// "首" in two tokens) as "首(1/2)", "首(2/2)", so that no two players read the same.
fn number_split_characters(spans: &mut [TokenSpan]) {
    let mut i = 0;
    while i < spans.len() {
        let same = spans[i..].iter().take_while(|s| s.text == spans[i].text).count();
        if same > 1 {
            for (k, span) in spans[i..i + same].iter_mut().enumerate() {
                span.label = format!("{}({}/{same})", span.label, k + 1);
            }
        }
        i += same;
    }
}

/// Byte ranges of the whitespace-separated words of `text`.
pub fn word_ranges(text: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                out.push(s..i);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(s..text.len());
    }
    out
}

/// Byte ranges of the sentences of `text` (trimmed), split after `.`, `!`, `?` followed by
/// whitespace.
pub fn sentence_ranges(text: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    for (k, &(i, c)) in chars.iter().enumerate() {
        let end_here = matches!(c, '.' | '!' | '?') && chars.get(k + 1).is_none_or(|&(_, n)| n.is_whitespace());
        if end_here {
            let end = i + c.len_utf8();
            push_trimmed(text, start..end, &mut out);
            start = end;
        }
    }
    push_trimmed(text, start..text.len(), &mut out);
    out
}

fn push_trimmed(text: &str, r: Range<usize>, out: &mut Vec<Range<usize>>) {
    let s = &text[r.clone()];
    let lead = s.len() - s.trim_start().len();
    let trail = s.len() - s.trim_end().len();
    if lead + trail < s.len() {
        out.push(r.start + lead..r.end - trail);
    }
}

/// How an ablated token player is removed from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TokenMode {
    /// Masked tokens are hidden, as keys, from every other query through the attention mask;
    /// positions do not change. A masked token's own query still attends itself (so no softmax
    /// row is empty): that matters only where its output is read, e.g. a masked last prompt
    /// token still predicts the target from its own embedding and the kept context. The default
    /// for causal LMs.
    #[default]
    Attention,
    /// Masked tokens are replaced by this token id (see [`replacement_token`]).
    Replace(u32),
    /// Masked tokens are deleted and the sequence re-packed (positions shift).
    Remove,
}

/// Which token a [`TokenMode::Replace`] substitutes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replacement {
    /// The unknown token (`[UNK]`, `<unk>`, or the model's `<|endoftext|>` when that is its unk).
    Unk,
    /// The mask token (`[MASK]`, `<mask>`).
    Mask,
    /// The padding token (`[PAD]`, `<pad>`, `<|endoftext|>`).
    Pad,
}

/// Finds the id of a replacement token in the tokenizer's vocabulary.
pub fn replacement_token(tokenizer: &Tokenizer, which: Replacement) -> Result<u32, SetupError> {
    let names: &[&str] = match which {
        Replacement::Unk => &["[UNK]", "<unk>", "<|unk|>", "<|endoftext|>"],
        Replacement::Mask => &["[MASK]", "<mask>", "<|mask|>"],
        Replacement::Pad => &["[PAD]", "<pad>", "<|pad|>", "<|endoftext|>"],
    };
    names.iter().find_map(|n| tokenizer.token_to_id(n)).ok_or_else(|| {
        SetupError::Invalid(format!(
            "the tokenizer has no {which:?} token (looked for {names:?}); pass a token id with TokenMode::Replace"
        ))
    })
}

/// How an ablated attention head is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HeadMode {
    /// The head's output (before the output projection) is zero.
    #[default]
    Zero,
    /// The head's output is its mean over the unablated reference run (all positions of the
    /// prompt and target).
    Mean,
}

/// An attention-head player. Under grouped-query attention this is a **query** head: ablating it
/// removes that query head's output, while the key/value head it shares with its group stays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HeadPlayer {
    /// Layer index (0-based).
    pub layer: usize,
    /// Query-head index within the layer (0-based).
    pub head: usize,
}

impl HeadPlayer {
    /// Every (layer, head) of a model, layer-major.
    pub fn all(info: &ModelInfo) -> Vec<HeadPlayer> {
        (0..info.num_layers).flat_map(|layer| (0..info.num_heads).map(move |head| HeadPlayer { layer, head })).collect()
    }

    /// Checks the player against the model.
    pub fn check(&self, info: &ModelInfo) -> Result<(), SetupError> {
        if self.layer >= info.num_layers || self.head >= info.num_heads {
            return Err(SetupError::HeadOutOfRange {
                layer: self.layer,
                head: self.head,
                layers: info.num_layers,
                heads: info.num_heads,
            });
        }
        Ok(())
    }

    /// Label `L{layer}H{head}`.
    pub fn label(&self) -> String {
        format!("L{}H{}", self.layer, self.head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_sentences() {
        assert_eq!(word_ranges(" ab  c\nd "), vec![1..3, 5..6, 7..8]);
        let t = "Hi there. How are you? Fine";
        let s: Vec<&str> = sentence_ranges(t).into_iter().map(|r| &t[r]).collect();
        assert_eq!(s, vec!["Hi there.", "How are you?", "Fine"]);
        assert_eq!(sentence_ranges("a.b c."), vec![0..6]);
    }

    #[test]
    fn tokenized_prompt_rejects_bad_spans() {
        let span = |p: Vec<usize>| TokenSpan { label: "x".into(), positions: p, text: 0..1 };
        assert!(matches!(
            TokenizedPrompt::new(vec![1, 2], vec![span(vec![2])]),
            Err(SetupError::PositionOutOfRange { position: 2, .. })
        ));
        assert!(matches!(
            TokenizedPrompt::new(vec![1, 2], vec![span(vec![0]), span(vec![0, 1])]),
            Err(SetupError::Overlap { .. })
        ));
        assert!(matches!(TokenizedPrompt::new(vec![], vec![]), Err(SetupError::Empty(_))));
        assert!(TokenizedPrompt::new(vec![1, 2], vec![span(vec![1])]).is_ok());
    }
}
