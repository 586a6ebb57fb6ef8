//! `ebctl top`: the broker's queues and clients in the terminal, redrawn
//! every interval with rates from the last two snapshots (like `nats top`).
//! Everything comes over the bus (`Client::stats`): no HTTP listener needed.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use eventbus::Client;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::widgets::{Block, Paragraph, Row, Table};

use crate::cli::TopArgs;
use crate::failure::Failure;
use eventbus::BrokerStats;

/// How often keys are looked at between refreshes.
const KEY_POLL: Duration = Duration::from_millis(50);

/// Two snapshots and the time between them: what a screen shows.
pub struct View {
    now: BrokerStats,
    before: Option<BrokerStats>,
    secs: f64,
}

impl View {
    /// Per second, from the previous snapshot's `old` to `new`.
    fn rate(&self, old: Option<u64>, new: u64) -> f64 {
        match old {
            Some(old) if self.secs > 0.0 => new.saturating_sub(old) as f64 / self.secs,
            _ => 0.0,
        }
    }
}

/// Runs until q, Esc or Ctrl-C.
pub async fn run(client: &Client, args: &TopArgs) -> Result<(), Failure> {
    let mut terminal = ratatui::init();
    let result = refresh_loop(client, args, &mut terminal).await;
    ratatui::restore();
    result
}

async fn refresh_loop(
    client: &Client,
    args: &TopArgs,
    terminal: &mut ratatui::DefaultTerminal,
) -> Result<(), Failure> {
    let mut before: Option<(BrokerStats, Instant)> = None;
    loop {
        let now = client.stats().await?;
        let at = Instant::now();
        let view = View {
            secs: before
                .as_ref()
                .map_or(0.0, |(_, t)| at.duration_since(*t).as_secs_f64()),
            before: before.take().map(|(s, _)| s),
            now,
        };
        terminal.draw(|frame| draw(frame, &view))?;
        before = Some((view.now, at));
        let next = at + args.interval;
        while Instant::now() < next {
            if event::poll(KEY_POLL)? && quit(&event::read()?) {
                return Ok(());
            }
            tokio::task::yield_now().await;
        }
    }
}

fn quit(event: &Event) -> bool {
    let Event::Key(key) = event else { return false };
    key.kind == KeyEventKind::Press
        && (matches!(key.code, KeyCode::Char('q') | KeyCode::Esc)
            || (key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL)))
}

