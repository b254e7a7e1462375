//! Printing: aligned tables for people, one JSON document for machines (`--json`).

use chrono::{DateTime, SecondsFormat, Utc};
use infra::control::Setting;
use serde::Serialize;
use std::io::{self, Write};

/// A table of text cells printed with aligned columns.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these columns.
    pub fn new(headers: &[&'static str]) -> Self {
        Self {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Add a row (one cell per column).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Print it; the last column is not padded.
    pub fn print(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.headers.iter().map(|h| (*h).to_owned()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<width$}  "));
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// Print `value` as pretty JSON.
pub fn json(out: &mut dyn Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(io::Error::other)?;
    writeln!(out)
}

/// A setting as `name = value` parts, e.g. (`max_concurrency`, `none`).
pub fn describe(setting: &Setting) -> (String, String) {
    let value = match setting {
        Setting::Frozen(frozen) => frozen.to_string(),
        Setting::MaxConcurrency(limit) | Setting::MaxDbConnections(limit) => limit_text(*limit),
        Setting::CommandDisabled { disabled, .. } => {
            if *disabled { "disabled" } else { "enabled" }.to_owned()
        }
        Setting::LogLevel(filter) => filter.clone(),
        Setting::ReadModel { generations, .. } => match generations.paused_until {
            Some(until) => format!("g{} (paused until {})", generations.active, time(until)),
            None => format!("g{}", generations.active),
        },
    };
    (setting.key(), value)
}

/// A limit as text: the number, or `none`.
pub fn limit_text(limit: Option<u32>) -> String {
    limit.map_or_else(|| "none".to_owned(), |n| n.to_string())
}

/// A time as `2024-05-01T12:00:00Z`.
pub fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A dash for an empty cell.
pub fn or_dash(text: impl Into<String>) -> String {
    let text = text.into();
    if text.is_empty() { "-".to_owned() } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned_and_lines_not_padded() {
        let mut table = Table::new(&["A", "LONG HEADER", "C"]);
        table.row(vec!["wide cell".into(), "x".into(), "y".into()]);
        let mut out = Vec::new();
        table.print(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "A          LONG HEADER  C\nwide cell  x            y\n"
        );
    }

    #[test]
    fn settings_read_as_name_and_value() {
        assert_eq!(
            describe(&Setting::MaxConcurrency(None)),
            ("max_concurrency".into(), "none".into())
        );
        assert_eq!(
            describe(&Setting::CommandDisabled {
                command: "post_job".into(),
                disabled: true
            }),
            ("disabled:post_job".into(), "disabled".into())
        );
    }
}
