//! What `/metrics` says of the process itself: the build, and on Linux the
//! standard `process_*` series (resident memory, CPU time, open file
//! descriptors, start time), read from `/proc` when asked for.

use std::fmt::Write as _;

/// `anpx_build_info` and the `process_*` series; `shell` names the binary
/// (`anpx`, `anpx-smol`). Off Linux, or where `/proc` cannot be read,
/// only the build info.
pub fn prometheus(shell: &str) -> String {
    let mut out = String::from(
        "# HELP anpx_build_info The running build; the value is always 1.\n# TYPE anpx_build_info gauge\n",
    );
    let _ = writeln!(
        out,
        "anpx_build_info{{version=\"{}\",shell=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        anpx_core::label_value(shell)
    );
    if let Some(p) = read_proc() {
        let series: [(&str, &str, &str, f64); 4] = [
            (
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                p.resident_bytes as f64,
            ),
            (
                "process_cpu_seconds_total",
                "counter",
                "User and system CPU time spent, in seconds.",
                p.cpu_seconds,
            ),
            (
                "process_open_fds",
                "gauge",
                "Open file descriptors.",
                p.open_fds as f64,
            ),
            (
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since the Unix epoch, in seconds.",
                p.start_time_seconds,
            ),
        ];
        for (name, kind, help, value) in series {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            );
        }
    }
    out
}

/// The process figures `/proc` gives.
struct ProcFigures {
    resident_bytes: u64,
    cpu_seconds: f64,
    open_fds: usize,
    start_time_seconds: f64,
}

/// Linux's clock ticks per second for `/proc/*/stat` times: 100 on every
/// architecture Linux supports (`USER_HZ`), whatever the kernel's own HZ.
const USER_HZ: f64 = 100.0;

/// The size of a page in `/proc/*/stat`'s `rss`: 4 KiB on the platforms
/// anpx ships for.
const PAGE_SIZE: u64 = 4096;

fn read_proc() -> Option<ProcFigures> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot_time = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse::<f64>()
        .ok()?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count();
    parse_stat(&stat, boot_time, open_fds)
}

/// The figures in one `/proc/self/stat` line. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted from its last
/// `)`.
fn parse_stat(stat: &str, boot_time: f64, open_fds: usize) -> Option<ProcFigures> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: field 3 (state) is index 0, utime (14) is 11,
    // stime (15) is 12, starttime (22) is 19, rss (24) is 21.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some(ProcFigures {
        resident_bytes: num(21)? * PAGE_SIZE,
        cpu_seconds: (num(11)? + num(12)?) as f64 / USER_HZ,
        open_fds,
        start_time_seconds: boot_time + num(19)? as f64 / USER_HZ,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_with_an_odd_name_parses() {
        // pid (name) state ppid pgrp session tty tpgid flags minflt cminflt
        // majflt cmajflt utime stime cutime cstime priority nice threads
        // itrealvalue starttime vsize rss ...
        let line = "42 (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1000 123456 300 18446744073709551615";
        let p = parse_stat(line, 1_700_000_000.0, 7).unwrap();
        assert_eq!(p.resident_bytes, 300 * 4096);
        assert_eq!(p.cpu_seconds, 3.0);
        assert_eq!(p.open_fds, 7);
        assert_eq!(p.start_time_seconds, 1_700_000_010.0);
    }

    #[test]
    fn the_running_process_reports_itself() {
        let text = prometheus("anpx");
        assert!(text.contains("anpx_build_info{version=\""), "{text}");
        if cfg!(target_os = "linux") {
            let rss: f64 = text
                .lines()
                .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
                .expect("resident memory on Linux")
                .parse()
                .unwrap();
            assert!(rss > 0.0, "{text}");
            assert!(text.contains("process_open_fds "), "{text}");
        }
    }
}