fn rate_text(r: f64) -> String {
    if r >= 100.0 || r == 0.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

/// Draws one screen: a summary line, the queues, the clients.
pub fn draw(frame: &mut Frame, view: &View) {
    let s = &view.now;
    let b = view.before.as_ref();
    let [head, queues, clients] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Percentage(40),
        Constraint::Fill(1),
    ])
    .areas(frame.area());
    let summary = format!(
        "eventbus  up {:.0}s  clients {}  queues {}  published {} ({}/s)  delivered {} ({}/s)  dropped {}  rss {:.1} MiB   q: quit",
        s.uptime_ms as f64 / 1000.0,
        s.connections.len(),
        s.queues.len(),
        s.published,
        rate_text(view.rate(b.map(|b| b.published), s.published)),
        s.delivered,
        rate_text(view.rate(b.map(|b| b.delivered), s.delivered)),
        s.dropped,
        s.rss_bytes as f64 / (1024.0 * 1024.0),
    );
    frame.render_widget(Paragraph::new(summary), head);

    let old_queues: HashMap<(&str, &str), (u64, u64)> = b
        .map(|b| {
            b.queues
                .iter()
                .map(|q| ((q.topic.as_str(), q.group.as_str()), (q.delivered, q.acked)))
                .collect()
        })
        .unwrap_or_default();
    let rows = s.queues.iter().map(|q| {
        let old = old_queues.get(&(q.topic.as_str(), q.group.as_str()));
        Row::new(vec![
            q.topic.clone(),
            q.group.clone(),
            q.depth.to_string(),
            q.in_flight.to_string(),
            rate_text(view.rate(old.map(|o| o.0), q.delivered)),
            rate_text(view.rate(old.map(|o| o.1), q.acked)),
            q.redelivered.to_string(),
            q.dead_lettered.to_string(),
            q.members.len().to_string(),
        ])
    });
    let header = Row::new([
        "FILTER",
        "GROUP",
        "DEPTH",
        "IN FLIGHT",
        "OUT/S",
        "ACK/S",
        "REDELIV",
        "DEAD",
        "MEMBERS",
    ])
    .style(Style::new().add_modifier(Modifier::BOLD));
    let widths = [
        Constraint::Fill(3),
        Constraint::Fill(1),
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(6),
        Constraint::Length(7),
    ];
    frame.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(Block::bordered().title(" queues ")),
        queues,
    );

    let old_clients: HashMap<&str, (u64, u64, u64)> = b
        .map(|b| {
            b.connections
                .iter()
                .map(|c| (c.id.as_str(), (c.published, c.delivered, c.acked)))
                .collect()
        })
        .unwrap_or_default();
    let rows = s.connections.iter().map(|c| {
        let old = old_clients.get(c.id.as_str());
        Row::new(vec![
            c.id.clone(),
            c.kind.clone(),
            rate_text(view.rate(old.map(|o| o.0), c.published)),
            rate_text(view.rate(old.map(|o| o.1), c.delivered)),
            rate_text(view.rate(old.map(|o| o.2), c.acked)),
            c.in_flight.to_string(),
            c.outbound_depth.to_string(),
            c.dropped.to_string(),
        ])
    });
    let header = Row::new([
        "CLIENT",
        "KIND",
        "PUB/S",
        "DELIV/S",
        "ACK/S",
        "IN FLIGHT",
        "BUFFERED",
        "DROPPED",
    ])
    .style(Style::new().add_modifier(Modifier::BOLD));
    let widths = [
        Constraint::Fill(2),
        Constraint::Fill(1),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(8),
    ];
    frame.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(Block::bordered().title(" clients ")),
        clients,
    );
}

#[cfg(test)]
mod tests {
    use eventbus::proto;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;

    fn snapshot(published: u64, acked: u64) -> BrokerStats {
        BrokerStats::from(proto::StatsResponse {
            uptime_ms: 5000,
            published,
            connections: vec![proto::ConnectionStats {
                id: "procmond-1".into(),
                kind: "collector".into(),
                acked,
                ..Default::default()
            }],
            queues: vec![proto::QueueStats {
                topic: "control.collector.task.process".into(),
                group: "process".into(),
                depth: 7,
                acked,
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    #[test]
    fn the_screen_shows_queues_clients_and_rates_over_the_interval() {
        let view = View {
            before: Some(snapshot(100, 10)),
            now: snapshot(300, 50),
            secs: 2.0,
        };
        let mut terminal = Terminal::new(TestBackend::new(140, 20)).unwrap();
        terminal.draw(|f| draw(f, &view)).unwrap();
        let screen: String = terminal
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect();
        assert!(screen.contains("published 300 (100/s)"), "{screen}");
        assert!(
            screen.contains("control.collector.task.process"),
            "{screen}"
        );
        assert!(screen.contains("procmond-1"), "{screen}");
        assert!(screen.contains("20.0"), "ack rate 40 per 2 s: {screen}");
    }

    #[test]
    fn q_esc_and_ctrl_c_quit() {
        use crossterm::event::KeyEvent;
        let key = |code, modifiers| Event::Key(KeyEvent::new(code, modifiers));
        assert!(quit(&key(KeyCode::Char('q'), KeyModifiers::NONE)));
        assert!(quit(&key(KeyCode::Esc, KeyModifiers::NONE)));
        assert!(quit(&key(KeyCode::Char('c'), KeyModifiers::CONTROL)));
        assert!(!quit(&key(KeyCode::Char('c'), KeyModifiers::NONE)));
    }
}
