//! Keyword search over open jobs: the words of a job, the words of a query, and the merge of the
//! `job_search` partitions of a query's words into one newest-first list.
//!
//! A job matches when it has **any** word of the query (case-insensitive, whole words). Words are
//! the runs of letters and digits, lower-cased (`Node.js` → `node`, `js`); longer than
//! [`MAX_WORD_CHARS`] characters they are not indexed.

use futures::{Stream, StreamExt, TryStreamExt, future::try_join_all, stream::Peekable};
use std::{collections::BTreeSet, pin::Pin};
use uuid::Uuid;

use super::{
    JobStore,
    views::{Cursor, JobPage, JobStatus, JobView, PageRequest},
};
use crate::store::StoreError;

/// Longest indexed word.
pub const MAX_WORD_CHARS: usize = 64;
/// Most distinct words a query may have.
pub const MAX_QUERY_WORDS: usize = 10;

/// The distinct lower-cased words of `text`.
pub fn words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && w.chars().count() <= MAX_WORD_CHARS)
        .map(str::to_lowercase)
        .collect()
}

/// The words a job is found by: those of its title, description and skills.
pub fn job_words(title: &str, description: &str, skills: &[String]) -> BTreeSet<String> {
    let mut all = words(title);
    all.extend(words(description));
    for skill in skills {
        all.extend(words(skill));
    }
    all
}

/// Why a query cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadQuery {
    /// No word in it.
    #[error("the query has no word (letters or digits)")]
    NoWord,
    /// Too many distinct words.
    #[error("at most {MAX_QUERY_WORDS} distinct words")]
    TooManyWords,
}

/// The words of a search query.
pub fn query_words(q: &str) -> Result<BTreeSet<String>, BadQuery> {
    let words = words(q);
    match words.len() {
        0 => Err(BadQuery::NoWord),
        n if n > MAX_QUERY_WORDS => Err(BadQuery::TooManyWords),
        _ => Ok(words),
    }
}

type KeyStream = Pin<Box<dyn Stream<Item = Result<Cursor, StoreError>> + Send>>;

impl JobStore {
    /// Open jobs having any of `words`, newest first. The index may hold entries a rebalance race
    /// left behind (DESIGN §6): each candidate is checked against its job's current row, so a
    /// closed job, or one whose edit removed the word, is never answered.
    pub async fn search(&self, words: &BTreeSet<String>, page: &PageRequest) -> Result<JobPage, StoreError> {
        let mut streams = Vec::with_capacity(words.len());
        for word in words {
            streams.push(self.word_keys(word, page.after.as_ref()).await?.peekable());
        }
        let mut found: Vec<(Cursor, JobView)> = Vec::with_capacity(page.limit + 1);
        let mut last = page.after.clone();
        // One more than asked tells whether a next page exists.
        while found.len() <= page.limit {
            let mut batch = Vec::new();
            while batch.len() < page.limit + 1 - found.len() {
                let Some(key) = next_key(&mut streams).await? else {
                    break;
                };
                // The same job under several words comes out once, adjacent in key order.
                if last.as_ref().is_none_or(|l| &key > l) {
                    last = Some(key.clone());
                    batch.push(key);
                }
            }
            if batch.is_empty() {
                break;
            }
            let views = try_join_all(batch.iter().map(|key| self.candidate(key))).await?;
            for (key, view) in batch.into_iter().zip(views) {
                if let Some(view) = view.filter(|v| matches(v, words)) {
                    found.push((key, view));
                }
            }
        }
        let next_page_token = if found.len() > page.limit {
            found.truncate(page.limit);
            found.last().map(|(key, _)| key.encode())
        } else {
            None
        };
        Ok(JobPage {
            items: found.into_iter().map(|(_, v)| v).collect(),
            next_page_token,
        })
    }

    /// The keys of the jobs indexed under `word`, sorted, after `after`.
    async fn word_keys(&self, word: &str, after: Option<&Cursor>) -> Result<KeyStream, StoreError> {
        // A literal, not a bind marker: the emulator cannot bind clustering-key ranges (it
        // ignores the range and answers the whole partition, filtered below). `word` holds only
        // letters and digits; quotes are doubled anyway.
        let word = word.replace('\'', "''");
        let from = after
            .map(|c| format!(" AND rank >= {}", c.rank))
            .unwrap_or_default();
        let cql = format!(
            "SELECT rank, job_id FROM {}.job_search WHERE word = '{word}'{from}",
            self.keyspace
        );
        let rows = self.rows::<(i64, String)>(cql).await?;
        let after = after.cloned();
        Ok(Box::pin(
            rows.map_ok(|(rank, id)| Cursor { rank, id })
                .try_filter(move |key| std::future::ready(after.as_ref().is_none_or(|a| key > a))),
        ))
    }

    async fn candidate(&self, key: &Cursor) -> Result<Option<JobView>, StoreError> {
        match key.id.parse::<Uuid>() {
            Ok(id) => self.get(id).await,
            Err(_) => Ok(None),
        }
    }
}

/// Whether `job` is open and still has one of `words`.
fn matches(job: &JobView, words: &BTreeSet<String>) -> bool {
    job.status == JobStatus::Open && !job_words(&job.title, &job.description, &job.skills).is_disjoint(words)
}

/// Take the smallest head over every word's partition (each comes sorted by key).
async fn next_key(streams: &mut [Peekable<KeyStream>]) -> Result<Option<Cursor>, StoreError> {
    let mut smallest: Option<(usize, Cursor)> = None;
    for (i, s) in streams.iter_mut().enumerate() {
        match Pin::new(&mut *s).peek().await {
            Some(Ok(key)) if smallest.as_ref().is_none_or(|(_, k)| key < k) => {
                smallest = Some((i, key.clone()));
            }
            None | Some(Ok(_)) => {}
            Some(Err(_)) => {
                if let Some(Err(e)) = s.next().await {
                    return Err(e);
                }
            }
        }
    }
    let Some((i, key)) = smallest else {
        return Ok(None);
    };
    streams[i].next().await;
    Ok(Some(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_lower_cased_runs_of_letters_and_digits() {
        let found = words("Build a LOOM, in Node.js & C++ (v2)! Ünïcode");
        let expected: BTreeSet<String> = ["build", "a", "loom", "in", "node", "js", "c", "v2", "ünïcode"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(found, expected);
        assert!(words(&"x".repeat(MAX_WORD_CHARS + 1)).is_empty());
    }

    #[test]
    fn a_query_needs_one_to_ten_words() {
        assert_eq!(query_words(" ,; "), Err(BadQuery::NoWord));
        let many = (0..=MAX_QUERY_WORDS)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(query_words(&many), Err(BadQuery::TooManyWords));
        assert_eq!(query_words("Rust rust RUST").map(|w| w.len()), Ok(1));
    }
}
