//! Why a command did not do what it was asked, and its exit status.

/// A command's failure: the process prints `message` on stderr and exits
/// with `code`.
#[derive(Debug)]
pub struct Failure {
    /// 1: refused or failed; 2: usage.
    pub code: u8,
    /// What went wrong, and what would be right.
    pub message: String,
}

impl Failure {
    /// Refused or failed: exit status 1.
    pub fn refused(message: impl Into<String>) -> Failure {
        Failure {
            code: 1,
            message: message.into(),
        }
    }

    /// A usage mistake: exit status 2.
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: 2,
            message: message.into(),
        }
    }
}

impl From<lockstep::Error> for Failure {
    fn from(e: lockstep::Error) -> Failure {
        Failure::refused(e.to_string())
    }
}

/// A refused or failed write: the store's reason, and that nothing changed
/// (or, when the store failed midway, how to tell).
pub fn write_failure(e: lockstep::Error) -> Failure {
    match e {
        lockstep::Error::Store { .. } => Failure::refused(format!(
            "{e} (the write may or may not have been committed: check with `lockstep history`)"
        )),
        e => Failure::refused(format!("{e}; nothing was written")),
    }
}
