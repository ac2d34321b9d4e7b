//! SQL LIKE patterns, compiled once into a matcher whose cost grows linearly with the text:
//! `%` matches any run of characters, `_` exactly one, and a backslash makes the next
//! character literal (as in PostgreSQL) so `%` and `_` can be matched.
//!
//! The pattern is split at its `%`s into pieces of literal characters and `_`s. A text
//! matches when it starts with the first piece, ends with the last, and holds the others in
//! order between them; taking each middle piece at its leftmost place is always right, since
//! pieces have fixed lengths. A piece is found with a shift-and automaton (one bit per
//! character of the piece), so the text is read once however the pattern is built.

use std::collections::HashMap;

#[derive(Clone, Debug)]
pub(super) struct LikePattern {
    /// The pieces between `%`s; at least two when the pattern has a `%`.
    pieces: Vec<Piece>,
    has_any_run: bool,
}

/// Literal characters and `_`s (`None`), with the automaton that finds them.
#[derive(Clone, Debug)]
struct Piece {
    chars: Vec<Option<char>>,
    /// For each literal character of the piece: the positions it, or a `_`, may fill.
    masks: HashMap<char, Vec<u64>>,
    /// The positions a `_` fills, for any other character.
    wildcards: Vec<u64>,
}

impl PartialEq for LikePattern {
    fn eq(&self, other: &Self) -> bool {
        self.has_any_run == other.has_any_run
            && self.pieces.len() == other.pieces.len()
            && self.pieces.iter().zip(&other.pieces).all(|(a, b)| a.chars == b.chars)
    }
}

impl Eq for LikePattern {}

impl LikePattern {
    pub(super) fn compile(pattern: &str) -> LikePattern {
        let mut pieces = vec![Vec::new()];
        let mut has_any_run = false;
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            let current = pieces.last_mut().expect("there is always a current piece");
            match c {
                // A trailing lone backslash has nothing to escape, so it stands for itself.
                '\\' => current.push(Some(chars.next().unwrap_or('\\'))),
                '%' => {
                    has_any_run = true;
                    pieces.push(Vec::new());
                }
                '_' => current.push(None),
                other => current.push(Some(other)),
            }
        }
        LikePattern { pieces: pieces.into_iter().map(Piece::new).collect(), has_any_run }
    }

    pub(super) fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let first = &self.pieces[0];
        if !self.has_any_run {
            return text.len() == first.len() && first.matches_at(&text, 0);
        }
        let last = &self.pieces[self.pieces.len() - 1];
        if first.len() + last.len() > text.len()
            || !first.matches_at(&text, 0)
            || !last.matches_at(&text, text.len() - last.len())
        {
            return false;
        }
        let (mut at, end) = (first.len(), text.len() - last.len());
        for piece in &self.pieces[1..self.pieces.len() - 1] {
            match piece.find(&text[at..end]) {
                Some(start) => at += start + piece.len(),
                None => return false,
            }
        }
        true
    }
}

impl Piece {
    fn new(chars: Vec<Option<char>>) -> Piece {
        let words = chars.len().div_ceil(64);
        let mut wildcards = vec![0u64; words];
        for (position, c) in chars.iter().enumerate() {
            if c.is_none() {
                wildcards[position / 64] |= 1 << (position % 64);
            }
        }
        let mut masks: HashMap<char, Vec<u64>> = HashMap::new();
        for (position, c) in chars.iter().enumerate() {
            if let Some(c) = c {
                masks.entry(*c).or_insert_with(|| wildcards.clone())[position / 64] |=
                    1 << (position % 64);
            }
        }
        Piece { chars, masks, wildcards }
    }

    fn len(&self) -> usize {
        self.chars.len()
    }

    fn matches_at(&self, text: &[char], start: usize) -> bool {
        self.chars.iter().zip(&text[start..]).all(|(want, got)| want.is_none_or(|c| c == *got))
    }

    /// Where the piece first occurs in `text`: bit `i` of the state says the piece's first
    /// `i + 1` characters end at the current character.
    fn find(&self, text: &[char]) -> Option<usize> {
        let length = self.len();
        if length == 0 {
            return Some(0);
        }
        let (last_word, last_bit) = ((length - 1) / 64, (length - 1) % 64);
        let mut state = vec![0u64; self.wildcards.len()];
        // Words past `active` are all zero: a partial match grows by one bit per character,
        // so only the words it has reached need shifting, which keeps a text that rarely
        // starts the piece at one word per character.
        let mut active = 1;
        for (index, c) in text.iter().enumerate() {
            let mask = self.masks.get(c).unwrap_or(&self.wildcards);
            let mut carry = 1;
            let reach = (active + 1).min(state.len());
            for (word, allowed) in state[..reach].iter_mut().zip(mask) {
                let next_carry = *word >> 63;
                *word = ((*word << 1) | carry) & allowed;
                carry = next_carry;
            }
            active = state[..reach].iter().rposition(|word| *word != 0).map_or(1, |last| last + 1);
            if (state[last_word] >> last_bit) & 1 == 1 {
                return Some(index + 1 - length);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The obvious backtracking matcher, as the reference the automaton must agree with.
    fn reference(pattern: &[Option<Option<char>>], text: &[char]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some((None, rest)) => (0..=text.len()).any(|skip| reference(rest, &text[skip..])),
            Some((Some(want), rest)) => text
                .split_first()
                .is_some_and(|(got, tail)| want.is_none_or(|c| c == *got) && reference(rest, tail)),
        }
    }

    /// `%` as `None`, `_` as `Some(None)`, anything else literal.
    fn tokens(pattern: &str) -> Vec<Option<Option<char>>> {
        pattern
            .chars()
            .map(|c| match c {
                '%' => None,
                '_' => Some(None),
                other => Some(Some(other)),
            })
            .collect()
    }

    #[test]
    fn agrees_with_backtracking_on_every_small_case() {
        // Every pattern and text of up to five characters over a small alphabet.
        let alphabet = ['a', 'b', '%', '_'];
        let mut patterns = vec![String::new()];
        let mut all_patterns = vec![String::new()];
        for _ in 0..5 {
            patterns = patterns
                .iter()
                .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
                .collect();
            all_patterns.extend(patterns.iter().cloned());
        }
        let texts: Vec<String> =
            all_patterns.iter().filter(|p| !p.contains(['%', '_'])).cloned().collect();
        for pattern in &all_patterns {
            let compiled = LikePattern::compile(pattern);
            for text in &texts {
                let chars: Vec<char> = text.chars().collect();
                assert_eq!(
                    compiled.matches(text),
                    reference(&tokens(pattern), &chars),
                    "{pattern:?} LIKE {text:?}"
                );
            }
        }
    }

    #[test]
    fn long_pieces_span_several_words() {
        let piece = "ab_".repeat(50);
        let pattern = LikePattern::compile(&format!("%{piece}%"));
        let text = format!("zz{}zz", "abX".repeat(50));
        assert!(pattern.matches(&text));
        assert!(!pattern.matches(&text.replace("abXabX", "abXaaX")));
    }

    #[test]
    fn hostile_patterns_still_answer_right() {
        // Patterns that made the backtracking matcher take seconds on a long name.
        let name = "a".repeat(100_001);
        assert!(!LikePattern::compile(&format!("%{}b", "a".repeat(50_000))).matches(&name));
        assert!(!LikePattern::compile(&format!("%{}b%", "a".repeat(5_000))).matches(&name));
        assert!(LikePattern::compile(&format!("%{}%", "a".repeat(5_000))).matches(&name));
    }
}
