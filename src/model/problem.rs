//! [`Problem`]: one thing wrong with a config file or an API request,
//! located by its JSON path.

use std::fmt;

/// One validation problem.
///
/// Invariant: `message` never holds a secret value; it names the field and
/// says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// JSON path of the offending value, e.g. `credentials[2].auth.secret_name`;
    /// empty for the document as a whole.
    pub path: String,
    /// What is wrong and what to write instead.
    pub message: String,
}

/// Every problem found in one pass, in document order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems(Vec<Problem>);

/// Appends `.field` to a JSON path.
pub fn field(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// Appends `[index]` to a JSON path.
pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

// === impl Problem ===

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

// === impl Problems ===

impl Problems {
    /// No problems yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a problem at `path`.
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many problems were found.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The problems, in the order found.
    pub fn iter(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter()
    }

    /// `Ok(value)` when nothing was found, else the problems.
    pub fn into_result<T>(self, value: T) -> Result<T, Problems> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl From<Problem> for Problems {
    fn from(p: Problem) -> Self {
        Problems(vec![p])
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_display() {
        let p = index(&field(&field("credentials[2]", "auth"), "allowed_hosts"), 3);
        assert_eq!(p, "credentials[2].auth.allowed_hosts[3]");
        let mut all = Problems::new();
        all.push(p, "bad");
        all.push("", "whole file");
        assert_eq!(
            all.to_string(),
            "credentials[2].auth.allowed_hosts[3]: bad\nwhole file"
        );
        assert_eq!(all.len(), 2);
        assert!(all.into_result(()).is_err());
    }
}
