//! Advanced execution: the dialog's modes mapped onto `mosrun` semantics
//! (`proc.spawn` at the home node, then `proc.migrate` to the chosen node).

use hpc::model::{DecayClass, NodeId};

/// How and where a program starts (the original dialog's radio buttons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecMode {
    /// `nomig`: at home, locked.
    NoMigration,
    /// `runhome`: at home (placed, so locked).
    RunHome,
    /// `runon N`: on node N, locked there.
    RunOn(NodeId),
    /// `cpujob -N`: CPU-bound (slow decay) on node N.
    CpuJob(NodeId),
    /// `iojob -N`: I/O-bound (fast decay) on node N.
    IoJob(NodeId),
    /// `nodecay -N`.
    NoDecay(NodeId),
    /// `slowdecay -N`.
    SlowDecay(NodeId),
    /// `fastdecay -N`.
    FastDecay(NodeId),
    /// One copy on every node from `first` to `last` (or, inverted, on every other node).
    Parallel {
        /// First node of the range.
        first: NodeId,
        /// Last node of the range.
        last: NodeId,
        /// Run on the nodes outside the range instead.
        invert: bool,
    },
}

/// One copy of the program to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// Node to move it to after the start (`None`: it stays at home).
    pub target: Option<NodeId>,
    /// Start locked.
    pub lock: bool,
    /// Decay class.
    pub decay: Option<DecayClass>,
}

/// A program to start, as the dialog describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecRequest {
    /// Program (absolute path, or a name looked up on the home node's PATH).
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Working directory on the home node.
    pub cwd: String,
    /// File the job's output is appended to.
    pub output: String,
    /// Node the job starts from (its home).
    pub home: NodeId,
    /// The mode.
    pub mode: ExecMode,
}

impl ExecMode {
    /// The equivalent `mosrun` wrapper and options (without the program).
    pub fn mosrun_words(&self) -> String {
        match *self {
            ExecMode::NoMigration => "nomig".into(),
            ExecMode::RunHome => "runhome".into(),
            ExecMode::RunOn(n) => format!("runon {n}"),
            ExecMode::CpuJob(n) => format!("cpujob -{n}"),
            ExecMode::IoJob(n) => format!("iojob -{n}"),
            ExecMode::NoDecay(n) => format!("nodecay -{n}"),
            ExecMode::SlowDecay(n) => format!("slowdecay -{n}"),
            ExecMode::FastDecay(n) => format!("fastdecay -{n}"),
            ExecMode::Parallel { .. } => "mosrun -N (once per node)".into(),
        }
    }

    /// The copies to start, given the home node and the cluster's node ids.
    pub fn launches(&self, home: NodeId, nodes: &[NodeId]) -> Result<Vec<Launch>, String> {
        let placed = |n: NodeId, decay: Option<DecayClass>| -> Result<Vec<Launch>, String> {
            if !nodes.contains(&n) {
                return Err(format!("node {n} is not in the cluster"));
            }
            Ok(vec![Launch {
                target: (n != home).then_some(n),
                lock: true,
                decay,
            }])
        };
        match *self {
            ExecMode::NoMigration | ExecMode::RunHome => Ok(vec![Launch {
                target: None,
                lock: true,
                decay: None,
            }]),
            ExecMode::RunOn(n) => placed(n, None),
            ExecMode::CpuJob(n) | ExecMode::SlowDecay(n) => placed(n, Some(DecayClass::Slow)),
            ExecMode::IoJob(n) | ExecMode::FastDecay(n) => placed(n, Some(DecayClass::Fast)),
            ExecMode::NoDecay(n) => placed(n, Some(DecayClass::None)),
            ExecMode::Parallel {
                first,
                last,
                invert,
            } => {
                let (lo, hi) = (first.min(last), first.max(last));
                let chosen: Vec<Launch> = nodes
                    .iter()
                    .filter(|n| ((lo..=hi).contains(*n)) != invert)
                    .map(|&n| Launch {
                        target: (n != home).then_some(n),
                        lock: true,
                        decay: None,
                    })
                    .collect();
                if chosen.is_empty() {
                    return Err(format!(
                        "no node {} {lo}..{hi}",
                        if invert { "outside" } else { "in" }
                    ));
                }
                Ok(chosen)
            }
        }
    }
}

/// Splits an argument line like a shell does for words and quotes (no
/// expansion): `a "b c" 'd'` → `a`, `b c`, `d`.
pub fn split_args(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => match chars.next() {
                Some(n) => word.push(n),
                None => return Err("the arguments end with a lone backslash".into()),
            },
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '\\') => match chars.next() {
                Some(n) => {
                    word.push(n);
                    in_word = true;
                }
                None => return Err("the arguments end with a lone backslash".into()),
            },
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if let Some(q) = quote {
        return Err(format!("unclosed {q} in the arguments"));
    }
    if in_word {
        out.push(word);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_follow_mosrun() {
        let nodes = [1, 2, 3, 4];
        let one = |m: ExecMode| m.launches(1, &nodes).unwrap();
        assert_eq!(one(ExecMode::NoMigration)[0].target, None);
        assert!(one(ExecMode::NoMigration)[0].lock);
        assert_eq!(one(ExecMode::RunOn(3))[0].target, Some(3));
        assert_eq!(one(ExecMode::RunOn(1))[0].target, None);
        assert_eq!(one(ExecMode::IoJob(2))[0].decay, Some(DecayClass::Fast));
        assert_eq!(one(ExecMode::CpuJob(2))[0].decay, Some(DecayClass::Slow));
        assert_eq!(one(ExecMode::NoDecay(2))[0].decay, Some(DecayClass::None));
        assert!(ExecMode::RunOn(9).launches(1, &nodes).is_err());
        let par = |first, last, invert| {
            ExecMode::Parallel {
                first,
                last,
                invert,
            }
            .launches(1, &nodes)
            .unwrap()
            .iter()
            .map(|l| l.target)
            .collect::<Vec<_>>()
        };
        assert_eq!(par(2, 3, false), [Some(2), Some(3)]);
        assert_eq!(par(3, 2, false), [Some(2), Some(3)]);
        assert_eq!(par(2, 3, true), [None, Some(4)]);
        assert!(
            ExecMode::Parallel {
                first: 1,
                last: 4,
                invert: true
            }
            .launches(1, &nodes)
            .is_err()
        );
    }

    #[test]
    fn arguments_split_like_a_shell() {
        assert_eq!(
            split_args(r#"a "b c" 'd e' f\ g"#).unwrap(),
            ["a", "b c", "d e", "f g"]
        );
        assert_eq!(split_args("  ").unwrap(), Vec::<String>::new());
        assert_eq!(split_args("''").unwrap(), [""]);
        assert!(split_args("\"open").unwrap_err().contains("unclosed"));
    }
}
