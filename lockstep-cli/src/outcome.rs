//! What a command did, as a person reads it and as JSON: every command
//! returns one, and [`Outcome::print`] is the one place that prints.

use serde_json::Value;

/// A command's result, in both forms.
pub struct Outcome {
    /// For a person: lines, each ending in a newline.
    pub text: String,
    /// For `--json`: one object.
    pub json: Value,
}

impl Outcome {
    /// An outcome of `text` and `json`.
    pub fn new(text: impl Into<String>, json: Value) -> Outcome {
        Outcome {
            text: text.into(),
            json,
        }
    }

    /// Prints it, as JSON (one line) with `json`.
    pub fn print(&self, json: bool) {
        if json {
            println!("{}", self.json);
        } else {
            print!("{}", self.text);
        }
        let _ = std::io::Write::flush(&mut std::io::stdout());
    }
}
