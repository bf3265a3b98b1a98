//! The command line: commands, options and the parsers of their values.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

pub use crate::time::When;
use crate::time::parse_time;

/// Read and change the values of lockstep registries, checked against the
/// schemas the registries publish, without ever breaking the fleet's
/// agreement: writes only touch instants at or after the horizon.
#[derive(Debug, Parser)]
#[command(
    name = "lockstep",
    version,
    after_help = "The store is --url, else --url-file, else the LOCKSTEP_URL environment \
                  variable. Give a URL with a password through LOCKSTEP_URL or --url-file: \
                  command lines are visible to every user of the machine.\n\n\
                  Exit status: 0 done, 1 refused or failed (the reason on stderr), 2 usage."
)]
pub struct Cli {
    /// The store: redis://[user[:password]@]host[:port][/db], rediss://…
    /// (TLS), redis+unix:///path/to/socket (or unix://…),
    /// redis+cluster://host:port,host:port (rediss+cluster://… with TLS),
    /// postgres://… (or postgresql://…), mysql://… (or mariadb://…),
    /// sqlite://path (or sqlite:path). Not memory://: a memory store lives
    /// inside one process. Percent-encode `/`, `?`, `#` and `@` in a
    /// password: %2F, %3F, %23, %40
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,

    /// A file whose first line is the store's URL (keeps a password off the
    /// command line)
    #[arg(long, global = true, value_name = "PATH", conflicts_with = "url")]
    pub url_file: Option<PathBuf>,

    /// Print JSON (one object; one per line for `watch`)
    #[arg(long, global = true)]
    pub json: bool,

    /// What to do
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List registries and their fields, each with its current value, the
    /// next pending change and the tick
    Ls {
        /// Only this registry
        #[arg(value_parser = parse_namespace)]
        namespace: Option<String>,
    },
    /// Show a field's current value and pending entries
    Get {
        /// The field, as NAMESPACE.FIELD
        #[arg(value_parser = parse_field)]
        field: FieldPath,
    },
    /// Set a field: at the horizon (the earliest safe instant), or at --at
    Set {
        /// The field, as NAMESPACE.FIELD
        #[arg(value_parser = parse_field)]
        field: FieldPath,
        /// The value as JSON (42, true, "text", [1,2], {"a":1}); a bare word
        /// is a string for string fields
        #[arg(allow_hyphen_values = true)]
        value: String,
        /// When: RFC 3339 (2026-12-01T09:00:00Z) or relative (+30m, +4s),
        /// rounded up to a tick boundary; refused if before the horizon
        #[arg(long, value_parser = parse_time, value_name = "TIME")]
        at: Option<When>,
        #[command(flatten)]
        unchecked: Unchecked,
        /// After the write, wait until every live process holds it (exit 0),
        /// or exit 1 naming those that will not before it activates
        #[arg(long)]
        wait: bool,
    },
    /// Write several future entries of a field in one atomic write (a
    /// dark-launch ramp), one tick apart unless --every says otherwise
    Ramp {
        /// The field, as NAMESPACE.FIELD
        #[arg(value_parser = parse_field)]
        field: FieldPath,
        /// The values, comma-separated: 0,10,25,50,100 (or a JSON array)
        #[arg(allow_hyphen_values = true)]
        values: String,
        /// Time between entries (at least one tick): 10m, 1h 30m
        #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
        every: Option<Duration>,
        /// When the first entry takes effect (default: the horizon)
        #[arg(long, value_parser = parse_time, value_name = "TIME")]
        from: Option<When>,
        #[command(flatten)]
        unchecked: Unchecked,
        /// After the write, wait until every live process holds it (exit 0),
        /// or exit 1 naming those that will not before it activates
        #[arg(long)]
        wait: bool,
    },
    /// Remove a pending entry (only one at or beyond the horizon)
    Cancel {
        /// The field, as NAMESPACE.FIELD
        #[arg(value_parser = parse_field)]
        field: FieldPath,
        /// The entry's instant, as `get` shows it (rounded up to a tick
        /// boundary)
        #[arg(long, value_parser = parse_time, value_name = "TIME")]
        at: When,
        #[command(flatten)]
        unchecked: Unchecked,
    },
    /// Remove an entry no process can use (one that does not decode, or
    /// whose instant is not a number); a good entry only at or beyond the
    /// horizon, as cancel does
    Purge {
        /// The field, as NAMESPACE.FIELD
        #[arg(value_parser = parse_field)]
        field: FieldPath,
        /// The entry's instant exactly as `get` or `history` shows it (RFC
        /// 3339, or the stored text of an instant that is not a number)
        #[arg(long, value_name = "TIME")]
        at: String,
        #[command(flatten)]
        unchecked: Unchecked,
    },
    /// Show a field's past and pending entries, with who wrote them
    History {
        /// The field, as NAMESPACE.FIELD
        #[arg(value_parser = parse_field)]
        field: FieldPath,
    },
    /// A live view of registries with a countdown to the next change
    /// (Ctrl-C stops it)
    Watch {
        /// Only this registry
        #[arg(value_parser = parse_namespace)]
        namespace: Option<String>,
        /// Stop after this many frames (one a second)
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Stop after this long: 30s, 5m
        #[arg(long = "for", value_parser = parse_duration, value_name = "DURATION")]
        duration: Option<Duration>,
    },
    /// A registry's live processes and, for each pending change, how many
    /// of them hold it and which do not
    Fleet {
        /// The registry
        #[arg(value_parser = parse_namespace)]
        namespace: String,
    },
    /// Serve the operator's console: a page in the browser with every
    /// registry, its fields, pending changes with who holds them, history
    /// and timelines, and forms that set, ramp and cancel with the same
    /// checks as these commands (Ctrl-C stops it)
    #[cfg(feature = "console")]
    Console {
        /// Where to listen; loopback unless told otherwise (port 0: any
        /// free port, printed at start)
        #[arg(long, default_value = "127.0.0.1:7070", value_name = "ADDR")]
        listen: std::net::SocketAddr,
        /// Serve no write route at all: the page only shows
        #[arg(long)]
        read_only: bool,
        /// A file whose first line is the token writes need (else
        /// LOCKSTEP_CONSOLE_TOKEN, else a random one printed at start)
        #[arg(long, value_name = "PATH", conflicts_with = "read_only")]
        token_file: Option<PathBuf>,
        /// Also answer to this Host (NAME:PORT), e.g. the machine's name
        /// when listening beyond loopback; any other Host is refused, so a
        /// page of another site cannot reach the console by DNS rebinding
        #[arg(long, value_name = "NAME:PORT")]
        allow_host: Vec<String>,
    },
}

