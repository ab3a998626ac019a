//! `mps`'s `ps` options: the common BSD (`aux`, `ax`, `u`, `x`) and UNIX
//! (`-e`, `-A`, `-f`, `-p PID`, `-u USER`) forms, as procps reads them.

use std::fmt;

/// The columns `mps` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `PID NODE TTY TIME CMD` (plain `ps`).
    #[default]
    Default,
    /// `-f`: `UID PID PPID NODE C STIME TTY TIME CMD`.
    Full,
    /// `u`: `USER PID NODE %CPU %MEM VSZ RSS TTY STAT START TIME COMMAND`.
    User,
}

/// Which processes `mps` lists.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selection {
    /// `-e`, `-A` or `ax`: every process.
    pub every: bool,
    /// `a`: other users' processes too (those with a terminal, unless `x`).
    pub all_users: bool,
    /// `x`: processes without a terminal too.
    pub no_tty_too: bool,
    /// BSD style (`a`, `u` or `x` given): the caller's processes whatever
    /// their terminal, rather than those on the caller's terminal.
    pub bsd: bool,
    /// `-p`: these PIDs only.
    pub pids: Vec<i32>,
    /// `-u`: these users' processes only (names or uids).
    pub users: Vec<String>,
}

/// `mps`'s `ps` options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PsArgs {
    /// The columns.
    pub format: Format,
    /// The processes.
    pub selection: Selection,
}

/// An option `mps` does not understand, or one missing its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PsArgsError(pub String);

impl fmt::Display for PsArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PsArgsError {}

impl PsArgs {
    /// Parses `ps` options (the program name and `mps`'s own `--` options
    /// already removed).
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Self, PsArgsError> {
        let mut out = PsArgs::default();
        let mut i = 0;
        while let Some(arg) = args.get(i).map(AsRef::as_ref) {
            i += 1;
            if let Some(letters) = arg.strip_prefix('-') {
                for (at, c) in letters.char_indices() {
                    match c {
                        'e' | 'A' => out.selection.every = true,
                        'f' => out.format = Format::Full,
                        'p' | 'u' => {
                            // The value follows in the same word or the next.
                            let rest = letters.get(at + 1..).unwrap_or("");
                            let value = if rest.is_empty() {
                                i += 1;
                                args.get(i - 1).map(AsRef::as_ref).ok_or_else(|| {
                                    PsArgsError(format!("option -{c} needs a list"))
                                })?
                            } else {
                                rest
                            };
                            if c == 'p' {
                                out.selection.pids.extend(pid_list(value)?);
                            } else {
                                out.selection.users.extend(list(value));
                            }
                            break;
                        }
                        other => {
                            return Err(PsArgsError(format!(
                                "unsupported option -{other} (mps knows -e, -A, -f, -p PID, -u USER and BSD a, u, x)"
                            )));
                        }
                    }
                }
            } else if arg.chars().all(|c| c.is_ascii_digit() || c == ',') && !arg.is_empty() {
                // `ps 1234`: BSD's PID list.
                out.selection.pids.extend(pid_list(arg)?);
            } else {
                for c in arg.chars() {
                    match c {
                        'a' => out.selection.all_users = true,
                        'x' => out.selection.no_tty_too = true,
                        'u' => out.format = Format::User,
                        other => {
                            return Err(PsArgsError(format!(
                                "unsupported option {other} (mps knows -e, -A, -f, -p PID, -u USER and BSD a, u, x)"
                            )));
                        }
                    }
                }
                out.selection.bsd = true;
            }
        }
        if out.selection.all_users && out.selection.no_tty_too {
            out.selection.every = true;
        }
        Ok(out)
    }
}

fn list(value: &str) -> Vec<String> {
    value
        .split([',', ' '])
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn pid_list(value: &str) -> Result<Vec<i32>, PsArgsError> {
    list(value)
        .iter()
        .map(|p| {
            p.parse::<i32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| PsArgsError(format!("process ID list syntax error: `{p}`")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bsd_aux_and_unix_ef_are_everything_in_their_formats() {
        let aux = PsArgs::parse(&["aux"]).unwrap();
        assert_eq!(aux.format, Format::User);
        assert!(aux.selection.every);
        let ef = PsArgs::parse(&["-ef"]).unwrap();
        assert_eq!(ef.format, Format::Full);
        assert!(ef.selection.every);
        assert_eq!(PsArgs::parse(&["-e", "-f"]).unwrap(), ef);
        assert!(PsArgs::parse(&["-A"]).unwrap().selection.every);
    }

    #[test]
    fn pid_and_user_lists_take_their_value_attached_or_next() {
        let a = PsArgs::parse(&["-p", "1,22", "-fp33"]).unwrap();
        assert_eq!(a.selection.pids, vec![1, 22, 33]);
        assert_eq!(a.format, Format::Full);
        let u = PsArgs::parse(&["-u", "root,daemon", "-uwww"]).unwrap();
        assert_eq!(u.selection.users, vec!["root", "daemon", "www"]);
        assert_eq!(PsArgs::parse(&["42"]).unwrap().selection.pids, vec![42]);
    }

    #[test]
    fn bad_options_say_what_is_wrong() {
        assert!(
            PsArgs::parse(&["-p"])
                .unwrap_err()
                .0
                .contains("needs a list")
        );
        assert!(PsArgs::parse(&["-p", "x1"]).unwrap_err().0.contains("`x1`"));
        assert!(PsArgs::parse(&["-p", "-3"]).is_err());
        assert!(PsArgs::parse(&["-L"]).unwrap_err().0.contains("-L"));
        assert!(PsArgs::parse(&["auxf"]).unwrap_err().0.contains("option f"));
    }

    #[test]
    fn plain_and_bsd_without_a_keep_to_the_caller() {
        let plain = PsArgs::parse::<&str>(&[]).unwrap();
        assert!(!plain.selection.every && !plain.selection.bsd);
        let x = PsArgs::parse(&["x"]).unwrap();
        assert!(x.selection.bsd && x.selection.no_tty_too && !x.selection.every);
    }
}
