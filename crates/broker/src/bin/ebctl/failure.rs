//! How a failed command ends: one line on stderr and an exit code.
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success |
//! | 1 | operational failure: cannot connect, timeout, error reply, ... |
//! | 2 | usage error: bad flags (reported by clap), invalid topic or filter |
#![forbid(unsafe_code)]

use std::fmt;
use std::process::ExitCode;

/// Why `ebctl` failed, which decides its exit code.
#[derive(Debug)]
pub enum Failure {
    /// The command line is wrong (exit code 2).
    Usage(String),
    /// The command could not do its job (exit code 1).
    Operational(anyhow::Error),
}

impl Failure {
    /// An operational failure with a plain message.
    pub fn operational(message: impl fmt::Display) -> Self {
        Self::Operational(anyhow::anyhow!("{message}"))
    }

    /// The process exit code for this failure.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Usage(_) => ExitCode::from(2),
            Self::Operational(_) => ExitCode::FAILURE,
        }
    }
}

/// Every library error is an operational failure.
impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Self::Operational(e.into())
    }
}

/// Always one line, so scripts can rely on `ebctl: <message>`: the error
/// chain is joined with `: ` and stray newlines are flattened.
impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::Usage(message) => message.clone(),
            Self::Operational(e) => one_line(e),
        };
        f.write_str(&text.replace('\n', " "))
    }
}

/// Joins the error chain with `: `, skipping a cause whose text the message
/// already carries (some errors both print their source and return it from
/// `source()`, which would otherwise show it twice).
fn one_line(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_exit_2_and_the_rest_exit_1() {
        assert_eq!(Failure::Usage("x".into()).exit_code(), ExitCode::from(2));
        assert_eq!(Failure::operational("x").exit_code(), ExitCode::FAILURE);
    }

    #[test]
    fn messages_are_one_line_with_their_causes() {
        let e = anyhow::anyhow!("inner\ndetail").context("outer");
        assert_eq!(Failure::from(e).to_string(), "outer: inner detail");
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "cannot connect: {}", self.0)
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::other("refused"));
        assert_eq!(Failure::from(e).to_string(), "cannot connect: refused");
    }
}
