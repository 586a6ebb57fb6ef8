//! A task's working memory (`scratch_bytes`, like a capture buffer): reserved
//! fallibly before the task starts, made resident, held while it runs, freed
//! after.
//!
//! The reservation is the one allocation here that may fail without ending the
//! process: it goes through [`Vec::try_reserve_exact`], so a collector whose
//! memory is squeezed (a lowered `RLIMIT_AS`, a full machine) learns it as a
//! [`ReserveError`] instead of aborting. The handler then sheds the task: it
//! hands it back to the queue for another member of the group.
//!
//! Reserving only maps address space, so it is cheap and done on the runtime
//! thread, where the decision to shed is made; [`Scratch::touch`], which faults
//! every page in, runs on the blocking pool with the task's work.

use std::collections::TryReserveError;

/// The stride of [`Scratch::touch`]: one byte is written per page of this size.
pub const PAGE_BYTES: usize = 4096;

/// Working memory held by a running task; freed when dropped.
#[derive(Debug)]
pub struct Scratch {
    buf: Vec<u8>,
}

/// Scratch memory that could not be reserved.
#[derive(Debug, thiserror::Error)]
#[error("cannot reserve {bytes} bytes: {source}")]
pub struct ReserveError {
    /// The size asked for.
    pub bytes: u64,
    /// What the allocator said.
    #[source]
    pub source: TryReserveError,
}

impl Scratch {
    /// Reserves `bytes` of address space (nothing for 0), without touching it.
    pub fn reserve(bytes: u64) -> Result<Self, ReserveError> {
        let mut buf = Vec::new();
        if bytes > 0 {
            // More than the address space holds is a capacity overflow, an error too.
            let len = usize::try_from(bytes).unwrap_or(usize::MAX);
            buf.try_reserve_exact(len)
                .map_err(|source| ReserveError { bytes, source })?;
        }
        Ok(Self { buf })
    }

    /// Writes one byte in every page, so the whole reservation is resident
    /// (it counts in the collector's RSS) until it is dropped. Blocks for as
    /// long as the page faults take: call it on the blocking pool.
    pub fn touch(&mut self) {
        let spare = self.buf.spare_capacity_mut();
        for byte in spare.iter_mut().step_by(PAGE_BYTES) {
            byte.write(1);
        }
        // Keeps the writes: nothing reads them before the buffer is freed.
        std::hint::black_box(spare);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserves_touches_and_frees() {
        let mut scratch = Scratch::reserve(3 * PAGE_BYTES as u64 + 1).unwrap();
        assert!(scratch.buf.capacity() > 3 * PAGE_BYTES);
        scratch.touch();
        assert_eq!(Scratch::reserve(0).unwrap().buf.capacity(), 0);
    }

    #[test]
    fn an_impossible_reservation_is_an_error_not_an_abort() {
        let err = Scratch::reserve(u64::MAX).unwrap_err();
        assert_eq!(err.bytes, u64::MAX);
        assert!(
            err.to_string()
                .starts_with(&format!("cannot reserve {} bytes", u64::MAX)),
            "{err}"
        );
    }
}
