//! Writing results to stdout without panicking on a closed pipe.
#![forbid(unsafe_code)]

use std::io::Write as _;

use crate::failure::Failure;

/// Writes `text` and a newline to stdout and flushes, so a pipe sees each line
/// as soon as it is printed. A closed stdout is an operational failure, not a
/// panic.
pub fn line(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::operational(format!("cannot write to stdout: {e}")))
}
