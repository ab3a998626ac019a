//! The user database: a uid's groups, a user's uid, a group's gid (the
//! agent checks what a `user` caller may start; the collector which local
//! users may read the history).

/// The groups of `uid`: its primary group from the user database first, then
/// every supplementary group (`getgrouplist`). Empty when the uid has no entry.
pub fn groups_of(uid: u32) -> Vec<u32> {
    let Some((name, primary)) = passwd_entry(uid) else {
        return Vec::new();
    };
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut n = groups.len() as libc::c_int;
        // SAFETY: `name` is NUL-terminated; `groups` has room for `n` entries and
        // getgrouplist writes at most that many, reporting the count needed in `n`.
        let rc = unsafe { libc::getgrouplist(name.as_ptr(), primary, groups.as_mut_ptr(), &mut n) };
        let count = usize::try_from(n).unwrap_or(0);
        if rc >= 0 {
            groups.truncate(count);
            break;
        }
        if count <= groups.len() || count > 65_536 {
            groups.truncate(0);
            break;
        }
        groups.resize(count, 0);
    }
    let mut out = vec![primary];
    out.extend(groups.into_iter().filter(|g| *g != primary));
    out
}

/// The uid of user `name` (`getpwnam_r`).
pub fn uid_of(name: &str) -> Option<u32> {
    let cname = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid value to be overwritten.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer refers to live, correctly sized storage owned here.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some(pwd.pw_uid)
}

/// The name and primary group of `uid` (`getpwuid_r`).
fn passwd_entry(uid: u32) -> Option<(std::ffi::CString, u32)> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid value to be overwritten.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer refers to live, correctly sized storage owned here;
    // the strings getpwuid_r stores point into `buf`, which outlives their use.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: pw_name is a NUL-terminated string inside `buf`.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) }.to_owned();
    Some((name, pwd.pw_gid))
}

/// The gid of group `name` (`getgrnam_r`).
pub fn gid_of(name: &str) -> Option<u32> {
    let cname = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 64 * 1024];
    // SAFETY: an all-zero group is a valid value to be overwritten.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer refers to live, correctly sized storage owned here.
    let rc = unsafe {
        libc::getgrnam_r(
            cname.as_ptr(),
            &mut grp,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some(grp.gr_gid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_root_in_group_root() {
        assert_eq!(uid_of("root"), Some(0));
        assert_eq!(gid_of("root"), Some(0));
        assert_eq!(groups_of(0).first(), Some(&0));
        assert_eq!(gid_of("no-such-group-here"), None);
    }
}
