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
//! lockstep purge NAMESPACE.FIELD --at TIME
//! lockstep history NAMESPACE.FIELD
//! lockstep watch [NAMESPACE] [--count N] [--for DURATION]
//! lockstep fleet NAMESPACE
//! lockstep console [--listen 127.0.0.1:7070] [--read-only]
//! ```
//!
//! `set` and `ramp` take `--wait`: after the write, wait until every live
//! process holds it.
//!
//! The store is `--url`, `--url-file` or `LOCKSTEP_URL`; `--json` prints
//! JSON. Exit status: 0 done, 1 refused or failed, 2 usage.

mod args;
mod cancel;
#[cfg(feature = "console")]
mod console;
mod context;
mod failure;
mod fleet;
mod get;
#[cfg(test)]
mod json_rule;
mod ls;
mod outcome;
mod set;
mod time;
mod value;
mod view;
mod wait;
mod watch;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::context::Ctx;
use crate::failure::Failure;
use crate::outcome::Outcome;
use crate::wait::Written;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let secrets = Secrets::of(&argv);
    let cli = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(e) => {
            // Clap quotes offending arguments: never a password, and
            // nothing a terminal would act on (one may be a name copied
            // from the store).
            let text = secrets.hide(&e.render().to_string());
            let text = outcome::visible(&text);
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
    // The store's URL may come from a file: its secrets are hidden too.
    let secrets = match context::store_url(&cli) {
        Ok(url) => secrets.with(&url),
        Err(_) => secrets,
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            outcome::warn(&format!("error: {}", secrets.hide(&failure.message)));
            ExitCode::from(failure.code)
        }
    }
}

/// Runs the command line; each command's outcome is printed here.
async fn run(cli: Cli) -> Result<(), Failure> {
    let url = context::store_url(&cli)?;
    let ctx = Ctx {
        store: lockstep::store::open(&url)?,
    };
    let json = cli.json;
    let outcome = match cli.command {
        Command::Ls { namespace } => ls::ls(&ctx, namespace.as_deref()).await?,
        Command::Get { field } => get::get(&ctx, &field).await?,
        Command::History { field } => get::history(&ctx, &field).await?,
        Command::Set {
            field,
            value,
            at,
            unchecked,
            wait,
        } => {
            let written = set::set(&ctx, &field, &value, at, &unchecked).await?;
            return after_write(&ctx, written, wait, json).await;
        }
        Command::Ramp {
            field,
            values,
            every,
            from,
            unchecked,
            wait,
        } => {
            let written = set::ramp(&ctx, &field, &values, every, from, &unchecked).await?;
            return after_write(&ctx, written, wait, json).await;
        }
        Command::Cancel {
            field,
            at,
            unchecked,
        } => cancel::cancel(&ctx, &field, at, &unchecked).await?,
        Command::Purge {
            field,
            at,
            unchecked,
        } => cancel::purge(&ctx, &field, &at, &unchecked).await?,
        Command::Watch {
            namespace,
            count,
            duration,
        } => {
            let mut show = |frame: outcome::Outcome| frame.print(json);
            return watch::watch(&ctx, namespace.as_deref(), count, duration, json, &mut show)
                .await;
        }
        Command::Fleet { namespace } => fleet::fleet(&ctx, &namespace).await?,
        #[cfg(feature = "console")]
        Command::Console {
            listen,
            read_only,
            token_file,
            allow_host,
        } => {
            let options = console::Options {
                listen,
                read_only,
                token_file,
                allow_host,
            };
            return console::serve(ctx, options).await;
        }
    };
    outcome.print(json);
    Ok(())
}

/// Prints what a write did; with `wait`, first waits until every live
/// process holds it. On a terminal the write shows at once and the wait's
/// result after it; as JSON, one object once the wait is over, with the
/// wait's result under `wait`.
async fn after_write(
    ctx: &Ctx,
    (outcome, written): (Outcome, Written),
    wait: bool,
    json: bool,
) -> Result<(), Failure> {
    if !wait {
        outcome.print(json);
        return Ok(());
    }
    if !json {
        outcome.print(false);
    }
    let (waited, failure) = wait::until_held(ctx, &written).await;
    if json {
        let mut object = outcome.json;
        object["wait"] = waited.json;
        Outcome::new("", object).print(true);
    } else {
        waited.print(false);
    }
    failure.map_or(Ok(()), Err)
}

/// The secrets of the URLs among the arguments (and `--opt=URL`), in
/// `LOCKSTEP_URL` and in `--url-file`, to hide from anything printed.
struct Secrets(Vec<String>);

impl Secrets {
    fn of(argv: &[String]) -> Secrets {
        let env = std::env::var("LOCKSTEP_URL").ok();
        let mut secrets = Secrets(Vec::new());
        for text in argv.iter().chain(env.as_ref()) {
            let value = match text.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => value,
                _ => text.as_str(),
            };
            secrets = secrets.with(value);
        }
        secrets
    }

    /// These and the secrets of `url`, longest first.
    fn with(mut self, url: &str) -> Secrets {
        self.0.extend(lockstep::store::secrets(url));
        self.0.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        self.0.dedup();
        self
    }

    /// `text` with every secret replaced by `***`.
    fn hide(&self, text: &str) -> String {
        lockstep::store::scrub(text, &self.0)
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
        let e = Cli::try_parse_from(&argv).unwrap_err();
        let text = secrets.hide(&e.render().to_string());
        assert!(text.contains("redis://:***@h.x"), "{text}");
        assert!(!text.contains("pw9") && !text.contains("s3cret"), "{text}");
        assert_eq!(
            secrets.hide("`redis://:pw9@h` failed"),
            "`redis://:***@h` failed"
        );
    }

    #[test]
    fn the_latest_instant_is_the_librarys() {
        assert_eq!(time::LATEST, lockstep::store::MAX_INSTANT);
    }
}