/// Writing without the checks of a published schema.
#[derive(Debug, Args)]
pub struct Unchecked {
    /// Write even though the registry published no schema (or one without
    /// value types): the value is not checked
    #[arg(long)]
    pub force: bool,
    /// The registry's tick, needed with --force when no schema says it
    #[arg(long, value_parser = parse_duration, value_name = "DURATION", requires = "force")]
    pub tick: Option<Duration>,
}

/// `NAMESPACE.FIELD`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldPath {
    /// The registry's namespace.
    pub namespace: String,
    /// The field's key.
    pub key: String,
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.namespace, self.key)
    }
}

/// Whether `name` can be a namespace or key: 1 to 100 ASCII letters,
/// digits, `_` and `-` (what the store layout holds).
fn is_name(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Parses `NAMESPACE.FIELD`, saying what is accepted.
pub fn parse_field(text: &str) -> Result<FieldPath, String> {
    match text.split_once('.') {
        Some((namespace, key)) if is_name(namespace) && is_name(key) => Ok(FieldPath {
            namespace: namespace.to_owned(),
            key: key.to_owned(),
        }),
        _ => Err(
            "expected NAMESPACE.FIELD, e.g. flags.foobar_percent (each part 1 to 100 ASCII \
             letters, digits, `_` and `-`)"
                .to_owned(),
        ),
    }
}

fn parse_namespace(text: &str) -> Result<String, String> {
    if is_name(text) {
        Ok(text.to_owned())
    } else {
        Err("expected a namespace: 1 to 100 ASCII letters, digits, `_` and `-`".to_owned())
    }
}

/// Parses a `DURATION`, saying what is accepted.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{e}; expected a duration such as 4s, 10m, 1h 30m"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_url_help_names_every_scheme() {
        let help = Cli::command().render_long_help().to_string();
        for scheme in [
            "redis://",
            "rediss://",
            "redis+unix://",
            "unix://",
            "redis+cluster://",
            "rediss+cluster://",
            "postgres://",
            "postgresql://",
            "mysql://",
            "mariadb://",
            "sqlite://",
            "sqlite:path",
            "Not memory://",
        ] {
            assert!(help.contains(scheme), "{scheme} missing from:\n{help}");
        }
    }

    #[test]
    fn fields_are_namespace_dot_key() {
        assert_eq!(
            parse_field("flags.foobar_percent").unwrap(),
            FieldPath {
                namespace: "flags".into(),
                key: "foobar_percent".into()
            }
        );
        for bad in ["flags", ".x", "x.", "", "redis://:pw@127.0.0.1", "a.b.c"] {
            assert!(parse_field(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_are_rfc3339_or_relative() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |s: &str| parse_time(s).unwrap().resolve(now).unwrap();
        assert_eq!(at("+30m"), now.timestamp_millis() + 1_800_000);
        assert_eq!(at("+4s"), now.timestamp_millis() + 4_000);
        assert_eq!(at("+1h 30m"), now.timestamp_millis() + 5_400_000);
        assert_eq!(
            at("2026-12-01T10:00:00+01:00"),
            DateTime::parse_from_rfc3339("2026-12-01T09:00:00Z")
                .unwrap()
                .timestamp_millis()
        );
        assert_eq!(at("2026-01-01T00:00:00.0001Z"), now.timestamp_millis() + 1);
        for bad in ["tomorrow", "+", "+5 parsecs", "2026-13-01T00:00:00Z", "-5m"] {
            let e = parse_time(bad).unwrap_err();
            assert!(e.contains("expected RFC 3339"), "{bad}: {e}");
        }
    }

    #[test]
    fn negative_values_are_values() {
        let cli = Cli::try_parse_from(["lockstep", "set", "a.b", "-5"]).unwrap();
        assert!(matches!(cli.command, Command::Set { value, .. } if value == "-5"));
        let cli = Cli::try_parse_from(["lockstep", "ramp", "a.b", "-1,0,1"]).unwrap();
        assert!(matches!(cli.command, Command::Ramp { values, .. } if values == "-1,0,1"));
    }
}
