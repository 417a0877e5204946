//! The process's limit on open files: raised at start (a service must still
//! open its own files when clients hold many), and read to size the
//! connection cap.

/// Raises the soft limit on open files to the hard one: the soft default
/// (1024 on most systems) is what many clients can exhaust, and a service
/// must still open its own files (state saves, history, the board) then.
/// Returns (before, after).
pub fn raise_limit() -> std::io::Result<(u64, u64)> {
    let mut limit = nofile()?;
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok((before, limit.rlim_cur))
}

/// The soft limit on open files: what the process can hold now.
pub fn limit() -> std::io::Result<u64> {
    Ok(nofile()?.rlim_cur)
}

fn nofile() -> std::io::Result<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_files_limit_is_raised_to_the_hard_limit() {
        let (before, after) = raise_limit().expect("getrlimit and setrlimit");
        assert!(after >= before);
        let limit = nofile().expect("getrlimit");
        assert_eq!(limit.rlim_cur, limit.rlim_max);
        assert_eq!(limit.rlim_cur, after);
    }
}
