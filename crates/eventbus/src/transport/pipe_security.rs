//! Who may open the broker's named pipe on Windows: only the user the broker
//! runs as, the counterpart of the Unix socket's mode 0600 and peer-uid check.
//!
//! Every instance of the pipe is created with a security descriptor whose
//! DACL is protected (nothing inherited) and holds one entry: full access for
//! the broker's own user SID. Windows checks it when a client opens the pipe,
//! so another user's client is refused by the system (`ERROR_ACCESS_DENIED`)
//! before the broker sees it; administrators and `SYSTEM` get no entry either.
//! `interprocess` also creates the first instance with
//! `FILE_FLAG_FIRST_PIPE_INSTANCE` (a name someone else already holds is
//! refused, so the pipe cannot be squatted) and rejects remote clients.
//!
//! The client checks the other way round ([`check_server`]): the process
//! serving the pipe must run as the client's user, since a pipe name is
//! machine-wide and another user could have created it first.
//!
//! SIDs come from process tokens through `sysinfo` (this crate forbids
//! `unsafe`), and the descriptor is built from SDDL by `interprocess`.

use std::io;

use interprocess::os::windows::security_descriptor::SecurityDescriptor;
use widestring::U16CString;

/// The SDDL of a descriptor that admits only `user_sid`: a protected DACL
/// (`P`) with one allow entry (`A`) of generic all (`GA`).
pub fn owner_only_sddl(user_sid: &str) -> String {
    format!("D:P(A;;GA;;;{user_sid})")
}

/// The security descriptor the broker's pipe is created with.
pub fn owner_only() -> io::Result<SecurityDescriptor> {
    from_sddl(&owner_only_sddl(&current_user_sid()?))
}

/// Parses `sddl` into a descriptor.
pub fn from_sddl(sddl: &str) -> io::Result<SecurityDescriptor> {
    let wide =
        U16CString::from_str(sddl).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    SecurityDescriptor::deserialize(&wide)
}

/// The SID (`S-1-5-21-...`) of the user this process runs as, from its token.
pub fn current_user_sid() -> io::Result<String> {
    let pid = sysinfo::get_current_pid().map_err(io::Error::other)?;
    user_sid_of(pid).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            "cannot read the user SID from this process's token",
        )
    })
}

/// The SID of the user process `pid` runs as, when its token can be read.
fn user_sid_of(pid: sysinfo::Pid) -> Option<String> {
    use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind};
    let mut system = System::new();
    system.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        false,
        ProcessRefreshKind::nothing().with_user(UpdateKind::Always),
    );
    system
        .process(pid)
        .and_then(|process| process.user_id())
        .map(|uid| uid.to_string())
        .filter(|sid| sid.starts_with("S-1-"))
}

/// The client's side: fails unless the process serving the pipe runs as this
/// user. A pipe name is machine-wide, so another user's program could have
/// created it before the broker started; without this check a client would
/// hand it its frames (and its credentials). The counterpart of the Unix
/// client's check of the socket directory's owner.
pub fn check_server(stream: &super::Stream) -> io::Result<()> {
    use interprocess::local_socket::tokio::prelude::*;
    let server = stream
        .peer_creds()?
        .pid()
        .ok_or_else(|| io::Error::other("the pipe does not tell its server's process id"))?;
    let own = current_user_sid()?;
    let theirs = user_sid_of(sysinfo::Pid::from_u32(server));
    server_is_trusted(&own, theirs.as_deref()).map_err(|reason| {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("the pipe is served by process {server}, which {reason}"),
        )
    })
}

/// Whether a server running as `server_sid` (`None`: its token could not be
/// read) may be trusted by a client running as `own_sid`; why not if not.
fn server_is_trusted(own_sid: &str, server_sid: Option<&str>) -> Result<(), String> {
    match server_sid {
        Some(sid) if sid == own_sid => Ok(()),
        Some(sid) => Err(format!("runs as {sid}, another user")),
        None => Err("runs as a user this process may not see".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_descriptor_names_only_the_user() {
        assert_eq!(
            owner_only_sddl("S-1-5-21-1-2-3-1001"),
            "D:P(A;;GA;;;S-1-5-21-1-2-3-1001)"
        );
    }

    #[test]
    fn only_a_server_of_the_same_user_is_trusted() {
        let own = "S-1-5-21-1-2-3-1001";
        assert!(server_is_trusted(own, Some(own)).is_ok());
        assert!(server_is_trusted(own, Some("S-1-5-21-1-2-3-1002")).is_err());
        assert!(server_is_trusted(own, Some("S-1-5-18")).is_err());
        assert!(server_is_trusted(own, None).is_err());
    }

    #[test]
    fn the_current_user_has_a_sid_and_a_descriptor() {
        let sid = current_user_sid().unwrap();
        assert!(sid.starts_with("S-1-5-"), "{sid}");
        owner_only().unwrap();
        assert!(from_sddl("D:P(A;;GA;;;not a sid)").is_err());
    }
}

/// Under a real pipe: Windows refuses a client the descriptor does not name,
/// and admits the broker's user; a name already held cannot be taken. Wine (8)
/// checks neither named pipes' DACLs nor `FILE_FLAG_FIRST_PIPE_INSTANCE`: those
/// two tests fail there, `cargo xtask windows --unit-tests` skips them, and
/// they run on native Windows (the CI's Windows job).
#[cfg(test)]
mod pipe_tests {
    use interprocess::local_socket::tokio::prelude::*;
    use interprocess::local_socket::{ConnectOptions, GenericNamespaced, ListenerOptions};
    use interprocess::os::windows::local_socket::ListenerOptionsExt;

    use super::*;

    /// Listens on a fresh pipe created with `sddl`, then connects to it.
    async fn connect_through(sddl: &str, tag: &str) -> io::Result<()> {
        let name = format!("eventbus-sd-{tag}-{}", std::process::id());
        let listener = ListenerOptions::new()
            .name(name.clone().to_ns_name::<GenericNamespaced>()?)
            .security_descriptor(from_sddl(sddl)?)
            .create_tokio()?;
        let options = ConnectOptions::new().name(name.to_ns_name::<GenericNamespaced>()?);
        let connect = options.connect_tokio();
        let (client, accepted) = tokio::join!(connect, async {
            tokio::time::timeout(std::time::Duration::from_secs(2), listener.accept()).await
        });
        client.map(|_| {
            assert!(
                matches!(accepted, Ok(Ok(_))),
                "the broker side sees the client"
            );
        })
    }

    #[tokio::test]
    async fn the_broker_user_is_admitted() {
        let sddl = owner_only_sddl(&current_user_sid().unwrap());
        connect_through(&sddl, "own").await.unwrap();
    }

    #[tokio::test]
    async fn a_pipe_name_already_held_is_name_taken() {
        let path = std::path::PathBuf::from(format!("eventbus-held-{}.sock", std::process::id()));
        let _first = crate::transport::bind(&path).unwrap();
        let second = crate::transport::bind(&path).unwrap_err();
        assert!(
            matches!(second, crate::transport::BindError::NameTaken { .. }),
            "{second}"
        );
    }

    #[tokio::test]
    async fn a_client_the_descriptor_does_not_name_is_refused() {
        // Only LocalSystem: this test does not run as it.
        let error = connect_through("D:P(A;;GA;;;S-1-5-18)", "other")
            .await
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::PermissionDenied, "{error}");
    }
}
