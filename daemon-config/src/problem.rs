//! What went wrong, where the value came from, and how to fix it.

use std::fmt;

use crate::settings::{setting, Key, Value};

/// Where a value came from. Later sources win: command line > environment > config file >
/// attributes > defaults.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    Default,
    Attribute,
    File(String),
    Env,
    CommandLine,
}

impl Origin {
    /// How a person would have written `key = value` in this place.
    pub fn spelling(&self, key: Key, value: &Value) -> String {
        let s = setting(key);
        match (self, value) {
            (Origin::Default, _) => format!("the default {} = {value}", s.name),
            (Origin::Attribute, Value::Flag(true)) => format!("#[daemon::main({})]", s.name),
            (Origin::Attribute, Value::Addresses(list)) => {
                format!("#[daemon::main({} = {:?})]", s.name, list.join(","))
            }
            (Origin::Attribute, Value::Duration(_) | Value::Text(_)) => {
                format!("#[daemon::main({} = \"{value}\")]", s.name)
            }
            (Origin::Attribute, _) => format!("#[daemon::main({} = {value})]", s.name),
            (Origin::File(path), _) => format!("{path}: {} = {value}", s.name),
            (Origin::Env, _) => format!("{}={value}", s.env),
            (Origin::CommandLine, Value::Flag(true)) => s.flag.to_string(),
            (Origin::CommandLine, _) => format!("{} {value}", s.flag),
        }
    }

    /// A short name of the source, for `--print-config`.
    pub fn label(&self) -> String {
        match self {
            Origin::Default => "default".into(),
            Origin::Attribute => "attribute".into(),
            Origin::File(path) => format!("file {path}"),
            Origin::Env => "environment".into(),
            Origin::CommandLine => "command line".into(),
        }
    }
}

/// One broken rule. `subjects` are the values involved, the first being the one to blame; the
/// message says what is wrong and how to fix it, and is the same whatever the values' origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub subjects: Vec<(Key, Origin, Value)>,
    pub message: String,
}

impl Problem {
    pub(crate) fn new(subjects: Vec<(Key, Origin, Value)>, message: String) -> Problem {
        Problem { subjects, message }
    }

    /// The setting to blame.
    pub fn key(&self) -> Option<Key> {
        self.subjects.first().map(|s| s.0)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let places: Vec<String> = self
            .subjects
            .iter()
            .map(|(key, origin, value)| origin.spelling(*key, value))
            .collect();
        if places.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", places.join(" with "), self.message)
        }
    }
}

/// The candidate closest to a misspelt name, if one is close enough to be what was meant.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_find_their_key() {
        let names = crate::SETTINGS.iter().map(|s| s.name);
        assert_eq!(suggest("max_spares", names.clone()), Some("max_spare"));
        assert_eq!(suggest("prefrok", names.clone()), Some("prefork"));
        assert_eq!(suggest("minspare", names.clone()), Some("min_spare"));
        assert_eq!(suggest("colour", names), None);
    }
}
