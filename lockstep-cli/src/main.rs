//! `lockstep`, the operator's command line: read, set, ramp and cancel the
//! values of lockstep registries in a store, checked against the schemas
//! the registries publish, so that nothing a process would reject is ever
//! written and no write touches an instant before the horizon.
//!
//! ```text
//! lockstep ls [NAMESPACE]
//! lockstep get NAMESPACE.FIELD
//! lockstep set NAMESPACE.FIELD VALUE [--at TIME]
//! lockstep ramp NAMESPACE.FIELD 0,10,25,50,100 [--every DURATION] [--from TIME]
//! lockstep cancel NAMESPACE.FIELD --at TIME
//! lockstep history NAMESPACE.FIELD
//! lockstep watch [NAMESPACE] [--count N] [--for DURATION]
//! ```
//!
//! The store is `--url`, `--url-file` or `LOCKSTEP_URL`; `--json` prints
//! JSON. Exit status: 0 done, 1 refused or failed, 2 usage.

mod args;
mod commands;
mod time;
mod value;
mod view;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let secrets = Secrets::of(&argv);
    let cli = match args::Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(e) => {
            // Clap quotes offending arguments: never a password.
            let text = secrets.hide(&e.render().to_string());
            if e.use_stderr() {
                eprint!("{text}");
            } else {
                print!("{text}");
            }
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", secrets.hide(&failure.message));
            ExitCode::from(failure.code)
        }
    }
}

/// The passwords of the URLs among the arguments (and `--opt=URL`) and in
/// `LOCKSTEP_URL`, to hide from anything printed about them.
struct Secrets(Vec<String>);

impl Secrets {
    fn of(argv: &[String]) -> Secrets {
        let env = std::env::var("LOCKSTEP_URL").ok();
        let mut secrets = Vec::new();
        for text in argv.iter().chain(env.as_ref()) {
            let value = match text.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => value,
                _ => text.as_str(),
            };
            // What `redact` replaced: the text between the parts it kept.
            let shown = lockstep::store::redact(value);
            if shown == value {
                continue;
            }
            let prefix = value
                .bytes()
                .zip(shown.bytes())
                .take_while(|(a, b)| a == b)
                .count();
            let suffix = value
                .bytes()
                .rev()
                .zip(shown.bytes().rev())
                .take_while(|(a, b)| a == b)
                .count();
            let end = value.len().saturating_sub(suffix).max(prefix);
            if let Some(secret) = value.get(prefix..end)
                && !secret.is_empty()
            {
                secrets.push(secret.to_owned());
            }
        }
        Secrets(secrets)
    }

    /// `text` with every secret replaced by `***`.
    fn hide(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.0 {
            text = text.replace(secret.as_str(), "***");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_errors_hide_passwords() {
        let argv: Vec<String> = [
            "lockstep",
            "--url=redis://u:s3cret@h",
            "get",
            "redis://:pw9@h.x",
        ]
        .map(str::to_owned)
        .to_vec();
        let secrets = Secrets::of(&argv);
        let e = args::Cli::try_parse_from(&argv).unwrap_err();
        let text = secrets.hide(&e.render().to_string());
        assert!(text.contains("redis://:***@h.x"), "{text}");
        assert!(!text.contains("pw9") && !text.contains("s3cret"), "{text}");
        assert_eq!(
            secrets.hide("`redis://:pw9@h` failed"),
            "`redis://:***@h` failed"
        );
    }
}
