//! Admission warnings within the limits the API server and users can live with (SPEC §5): at most
//! 5, each at most 120 characters, no duplicates.

/// Most warnings one response carries.
pub const MAX_WARNINGS: usize = 5;
/// Longest warning, in characters.
pub const MAX_WARNING_CHARS: usize = 120;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Warnings(Vec<String>);

impl Warnings {
    /// Adds a warning, cut to 120 characters; duplicates and warnings past the fifth are dropped.
    pub fn push(&mut self, warning: impl Into<String>) {
        let mut w: String = warning.into();
        if let Some((cut, _)) = w.char_indices().nth(MAX_WARNING_CHARS) {
            let keep = w[..cut]
                .char_indices()
                .nth(MAX_WARNING_CHARS - 1)
                .map_or(cut, |(i, _)| i);
            w.truncate(keep);
            w.push('…');
        }
        if self.0.len() < MAX_WARNINGS && !self.0.contains(&w) {
            self.0.push(w);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<String> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_warnings_are_cut_to_120_characters() {
        let mut w = Warnings::default();
        w.push("é".repeat(300));
        assert_eq!(w.as_slice()[0].chars().count(), MAX_WARNING_CHARS);
        assert!(w.as_slice()[0].ends_with('…'));
    }

    #[test]
    fn exactly_120_is_kept_whole() {
        let mut w = Warnings::default();
        w.push("a".repeat(120));
        assert_eq!(w.as_slice()[0], "a".repeat(120));
    }

    #[test]
    fn at_most_five_and_no_duplicates() {
        let mut w = Warnings::default();
        w.push("same");
        w.push("same");
        for i in 0..10 {
            w.push(format!("w{i}"));
        }
        assert_eq!(w.as_slice(), ["same", "w0", "w1", "w2", "w3"]);
    }
}
