//! Parsing CPU lists such as `0-3,7`.

/// How many CPUs a list may name: `CPU_SETSIZE`, the size of the affinity
/// mask that glibc's `cpu_set_t` (and so `sched_setaffinity` through nix)
/// holds. A list is refused past it rather than expanded: `0-4294967295`
/// would be four billion entries.
pub const MAX_CPUS: usize = libc::CPU_SETSIZE as usize;

/// Parse a cpuset-style list into CPU numbers, in order and each once; no
/// CPU may be [`MAX_CPUS`] or above.
pub fn parse_list(s: &str) -> Result<Vec<usize>, String> {
    let mut set = [false; MAX_CPUS];
    let mut any = false;
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("invalid CPU list {s:?} at {part:?}");
        let num = |n: &str| -> Result<usize, String> {
            let n: u64 = n.trim().parse().map_err(|_| bad())?;
            if n >= MAX_CPUS as u64 {
                return Err(format!(
                    "invalid CPU list {s:?}: CPU {n} is beyond the highest CPU number a runtime can set ({})",
                    MAX_CPUS - 1
                ));
            }
            Ok(n as usize)
        };
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let n = num(part)?;
                (n, n)
            }
        };
        if a > b {
            return Err(bad());
        }
        set[a..=b].iter_mut().for_each(|c| *c = true);
        any = true;
    }
    if !any {
        return Err(format!("invalid CPU list {s:?}: empty"));
    }
    Ok((0..MAX_CPUS).filter(|&c| set[c]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists() {
        assert_eq!(parse_list("0-2,5").unwrap(), vec![0, 1, 2, 5]);
        assert_eq!(parse_list("3").unwrap(), vec![3]);
        assert!(parse_list("2-1").is_err());
        assert!(parse_list("x").unwrap_err().contains("\"x\""));
        assert!(parse_list("").is_err());
    }

    #[test]
    fn bounded_by_cpu_setsize() {
        assert_eq!(parse_list("1023").unwrap(), vec![1023]);
        assert_eq!(parse_list("0-1023").unwrap().len(), 1024);
        let e = parse_list("1024").unwrap_err();
        assert!(e.contains("1024") && e.contains("1023"), "{e}");
        // Refused without making the list (four billion entries).
        let e = parse_list("0-4294967295").unwrap_err();
        assert!(e.contains("4294967295") && e.contains("1023"), "{e}");
        assert!(parse_list("18446744073709551615").is_err());
        assert!(parse_list("0-99999999999999999999999").is_err());
    }
}
