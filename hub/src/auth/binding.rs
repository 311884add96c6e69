//! Binding write tokens to gateways: a token may carry an agent id pattern
//! (`gw-plant1-07`, `gw-plant1-*`), and a segment that claims any other
//! agent id is refused (403) before anything is read from it.
//!
//! Why: a segment's agent id is the Delta transaction id that makes it
//! exactly-once. A write token that could speak for any gateway could
//! upload a segment with another gateway's id and a huge sequence, and from
//! then on every real segment of that gateway would be answered `duplicate`
//! and deleted from its buffer: silent loss. Gateways get bound tokens;
//! line protocol and MessagePack clients keep unbound ones (they write no
//! segments).

use std::fmt;

use ferry_protocols::AgentId;
use serde::{Deserialize, Serialize};

/// The longest pattern, in bytes (as an agent id).
const MAX_LEN: usize = 64;

/// An agent id, or an agent id with `*` wildcards (any run of characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AgentPattern(String);

impl AgentPattern {
    /// Parses a pattern: the characters of an agent id (letters, digits,
    /// `_`, `-`, `.`) and `*`; not empty, not only wildcards.
    pub fn new(pattern: &str) -> Result<AgentPattern, String> {
        if pattern.is_empty() || pattern.len() > MAX_LEN {
            return Err(format!(
                "an agent pattern is 1..={MAX_LEN} bytes (an agent id, or one with * wildcards)"
            ));
        }
        if let Some(c) = pattern
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '*')))
        {
            return Err(format!(
                "agent pattern {pattern:?}: {c:?} is not allowed (letters, digits, '_', '-', '.', and '*')"
            ));
        }
        if pattern.chars().all(|c| c == '*') {
            return Err(format!(
                "agent pattern {pattern:?} matches every agent: leave the token unbound instead"
            ));
        }
        Ok(AgentPattern(pattern.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `agent` matches: `*` stands for any run of characters
    /// (possibly empty), everything else matches itself.
    pub fn matches(&self, agent: &AgentId) -> bool {
        glob(self.0.as_bytes(), agent.as_str().as_bytes())
    }
}

/// Iterative wildcard match with backtracking to the last `*`: linear in
/// practice, no recursion, no regex.
pub(crate) fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

impl TryFrom<String> for AgentPattern {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        AgentPattern::new(&s)
    }
}

impl From<AgentPattern> for String {
    fn from(p: AgentPattern) -> String {
        p.0
    }
}

impl fmt::Display for AgentPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> AgentId {
        AgentId::new(s).expect("agent id")
    }

    #[test]
    fn patterns_match_like_globs() {
        let p = AgentPattern::new("gw-plant1-*").expect("pattern");
        assert!(p.matches(&id("gw-plant1-07")));
        assert!(p.matches(&id("gw-plant1-")));
        assert!(!p.matches(&id("gw-plant2-07")));
        assert!(!p.matches(&id("xgw-plant1-07")));
        let exact = AgentPattern::new("gw-7").expect("pattern");
        assert!(exact.matches(&id("gw-7")));
        assert!(!exact.matches(&id("gw-77")));
        let middle = AgentPattern::new("gw-*-edge.*").expect("pattern");
        assert!(middle.matches(&id("gw-north-edge.1")));
        assert!(!middle.matches(&id("gw-north-core.1")));
        assert!(AgentPattern::new("*").is_err());
        assert!(AgentPattern::new("").is_err());
        assert!(AgentPattern::new("gw/1").is_err());
        assert!(AgentPattern::new("gw 1").is_err());
    }

    #[test]
    fn no_pathological_backtracking() {
        let p = AgentPattern::new(&format!("{}b", "*a".repeat(30))).expect("pattern");
        let text = id(&"a".repeat(60));
        let started = std::time::Instant::now();
        assert!(!p.matches(&text));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}
