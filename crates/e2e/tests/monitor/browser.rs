//! The dashboard in a real browser: headless Chromium (Debian's `chromium`)
//! loads the page a real broker serves; tasks go through collectors; the
//! page's DOM must show them arriving (rates, the collectors, a dead
//! letter) without a reload, and reconnect by itself when the broker
//! restarts. A screenshot goes to `target/tmp/dashboard.png`
//! (`docs/dashboard.png` is a copy of one).
//!
//! Without Chromium this test fails, saying so: it cannot pass without
//! having run. `cargo xtask ci` looks for Chromium first and, when it is
//! missing outside CI, leaves this test out with a WARNING (`.ci/run`
//! installs it, so in CI it always runs).

use std::path::PathBuf;
use std::time::Duration;

use e2e::ClusterExt as _;
use e2e::{CollectorBuilder, CollectorKind, DEADLINE, History, RunOptions, task_ids};
use eventbus::{GroupName, Topic, TopicFilter};
use futures_core::Stream as _;

use crate::cdp::{Browser, find_chromium};
use crate::support::cluster_with_http;

/// Where the screenshot goes.
fn screenshot_path() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png")
}

#[tokio::test]
async fn browser_dashboard_shows_tasks_collectors_and_dead_letters_live() {
    let Some(chromium) = find_chromium() else {
        panic!(
            "BROWSER TEST CANNOT RUN: no `chromium` on the PATH (nor $CHROMIUM). \
             Install Debian's chromium (`apt-get install chromium`; .ci/run does), \
             or run the gate without it: `cargo xtask ci` leaves this test out, with a WARNING, \
             when chromium is missing outside CI."
        );
    };
    let (mut cluster, addr) = cluster_with_http("").await;
    let _one = cluster
        .add_collector(CollectorBuilder::new(CollectorKind::Process, 1).delay_ms(5))
        .await;
    let _net = cluster
        .add_collector(CollectorBuilder::new(CollectorKind::Network, 1))
        .await;
    let mut browser = Browser::launch(&chromium, &format!("http://{addr}/"), 1400, 1250).await;
    let mut page = Page(&mut browser);
    page.wait(
        "the page is live",
        "document.getElementById('status').textContent === 'live'",
    )
    .await;
    // Gone if the page reloads.
    page.0.eval("window.__loaded_once = true").await;
    // A collector that joins while the page watches.
    let _two = cluster
        .add_collector(CollectorBuilder::new(CollectorKind::Process, 2).delay_ms(5))
        .await;

    // Tasks through the collectors, for as long as the test looks.
    let driver = cluster.driver().await;
    let load = {
        let driver = driver.clone();
        tokio::spawn(async move {
            let history = History::default();
            for round in 0.. {
                for kind in [CollectorKind::Process, CollectorKind::Network] {
                    let ids = task_ids(&format!("{kind:?}-{round}"), 40);
                    let _ = driver
                        .run_tasks(kind, ids, RunOptions::default().concurrency(4), &history)
                        .await;
                }
            }
        })
    };
    page.wait(
        "rates above zero",
        "Number(document.getElementById('ack-rate').textContent) > 0 \
         && document.getElementById('publish-rate').textContent !== '0'",
    )
    .await;
    page.wait(
        "both process collectors listed with their latency",
        "['procmond-1', 'procmond-2', 'netmond-1'].every(id => { \
           const row = document.querySelector(`#workers tr[data-key='${id}']`); \
           return row && row.cells[3].textContent !== '–'; })",
    )
    .await;
    page.wait(
        "the process queue listed",
        "!!document.querySelector(\"#queues tr[data-key='control.collector.task.process/process']\")",
    )
    .await;

    // A dead letter, as it happens.
    let client = driver.client();
    let group = GroupName::new("doomed").unwrap();
    let mut doomed = client
        .queue_subscribe(&TopicFilter::new("jobs.doomed").unwrap(), &group, 1)
        .await
        .unwrap();
    client
        .publish_confirmed(&Topic::new("jobs.doomed").unwrap(), "x")
        .await
        .unwrap();
    let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut doomed).poll_next(cx));
    let delivery = tokio::time::timeout(DEADLINE, next).await.unwrap().unwrap();
    delivery.nack(false).unwrap();
    page.wait(
        "the dead letter shown",
        "[...document.querySelectorAll('#dead li')].some(li => li.textContent.includes('jobs.doomed in doomed'))",
    )
    .await;
    page.wait(
        "the late collector's connect event shown",
        "[...document.querySelectorAll('#events li.connected')].some(li => li.textContent.includes('procmond-2'))",
    )
    .await;
    // The charts hold a few seconds of live samples, then the picture
    // (`samples` is the page script's ring of 1-second history points).
    page.wait(
        "every worker listed and a few seconds of history drawn",
        "document.querySelectorAll('#workers tbody tr').length >= 3 && samples.length >= 4",
    )
    .await;
    let shot = screenshot_path();
    page.0.screenshot(&shot).await;
    eprintln!("dashboard screenshot: {}", shot.display());

    // The broker restarts: the page reconnects by itself, no reload.
    load.abort();
    cluster.broker_mut().restart().await;
    page.wait(
        "the page reconnected to the restarted broker",
        "document.getElementById('status').textContent === 'live' \
         && document.getElementById('uptime').textContent.startsWith('up ') \
         && Number(document.getElementById('uptime').textContent.slice(3).split(' ')[0]) < 30 \
         && window.__loaded_once === true",
    )
    .await;
    assert_eq!(
        page.0.eval("window.__loaded_once").await,
        true,
        "the page reloaded"
    );
}

/// Polls a condition in the page.
struct Page<'a>(&'a mut Browser);

impl Page<'_> {
    async fn wait(&mut self, what: &str, condition: &str) {
        let expression = format!(
            "(() => {{ try {{ return !!({condition}); }} catch (e) {{ return false; }} }})()"
        );
        let end = tokio::time::Instant::now() + DEADLINE;
        loop {
            if self.0.eval(&expression).await == true {
                return;
            }
            if tokio::time::Instant::now() >= end {
                let body = self.0.eval("document.body.innerText").await;
                panic!("the page never showed {what} within {DEADLINE:?}; it shows:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
