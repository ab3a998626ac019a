//! The command line of `mosrun` and its wrappers, in the openMosix style
//! (`-2` for node 2, `-j1-3,5` for a list), parsed by hand because option
//! names are numbers.
//!
//! `mosrun [-h|-ID|-jLIST] [-F] [-l|-L|-k] [-c|-i|-n|-s|-f] [-o FILE] [-e FILE]
//! [--detach] CMD [ARGS]`:
//! - `-h` runs at home, `-ID` on node ID, `-jLIST` on a random node of LIST;
//!   `-F` runs at home when the chosen node cannot take the job.
//! - `-L` locks the job to where it starts, `-l` unlocks it, `-k` keeps the
//!   default. Placing a job (`-h`, `-ID`, `-j`) locks it unless `-l` is given;
//!   otherwise jobs start unlocked, free to move.
//! - `-c` CPU-bound and `-i` I/O-bound (slow and fast decay), `-n` no decay,
//!   `-s` slow decay, `-f` fast decay.
//! - `-o`/`-e` name the files the job's output and errors are appended to;
//!   `--detach` prints the job's PID and returns instead of waiting for it
//!   (openMosix's `-t`/`-d` decay parameters and `-e/-E/-r/-R/-z` are not offered).
//!
//! Wrappers: `nomig CMD` (= `-h -L`), `runhome CMD` (= `-h`), `runon ID CMD`
//! (= `-ID`), and `cpujob`, `iojob`, `nodecay`, `slowdecay`, `fastdecay`
//! (= `-c`, `-i`, `-n`, `-s`, `-f`), each taking `[-h|-ID]` first.

use hpc::model::DecayClass;

use crate::connect::NodeArgs;

/// Where the job starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Here, free to move later.
    Anywhere,
    /// At home (`-h`).
    Home,
    /// On this node (`-ID`).
    Node(u32),
    /// On a random node of the list (`-jLIST`).
    OneOf(Vec<u32>),
}

/// A parsed `mosrun` command line.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Placement.
    pub placement: Placement,
    /// `-F`.
    pub fallback: bool,
    /// Whether the job starts locked.
    pub lock: bool,
    /// Decay class.
    pub decay: Option<DecayClass>,
    /// `-o FILE`.
    pub stdout: Option<String>,
    /// `-e FILE`.
    pub stderr: Option<String>,
    /// `--detach`: do not wait.
    pub detach: bool,
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// Which agent (`--node`, `--key`; or `$OPENMOSIX_NODE`, `$OPENMOSIX_KEY`).
    pub node: NodeArgs,
}

/// Parses a node list such as `1-3,5`.
pub fn node_list(s: &str) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let bad = || format!("bad node list `{s}` (e.g. 1-3,5)");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if a > b || b - a > 65535 {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    if out.is_empty() {
        return Err(format!("empty node list `{s}`"));
    }
    Ok(out)
}

