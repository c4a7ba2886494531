//! A network namespace's interface counters, read from /proc/<pid>/net/dev
//! of a process inside it (the file shows the reader's view of the pid's
//! namespace: no setns, no fork).

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceCounters {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_errors: u64,
    pub tx_bytes: u64,
    pub tx_errors: u64,
}

/// The interfaces of the network namespace `pid` lives in. Blocking.
pub fn read(pid: i32) -> std::io::Result<Vec<InterfaceCounters>> {
    std::fs::read_to_string(format!("/proc/{pid}/net/dev")).map(|body| parse(&body))
}

/// Two header lines, then `name: rx_bytes rx_packets rx_errs ... (8 receive
/// fields) tx_bytes tx_packets tx_errs ...`.
fn parse(body: &str) -> Vec<InterfaceCounters> {
    body.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            let fields: Vec<u64> = counters
                .split_whitespace()
                .map(|f| f.parse().unwrap_or(0))
                .collect();
            if fields.len() < 11 {
                return None;
            }
            Some(InterfaceCounters {
                name: name.trim().to_string(),
                rx_bytes: fields[0],
                rx_errors: fields[2],
                tx_bytes: fields[8],
                tx_errors: fields[10],
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_parsed_per_interface() {
        let body = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:      10       1    0    0    0     0          0         0       10       1    0    0    0     0       0          0
  eth0:    1296      16    3    0    0     0          0         0      656       8    4    0    0     0       0          0
";
        let parsed = parse(body);
        assert_eq!(parsed.len(), 2);
        assert_eq!(
            parsed[1],
            InterfaceCounters {
                name: "eth0".into(),
                rx_bytes: 1296,
                rx_errors: 3,
                tx_bytes: 656,
                tx_errors: 4,
            }
        );
        assert!(parse("").is_empty());
    }

    #[test]
    fn our_own_namespace_has_loopback() {
        let own = read(std::process::id() as i32).unwrap();
        assert!(own.iter().any(|i| i.name == "lo"), "{own:?}");
    }
}
