//! Just enough of the Chrome DevTools protocol to drive Debian's Chromium
//! headless from a test: open a page, evaluate an expression in it, take a
//! screenshot. Five protocol methods over the WebSocket the browser opens
//! (`--remote-debugging-port=0`), with `tokio-tungstenite`, which the
//! workspace already builds; a full client (chromiumoxide: generated
//! bindings for the whole protocol) or Playwright (Node.js and an npm
//! install in CI) would weigh far more for these five calls.
//!
//! The browser runs in its own process group, killed as a whole and reaped
//! on drop, with a fresh profile directory.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long the browser may take to start.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(30);

/// Where Chromium is: `$CHROMIUM`, else `chromium` on the PATH.
pub fn find_chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("chromium"))
        .find(|candidate| candidate.is_file())
}

/// A headless Chromium with one page attached.
pub struct Browser {
    child: Child,
    socket: Socket,
    session: String,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts `chromium` headless and opens `url` in a page of
    /// `width`×`height`.
    pub async fn launch(chromium: &Path, url: &str, width: u32, height: u32) -> Self {
        let profile = tempfile::tempdir().expect("a profile directory");
        let mut command = Command::new(chromium);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-quic",
                "--no-first-run",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                &format!("--window-size={width},{height}"),
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium.display()));
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        // Reads the browser's stderr to its end, so it never blocks on it.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let endpoint = match rx.recv_timeout(LAUNCH_TIMEOUT) {
            Ok(endpoint) => endpoint,
            Err(_) => {
                kill(&mut child);
                panic!("chromium did not open its DevTools endpoint within {LAUNCH_TIMEOUT:?}");
            }
        };
        let socket = match tokio_tungstenite::connect_async(endpoint.as_str()).await {
            Ok((socket, _)) => socket,
            Err(e) => {
                kill(&mut child);
                panic!("cannot reach chromium's DevTools at {endpoint}: {e}");
            }
        };
        let mut browser = Self {
            child,
            socket,
            session: String::new(),
            next_id: 0,
            _profile: profile,
        };
        let target = browser
            .call("Target.createTarget", json!({ "url": url }))
            .await;
        let target_id = target["targetId"].as_str().expect("a target id").to_owned();
        let attached = browser
            .call(
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await;
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session")
            .to_owned();
        browser
    }

    /// Calls `method` (on the page once attached) and returns its result.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        self.socket
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("send to the browser");
        let answer = async {
            while let Some(frame) = self.socket.next().await {
                let Message::Text(text) = frame.expect("a frame from the browser") else {
                    continue;
                };
                let value: Value = serde_json::from_str(&text).expect("JSON from the browser");
                if value["id"] == id {
                    return value;
                }
            }
            panic!("the browser closed its DevTools connection");
        };
        let value = tokio::time::timeout(LAUNCH_TIMEOUT, answer)
            .await
            .unwrap_or_else(|_| panic!("no answer to {method}"));
        if let Some(error) = value.get("error") {
            panic!("{method} failed: {error}");
        }
        value["result"].clone()
    }

    /// The value of `expression` evaluated in the page (promises awaited).
    pub async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression} threw: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Writes a PNG of the page's viewport to `path`.
    pub async fn screenshot(&mut self, path: &Path) {
        let shot = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("image data"))
            .expect("base64");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

/// Kills the browser's whole process group and reaps the browser.
fn kill(child: &mut Child) {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}
