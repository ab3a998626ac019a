//! Signal names and numbers, as `proc.signal` takes them and as deputies
//! forward what they catch.

/// The signals the agent sends and forwards, by name.
const SIGNALS: [(&str, i32); 17] = [
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ABRT", libc::SIGABRT),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("WINCH", libc::SIGWINCH),
    ("PWR", libc::SIGPWR),
];

/// The number of a signal named `name` (`TERM`, `SIGTERM`, any case).
pub fn by_name(name: &str) -> Option<i32> {
    let name = name.trim().to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    SIGNALS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// The name of signal `number`, if the agent knows it.
pub fn name_of(number: i32) -> Option<&'static str> {
    SIGNALS.iter().find(|(_, s)| *s == number).map(|(n, _)| *n)
}

/// Every name, for error messages.
pub fn names() -> String {
    SIGNALS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_match_both_ways() {
        assert_eq!(by_name("sigterm"), Some(libc::SIGTERM));
        assert_eq!(by_name("WINCH"), Some(libc::SIGWINCH));
        assert_eq!(by_name("BOGUS"), None);
        for (n, s) in SIGNALS {
            assert_eq!(name_of(s), Some(n));
        }
    }
}
