//! What a command did, as a person reads it and as JSON: every command
//! returns one, and [`Outcome::print`] is the one place that prints.
//!
//! Text for a person passes through [`visible`] on its way out, so that no
//! string from the store (a value, a writer's name, a process's host or a
//! namespace, any of which someone with write access to the store chose)
//! can move the cursor, retitle or clear an operator's terminal. JSON stays
//! JSON: its encoder escapes control characters already.

use std::borrow::Cow;

use serde_json::Value;

/// Home and clear: what `watch` sends before each frame on a terminal.
const REDRAW: &str = "\x1b[H\x1b[2J";

/// A command's result, in both forms.
pub struct Outcome {
    /// For a person: lines, each ending in a newline.
    pub text: String,
    /// For `--json`: one object.
    pub json: Value,
    /// Clear the terminal before the text (`watch` on a terminal).
    redraw: bool,
}

impl Outcome {
    /// An outcome of `text` and `json`.
    pub fn new(text: impl Into<String>, json: Value) -> Outcome {
        Outcome {
            text: text.into(),
            json,
            redraw: false,
        }
    }

    /// This outcome, shown on a cleared terminal in place of the last one.
    pub fn redrawn(mut self) -> Outcome {
        self.redraw = true;
        self
    }

    /// Prints it, as JSON (one line) with `json`.
    pub fn print(&self, json: bool) {
        if json {
            println!("{}", self.json);
        } else {
            let redraw = if self.redraw { REDRAW } else { "" };
            print!("{redraw}{}", visible(&self.text));
        }
        let _ = std::io::Write::flush(&mut std::io::stdout());
    }
}

/// Prints `message` on standard error as a line, made [`visible`].
pub fn warn(message: &str) {
    eprintln!("{}", visible(message));
}

/// `text` with every character a terminal would act on instead of showing
/// written out: control characters other than the newline (C0, DEL and C1:
/// escape sequences, carriage returns, backspaces, bells) as `\x1b` or
/// `\u{9b}`, and the bidirectional overrides and isolates (U+202A–U+202E,
/// U+2066–U+2069) that can make a line read in another order than it runs.
pub fn visible(text: &str) -> Cow<'_, str> {
    if !text.chars().any(acted_on) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            c if !acted_on(c) => out.push(c),
            c if u32::from(c) < 0x80 => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
        }
    }
    Cow::Owned(out)
}

/// Whether a terminal acts on `c` rather than showing it.
fn acted_on(c: char) -> bool {
    (c.is_control() && c != '\n') || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_terminal_would_act_on_is_written_out() {
        assert_eq!(
            visible("a\x1b]0;pwned\x07b\x1b[2J\r\t\x08\x7f\u{9b}31m\n"),
            "a\\x1b]0;pwned\\x07b\\x1b[2J\\x0d\\x09\\x08\\x7f\\u{9b}31m\n"
        );
        assert_eq!(
            visible("abc\u{202e}fed\u{2066}"),
            "abc\\u{202e}fed\\u{2066}"
        );
        // Text and newlines pass as they are, without a copy.
        assert!(matches!(visible("ümlaut → 50 %\n"), Cow::Borrowed(_)));
    }
}
