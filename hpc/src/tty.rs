//! Terminal names as `ps` shows them, from the device numbers in `/proc/PID/stat`.

/// The name of terminal device `tty_nr` as `ps` shows it (`pts/3`, `tty1`,
/// `ttyS0`); the kernel's name under `/sys/dev/char` for other kinds;
/// empty for none.
pub fn name(tty_nr: u32) -> String {
    if tty_nr == 0 {
        return String::new();
    }
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
    match major {
        136..=143 => format!("pts/{}", (major - 136) * 256 + minor),
        4 if minor < 64 => format!("tty{minor}"),
        4 => format!("ttyS{}", minor - 64),
        _ => std::fs::read_link(format!("/sys/dev/char/{major}:{minor}"))
            .ok()
            .and_then(|l| l.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| format!("{major}:{minor}")),
    }
}

/// The controlling terminal of the calling process, empty without one.
pub fn own() -> String {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Field 7 (tty_nr), counted after the command's closing parenthesis.
            let rest = s.get(s.rfind(')')? + 2..)?;
            rest.split(' ').nth(4)?.parse::<i64>().ok()
        })
        .map_or_else(String::new, |n| name(n as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_name_terminals() {
        assert_eq!(name(0), "");
        assert_eq!(name((136 << 8) | 3), "pts/3");
        assert_eq!(name((137 << 8) | 1), "pts/257");
        assert_eq!(name((4 << 8) | 1), "tty1");
        assert_eq!(name((4 << 8) | 64), "ttyS0");
        // pts/300: minor 300 splits into its low 8 bits and the rest above bit 20.
        assert_eq!(
            name((136 << 8) | (300 & 0xff) | ((300 & !0xff) << 12)),
            "pts/300"
        );
    }
}
