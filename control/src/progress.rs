//! Progress of a long run: a bar (done, rate, ETA) on a terminal, a plain line every few
//! seconds otherwise (logs, CI), both on stderr so that stdout keeps the result.

use indicatif::{HumanCount, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::{
    io::IsTerminal,
    time::{Duration, Instant},
};

/// How often a plain progress line is printed.
const LINE_EVERY: Duration = Duration::from_secs(2);

/// The progress of one run over about `total` items.
pub struct Progress {
    label: String,
    total: u64,
    started: Instant,
    display: Display,
}

enum Display {
    Bar(ProgressBar),
    Lines { last: Instant },
}

impl Progress {
    /// Start showing `label`'s progress over about `total` items (the total may grow).
    pub fn start(label: &str, total: u64) -> Self {
        let display = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:>10} [{bar:32}] {human_pos}/{human_len} events  {per_sec}  ETA {eta}  {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(label.to_owned());
            bar.enable_steady_tick(Duration::from_millis(200));
            Display::Bar(bar)
        } else {
            Display::Lines { last: Instant::now() }
        };
        Self {
            label: label.to_owned(),
            total,
            started: Instant::now(),
            display,
        }
    }

    /// `done` items so far; `note` says what it is doing beyond counting (e.g. catching up).
    pub fn update(&mut self, done: u64, note: &str) {
        self.total = self.total.max(done);
        match &mut self.display {
            Display::Bar(bar) => {
                bar.set_length(self.total);
                bar.set_position(done);
                bar.set_message(note.to_owned());
            }
            Display::Lines { last } => {
                if last.elapsed() >= LINE_EVERY {
                    *last = Instant::now();
                    eprintln!("{}", self.line(done, note));
                }
            }
        }
    }

    /// Stop showing it: the final line, whatever the display.
    pub fn finish(self, done: u64, note: &str) {
        if let Display::Bar(bar) = &self.display {
            bar.finish_and_clear();
        }
        eprintln!("{}", self.line(done, note));
    }

    fn line(&self, done: u64, note: &str) -> String {
        let elapsed = self.started.elapsed().as_secs_f64();
        let rate = if elapsed > 0.0 { done as f64 / elapsed } else { 0.0 };
        let percent = (done * 100).checked_div(self.total).unwrap_or(100);
        let eta = if rate > 0.0 {
            format!("{:.0} s", self.total.saturating_sub(done) as f64 / rate)
        } else {
            "-".to_owned()
        };
        format!(
            "{}: {}/{} events ({percent}%), {} events/s, ETA {eta}, {elapsed:.1} s elapsed{}",
            self.label,
            HumanCount(done),
            HumanCount(self.total),
            HumanCount(rate as u64),
            if note.is_empty() {
                String::new()
            } else {
                format!(", {note}")
            }
        )
    }
}
