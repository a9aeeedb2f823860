//! The worker pool: a fixed set of blocking threads taking tasks from a priority channel,
//! with a permit gate between them and the work so the monitor can change how many run at
//! once without stopping or starting threads.

use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};

use crossbeam_channel::{Receiver, Sender};

/// A multi-producer multi-consumer channel that hands out the highest-priority task first.
/// Crossbeam carries one ticket per task (blocking, wake-ups and disconnection come from
/// it); the heap decides which task a ticket buys.
pub struct PriorityChannel<T> {
    heap: Mutex<BinaryHeap<Entry<T>>>,
    tickets: Receiver<()>,
    sender: Mutex<Option<Sender<()>>>,
    sequence: std::sync::atomic::AtomicU64,
}

struct Entry<T> {
    priority: u64,
    /// Earlier tasks first among equal priorities, so order is deterministic.
    sequence: u64,
    task: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.priority, self.sequence) == (other.priority, other.sequence)
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.priority
            .cmp(&other.priority)
            .then(other.sequence.cmp(&self.sequence))
    }
}

impl<T> Default for PriorityChannel<T> {
    fn default() -> Self {
        let (sender, tickets) = crossbeam_channel::unbounded();
        PriorityChannel {
            heap: Mutex::new(BinaryHeap::new()),
            tickets,
            sender: Mutex::new(Some(sender)),
            sequence: Default::default(),
        }
    }
}

impl<T> PriorityChannel<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues a task; higher `priority` runs first. Returns false after `close`.
    pub fn send(&self, priority: u64, task: T) -> bool {
        let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        let Some(sender) = sender.as_ref() else {
            return false;
        };
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        self.heap
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Entry {
                priority,
                sequence,
                task,
            });
        sender.send(()).is_ok()
    }

    /// No more tasks will come: receivers drain what is queued, then get `None`.
    pub fn close(&self) {
        self.sender.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Blocks until a task is available or the channel is closed and empty.
    pub fn recv(&self) -> Option<T> {
        self.tickets.recv().ok()?;
        self.heap
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .map(|e| e.task)
    }

    /// Drops every queued task (used when the run is cancelled).
    pub fn drain(&self) {
        while self.tickets.try_recv().is_ok() {
            self.heap.lock().unwrap_or_else(|p| p.into_inner()).pop();
        }
    }
}

/// Limits how many workers run at once. The limit can change at any time: lowering it
/// lets running tasks finish (nothing is aborted), raising it wakes waiting workers at once.
pub struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Debug, Clone, Copy)]
struct GateState {
    active: usize,
    limit: usize,
}

impl Gate {
    pub fn new(limit: usize) -> Gate {
        Gate {
            state: Mutex::new(GateState {
                active: 0,
                limit: limit.max(1),
            }),
            changed: Condvar::new(),
        }
    }

    pub fn acquire(&self) -> Permit<'_> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while state.active >= state.limit {
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.active += 1;
        Permit { gate: self }
    }

    pub fn set_limit(&self, limit: usize) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.limit = limit.max(1);
        self.changed.notify_all();
    }

    pub fn limit(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).limit
    }

    pub fn active(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).active
    }
}

pub struct Permit<'a> {
    gate: &'a Gate,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut state = self.gate.state.lock().unwrap_or_else(|p| p.into_inner());
        state.active -= 1;
        self.gate.changed.notify_all();
    }
}

/// Runs every queued task on `workers` threads, at most `gate.limit()` at a time, and
/// returns the results in completion order. After `work` reports a fatal result (`stop`
/// returns true), queued tasks are dropped; running ones finish.
pub fn run_pool<T: Send, R: Send>(
    workers: usize,
    gate: &Gate,
    queue: &PriorityChannel<T>,
    work: &(dyn Fn(T) -> R + Sync),
    stop: &(dyn Fn(&R) -> bool + Sync),
) -> Vec<R> {
    queue.close();
    let results = Mutex::new(Vec::new());
    let stopped = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            scope.spawn(|| {
                loop {
                    let permit = gate.acquire();
                    if stopped.load(Ordering::Relaxed) {
                        break;
                    }
                    let Some(task) = queue.recv() else { break };
                    let result = work(task);
                    drop(permit);
                    if stop(&result) {
                        stopped.store(true, Ordering::Relaxed);
                        queue.drain();
                    }
                    results
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(result);
                }
            });
        }
    });
    results.into_inner().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    #[test]
    fn highest_priority_first_then_fifo() {
        let channel = PriorityChannel::new();
        for (priority, name) in [(1, "small"), (100, "big"), (50, "mid"), (100, "big2")] {
            channel.send(priority, name);
        }
        channel.close();
        let order: Vec<_> = std::iter::from_fn(|| channel.recv()).collect();
        assert_eq!(order, vec!["big", "big2", "mid", "small"]);
    }

    #[test]
    fn gate_limits_concurrency_and_can_grow() {
        let gate = Gate::new(2);
        let queue = PriorityChannel::new();
        for i in 0..12 {
            queue.send(i, i);
        }
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let results = run_pool(
            4,
            &gate,
            &queue,
            &|_task| {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
                running.fetch_sub(1, Ordering::SeqCst);
            },
            &|_| false,
        );
        assert_eq!(results.len(), 12);
        assert!(peak.load(Ordering::SeqCst) <= 2);
    }

    #[test]
    fn stop_drops_queued_tasks() {
        let gate = Gate::new(1);
        let queue = PriorityChannel::new();
        for i in 0..10u64 {
            queue.send(100 - i, i);
        }
        let results = run_pool(1, &gate, &queue, &|task| task, &|r| *r == 2);
        assert_eq!(results, vec![0, 1, 2]);
    }

    #[test]
    fn raising_the_limit_wakes_waiting_workers() {
        let gate = Gate::new(1);
        let first = gate.acquire();
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| {
                let _second = gate.acquire();
            });
            std::thread::sleep(Duration::from_millis(20));
            gate.set_limit(2);
            waiter.join().unwrap();
        });
        drop(first);
        assert_eq!(gate.active(), 0);
    }
}
