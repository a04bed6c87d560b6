//! Per-model admission: at most `max_concurrency` requests in flight, at most
//! `max_queue` waiting, first come first served.
//!
//! Tokio's semaphore is fair (waiters are served in arrival order), so a model with
//! `max_concurrency = 1` is strictly sequential. A waiter whose future is dropped
//! (its client went away) leaves the queue without ever reaching the backend.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::ModelMetrics;

#[derive(Debug)]
pub struct Queue {
    metrics: Arc<ModelMetrics>,
    sem: Arc<Semaphore>,
    waiting: AtomicUsize,
    in_flight: Arc<AtomicUsize>,
    max_queue: usize,
}

/// A slot in flight; freeing it lets the next waiter in.
#[derive(Debug)]
pub struct Permit {
    _permit: OwnedSemaphorePermit,
    in_flight: Arc<AtomicUsize>,
    metrics: Arc<ModelMetrics>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let n = self
            .in_flight
            .fetch_sub(1, Ordering::Relaxed)
            .saturating_sub(1);
        self.metrics.set_in_flight(n);
    }
}

/// The queue is at `max_queue`.
#[derive(Debug, Clone, Copy)]
pub struct QueueFull;

struct Waiting<'a>(&'a Queue);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let n = self
            .0
            .waiting
            .fetch_sub(1, Ordering::Relaxed)
            .saturating_sub(1);
        self.0.report_depth(n);
    }
}

impl Queue {
    pub fn new(metrics: Arc<ModelMetrics>, max_concurrency: usize, max_queue: usize) -> Self {
        Queue {
            metrics,
            sem: Arc::new(Semaphore::new(max_concurrency.max(1))),
            waiting: AtomicUsize::new(0),
            in_flight: Arc::new(AtomicUsize::new(0)),
            max_queue,
        }
    }

    fn report_depth(&self, n: usize) {
        self.metrics.set_queue_depth(n);
    }

    /// Waits for a slot, or fails at once when `max_queue` requests already wait.
    pub async fn acquire(&self) -> Result<Permit, QueueFull> {
        let permit = match self.sem.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let before = self.waiting.fetch_add(1, Ordering::Relaxed);
                let guard = Waiting(self);
                if before >= self.max_queue {
                    return Err(QueueFull);
                }
                self.report_depth(before + 1);
                let p = self
                    .sem
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| QueueFull)?;
                drop(guard);
                p
            }
        };
        let n = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.metrics.set_in_flight(n);
        Ok(Permit {
            _permit: permit,
            in_flight: self.in_flight.clone(),
            metrics: self.metrics.clone(),
        })
    }

    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lets other tasks run until `f` holds (a waiter queued), without guessing how
    /// long that takes.
    #[allow(clippy::panic)]
    async fn until(f: impl Fn() -> bool) {
        for _ in 0..10_000 {
            if f() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the condition never held");
    }

    #[tokio::test]
    async fn serves_in_arrival_order_and_bounds_the_queue() {
        let q = Arc::new(Queue::new(Arc::new(ModelMetrics::new("m", "test")), 1, 2));
        let first = q.acquire().await.unwrap();
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..2 {
            let (q2, order) = (q.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _p = q2.acquire().await.unwrap();
                order.lock().unwrap().push(i);
            }));
            until(|| q.waiting() == i + 1).await;
        }
        assert_eq!(q.waiting(), 2);
        assert!(q.acquire().await.is_err(), "third waiter must be refused");
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1]);
        assert_eq!(q.waiting(), 0);
    }

    #[tokio::test]
    async fn dropped_waiter_leaves_the_queue() {
        let q = Arc::new(Queue::new(Arc::new(ModelMetrics::new("m", "test")), 1, 1));
        let held = q.acquire().await.unwrap();
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.acquire().await.map(|_| ()) });
        until(|| q.waiting() == 1).await;
        waiter.abort();
        let _ = waiter.await;
        assert_eq!(q.waiting(), 0);
        drop(held);
        assert!(q.acquire().await.is_ok());
    }
}