/// Parses the arguments of `name` (`mosrun` or a wrapper).
pub fn parse(name: &str, args: &[String]) -> Result<RunOptions, String> {
    let mut o = RunOptions {
        placement: Placement::Anywhere,
        fallback: false,
        lock: false,
        decay: None,
        stdout: None,
        stderr: None,
        detach: false,
        argv: Vec::new(),
        node: NodeArgs {
            node: std::env::var("OPENMOSIX_NODE").ok(),
            socket: std::env::var_os("OPENMOSIX_SOCKET").map(Into::into),
            key: std::env::var_os("OPENMOSIX_KEY").map(Into::into),
            known_hosts: std::env::var_os("OPENMOSIX_KNOWN_HOSTS").map(Into::into),
            accept_new: false,
            config_dir: hpc::paths::CONFIG_DIR.into(),
        },
    };
    let mut lock: Option<bool> = None;
    let mut rest = args.iter().peekable();
    match name {
        "nomig" => {
            o.placement = Placement::Home;
            lock = Some(true);
        }
        "runhome" => o.placement = Placement::Home,
        "runon" => {
            let id = rest.next().ok_or("usage: runon ID CMD [ARGS]")?;
            o.placement =
                Placement::Node(id.parse().map_err(|_| format!("`{id}` is not a node id"))?);
        }
        "cpujob" => o.decay = Some(DecayClass::Slow),
        "iojob" => o.decay = Some(DecayClass::Fast),
        "nodecay" => o.decay = Some(DecayClass::None),
        "slowdecay" => o.decay = Some(DecayClass::Slow),
        "fastdecay" => o.decay = Some(DecayClass::Fast),
        _ => {}
    }
    while let Some(a) = rest.peek() {
        let a = a.as_str();
        if a == "--" {
            rest.next();
            break;
        }
        if !a.starts_with('-') || a == "-" {
            break;
        }
        rest.next();
        let mut value = |flag: &str| {
            rest.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match a {
            "-h" => o.placement = Placement::Home,
            "-F" => o.fallback = true,
            "-L" => lock = Some(true),
            "-l" => lock = Some(false),
            "-k" => lock = None,
            "-c" => o.decay = Some(DecayClass::Slow),
            "-i" => o.decay = Some(DecayClass::Fast),
            "-n" => o.decay = Some(DecayClass::None),
            "-s" => o.decay = Some(DecayClass::Slow),
            "-f" => o.decay = Some(DecayClass::Fast),
            "--detach" => o.detach = true,
            "-o" => o.stdout = Some(value("-o")?),
            "-e" => o.stderr = Some(value("-e")?),
            "--node" => o.node.node = Some(value("--node")?),
            "--socket" => o.node.socket = Some(value("--socket")?.into()),
            "--key" => o.node.key = Some(value("--key")?.into()),
            "--known-hosts" => o.node.known_hosts = Some(value("--known-hosts")?.into()),
            "--accept-new" => o.node.accept_new = true,
            other => {
                if let Some(list) = other.strip_prefix("-j") {
                    o.placement = Placement::OneOf(node_list(list)?);
                } else if let Ok(id) = other.trim_start_matches('-').parse::<u32>() {
                    o.placement = Placement::Node(id);
                } else {
                    return Err(format!(
                        "unknown option {other} (see `mosrun` in the README)"
                    ));
                }
            }
        }
    }
    o.argv = rest.cloned().collect();
    if o.argv.is_empty() {
        return Err(format!(
            "usage: {name} [-h|-ID|-jLIST] [-F] [-l|-L|-k] [-c|-i|-n|-s|-f] [-o FILE] [-e FILE] [--detach] [--node HOST|--socket PATH] CMD [ARGS]"
        ));
    }
    let placed = o.placement != Placement::Anywhere;
    o.lock = lock.unwrap_or(placed);
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, a: &[&str]) -> RunOptions {
        parse(name, &a.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn placement_and_lock_follow_the_man_page() {
        let o = p("mosrun", &["sleep", "1"]);
        assert_eq!(o.placement, Placement::Anywhere);
        assert!(!o.lock);
        assert_eq!(o.argv, ["sleep", "1"]);
        let o = p("mosrun", &["-3", "-F", "prog", "-x"]);
        assert_eq!(o.placement, Placement::Node(3));
        assert!(o.fallback && o.lock);
        assert_eq!(o.argv, ["prog", "-x"]);
        let o = p("mosrun", &["-j1-3,5", "-l", "prog"]);
        assert_eq!(o.placement, Placement::OneOf(vec![1, 2, 3, 5]));
        assert!(!o.lock);
        assert_eq!(p("mosrun", &["-s", "prog"]).decay, Some(DecayClass::Slow));
    }

    #[test]
    fn wrappers() {
        let o = p("nomig", &["prog"]);
        assert_eq!(o.placement, Placement::Home);
        assert!(o.lock);
        let o = p("runon", &["2", "prog", "a"]);
        assert_eq!(o.placement, Placement::Node(2));
        assert_eq!(o.argv, ["prog", "a"]);
        let o = p("cpujob", &["-2", "prog"]);
        assert_eq!(
            (o.placement, o.decay),
            (Placement::Node(2), Some(DecayClass::Slow))
        );
        assert_eq!(p("nodecay", &["prog"]).decay, Some(DecayClass::None));
        assert!(!p("fastdecay", &["prog"]).lock);
    }

    #[test]
    fn bad_input_is_explained() {
        let e = |name: &str, a: &[&str]| {
            parse(name, &a.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap_err()
        };
        assert!(e("mosrun", &[]).starts_with("usage: mosrun"));
        assert!(e("mosrun", &["-x", "p"]).contains("unknown option -x"));
        assert!(e("mosrun", &["-j", "p"]).contains("empty node list"));
        assert!(e("runon", &["x", "p"]).contains("not a node id"));
        assert!(e("mosrun", &["-o"]).contains("-o needs a value"));
    }
}
