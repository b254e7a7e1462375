//! A concurrency limit that can be changed while it is in use (`max_concurrency`): lowering it
//! lets the work in flight finish and admits new work only below the new limit.

use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limit when none is set.
pub const UNLIMITED: usize = 100_000;

#[derive(Debug)]
struct State {
    limit: usize,
    /// Permits to take out of circulation as they come back (lowered below what was in flight).
    debt: usize,
}

/// A resizable limit on work in flight.
#[derive(Debug, Clone)]
pub struct Limit {
    semaphore: Arc<Semaphore>,
    state: Arc<Mutex<State>>,
}

/// One unit of work in flight; its place is given back (or retired) when dropped.
#[derive(Debug)]
pub struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    state: Arc<Mutex<State>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(permit) = self.permit.take()
            && state.debt > 0
        {
            state.debt -= 1;
            permit.forget();
        }
    }
}

impl Default for Limit {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Limit {
    /// A limit of `limit` at once (`None`: [`UNLIMITED`]).
    pub fn new(limit: Option<u32>) -> Self {
        let limit = to_usize(limit);
        Self {
            semaphore: Arc::new(Semaphore::new(limit)),
            state: Arc::new(Mutex::new(State { limit, debt: 0 })),
        }
    }

    /// A limit kept at the `max_concurrency` of `settings` (a task follows them; it ends with
    /// their sender).
    pub fn following(settings: &tokio::sync::watch::Receiver<super::Settings>) -> Self {
        let limit = Self::new(settings.borrow().max_concurrency);
        let (mut watched, resized) = (settings.clone(), limit.clone());
        tokio::spawn(async move {
            while watched.changed().await.is_ok() {
                let max = watched.borrow_and_update().max_concurrency;
                resized.set(max);
                tracing::info!(?max, "max_concurrency applied");
            }
        });
        limit
    }

    /// Wait for a place.
    pub async fn acquire(&self) -> Slot {
        let permit = self.semaphore.clone().acquire_owned().await.ok();
        Slot {
            permit,
            state: self.state.clone(),
        }
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).limit
    }

    /// Change the limit (`None`: [`UNLIMITED`]).
    pub fn set(&self, limit: Option<u32>) {
        let new = to_usize(limit);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if new > state.limit {
            let more = new - state.limit;
            let repaid = more.min(state.debt);
            state.debt -= repaid;
            self.semaphore.add_permits(more - repaid);
        } else {
            let fewer = state.limit - new;
            let retired = self.semaphore.forget_permits(fewer);
            state.debt += fewer - retired;
        }
        state.limit = new;
    }
}

fn to_usize(limit: Option<u32>) -> usize {
    limit
        .and_then(|n| usize::try_from(n).ok())
        .map_or(UNLIMITED, |n| n.clamp(1, UNLIMITED))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn admitted(limit: &Limit, n: usize) -> Vec<Slot> {
        let mut slots = Vec::new();
        for _ in 0..n {
            match tokio::time::timeout(Duration::from_millis(20), limit.acquire()).await {
                Ok(slot) => slots.push(slot),
                Err(_) => break,
            }
        }
        slots
    }

    #[tokio::test]
    async fn lowering_below_the_work_in_flight_admits_nothing_until_enough_has_finished() {
        let limit = Limit::new(Some(4));
        let mut held = admitted(&limit, 10).await;
        assert_eq!(held.len(), 4);
        limit.set(Some(1));
        held.truncate(2);
        assert_eq!(admitted(&limit, 1).await.len(), 0, "2 in flight, limit 1");
        held.truncate(0);
        assert_eq!(admitted(&limit, 5).await.len(), 1);
        limit.set(Some(3));
        assert_eq!(admitted(&limit, 5).await.len(), 3);
        limit.set(None);
        assert_eq!(limit.limit(), UNLIMITED);
    }

    #[tokio::test]
    async fn raising_while_in_debt_repays_it_first() {
        let limit = Limit::new(Some(4));
        let held = admitted(&limit, 4).await;
        limit.set(Some(1)); // debt 3
        limit.set(Some(2)); // debt 2
        drop(held); // 2 retired, 2 back
        assert_eq!(admitted(&limit, 5).await.len(), 2);
    }
}
