//! The broker process's own figures for stats (the counters are gathered by
//! the router: `router/stats.rs`).

/// Resident memory of this process: the resident set size on Linux, macOS and
/// FreeBSD, the working set on Windows (through `memory-stats`; `None` where
/// the platform does not tell).
pub fn rss_bytes() -> Option<u64> {
    memory_stats::memory_stats().and_then(|m| u64::try_from(m.physical_mem).ok())
}

/// The machine's physical memory: `/proc/meminfo` on Linux, `sysinfo`
/// elsewhere.
pub(crate) fn system_memory_bytes() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
        let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let mut system = sysinfo::System::new();
        system.refresh_memory_specifics(sysinfo::MemoryRefreshKind::nothing().with_ram());
        Some(system.total_memory()).filter(|&total| total > 0)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_memory_figure_is_reported() {
        let rss = super::rss_bytes().expect("every supported platform reports it");
        // More than a page, less than this machine could hold.
        assert!(rss > 4096 && rss < (1 << 40), "{rss}");
    }

    #[test]
    fn the_machine_memory_is_reported() {
        let total = super::system_memory_bytes().expect("every supported platform reports it");
        assert!(total > (1 << 20), "{total}");
    }
}
