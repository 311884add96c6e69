//! Command-line arguments of the bench binaries: `--key value` (or
//! `--key=value`) options and bare words.

use std::collections::HashMap;

/// `--key value` pairs and bare words.
#[derive(Debug, Default)]
pub struct Args {
    pub words: Vec<String>,
    pub opts: HashMap<String, String>,
}

impl Args {
    pub fn parse(raw: impl IntoIterator<Item = String>) -> Args {
        let mut out = Args::default();
        let mut it = raw.into_iter();
        while let Some(a) = it.next() {
            if let Some(key) = a.strip_prefix("--") {
                let (k, v) = match key.split_once('=') {
                    Some((k, v)) => (k.to_owned(), v.to_owned()),
                    None => (key.to_owned(), it.next().unwrap_or_default()),
                };
                out.opts.insert(k, v);
            } else {
                out.words.push(a);
            }
        }
        out
    }

    pub fn num(&self, key: &str, default: u64) -> u64 {
        match self.opts.get(key) {
            None => default,
            Some(v) => v
                .replace('_', "")
                .parse()
                .unwrap_or_else(|_| panic!("--{key} {v}: not a number")),
        }
    }

    pub fn text(&self, key: &str, default: &str) -> String {
        self.opts
            .get(key)
            .cloned()
            .unwrap_or_else(|| default.to_owned())
    }
}
