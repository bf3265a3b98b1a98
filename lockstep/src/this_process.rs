//! Who this process is, as the fleet view and the history name it: its
//! machine's host name and its program's name, read one way for both (a
//! process's record and the writer of its writes name one machine alike).

/// The machine's host name: the kernel's (`/proc/sys/kernel/hostname`),
/// else `/etc/hostname`, else `HOSTNAME`, else `unknown`.
pub(crate) fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The program's name: its executable's file name, else `unknown`.
pub(crate) fn program_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_host_and_the_program_have_names() {
        assert!(!super::host_name().is_empty());
        assert!(!super::host_name().contains('\n'));
        assert!(!super::program_name().is_empty());
    }
}
