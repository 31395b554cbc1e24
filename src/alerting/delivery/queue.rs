//! The delivery queue: bounded, never blocking a producer, and ordered per
//! incident without letting one incident hold up another.
//!
//! Each sink has its own queue and task, so one receiver's outage never
//! delays another's. Inside a queue, every parcel travels in a [`Lane`]:
//! the notifications of one incident (a failover, its repeats, its
//! recovery) share one and go out strictly in order, a recovery never
//! before the failover it closes; different lanes go out side by side.
//!
//! First attempts take turns: a parcel's first attempt starts once the
//! previous first attempt (of any lane) has ended, answered or timed out,
//! so a healthy receiver hears of things in the order they were decided (a
//! failover before the error rate it caused in the same instant). A
//! notification whose receiver hangs or fails is then retried at the head
//! of its own lane only, in the background: one notification's timeouts
//! and retries never delay another's first attempt by more than one
//! attempt's timeout (`ALERT_TIMEOUT_SEC`).
//!
//! A lane can also carry state rather than messages ([`Parcel::latest`]):
//! only its newest parcel matters, so a newer one replaces the ones still
//! waiting and stops the retries of the one under way after its current
//! attempt. The notifications those carried ride along with the newest,
//! and are reported with its outcome.
//!
//! Producers never wait: [`Queue::push`] takes a permit or hands the parcel
//! back, and a refused notification is counted `dropped` and logged with
//! its title. At most `queue_size` parcels wait, in all lanes together
//! (parcels under way do not count); lanes are bounded by the incidents
//! there can be, and so are the requests under way. On shutdown the queue stops accepting, and what is queued keeps
//! going out until the drain deadline; anything left then is logged one
//! line per notification and counted `failed`, so no alert disappears
//! unreported.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::retry::{Delivered, Policy, Transport, deliver};
use super::{AlertOutcome, DeliveryMetrics, Outcome, ShutdownReport};
use crate::alerting::finding::{IncidentKey, Kind};

/// Parcels in one lane go out in order, one at a time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Lane {
    /// The notifications of one incident.
    Incident(IncidentKey),
    /// Notifications outside an incident, by kind and pool.
    Other(Kind, Option<String>),
    /// A receiver's state: only the newest parcel matters.
    State,
}

/// A notification inside a parcel, whose outcome someone may wait for.
#[derive(Debug)]
pub struct Tracked {
    pub kind: Kind,
    /// Reported once delivery is over.
    pub done: Option<oneshot::Sender<Outcome>>,
    pub submitted: Instant,
}

impl Tracked {
    pub fn new(kind: Kind, done: Option<oneshot::Sender<Outcome>>) -> Tracked {
        Tracked {
            kind,
            done,
            submitted: Instant::now(),
        }
    }

    fn finish(self, outcome: Outcome, metrics: &DeliveryMetrics) {
        let counted = if outcome == Outcome::Sent {
            AlertOutcome::Sent
        } else {
            AlertOutcome::Failed
        };
        metrics.count(counted, self.kind);
        metrics
            .delivery_seconds
            .record(self.submitted.elapsed().as_secs_f64());
        if let Some(done) = self.done {
            // The submitter may have stopped waiting; that is its choice.
            let _ = done.send(outcome);
        }
    }
}

/// What the receiver gets, rendered once: every retry re-sends the same
/// bytes.
pub enum Body {
    Ready(Bytes),
    /// Rendered when the parcel leaves the queue, so that producers never
    /// spend time on it.
    Later(Box<dyn FnOnce() -> Bytes + Send>),
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Ready(b) => write!(f, "Ready({} bytes)", b.len()),
            Body::Later(_) => f.write_str("Later"),
        }
    }
}

/// A body on its way to one receiver.
#[derive(Debug)]
pub struct Parcel {
    pub lane: Lane,
    /// Only the newest parcel of its lane matters (see the module docs).
    pub latest: bool,
    pub body: Body,
    /// What it is, for log lines: a title (text from requests included:
    /// always logged escaped).
    pub what: String,
    /// The notifications it carries (none for a periodic re-send).
    pub notices: Vec<Tracked>,
}

struct Entry {
    parcel: Parcel,
    /// Held while the parcel waits; released when it leaves the queue.
    permit: OwnedSemaphorePermit,
}

/// The producers' side of one sink's queue. Cheap to clone.
#[derive(Clone)]
pub struct Queue {
    tx: mpsc::UnboundedSender<Entry>,
    permits: Arc<Semaphore>,
    capacity: usize,
    metrics: Arc<DeliveryMetrics>,
}

impl Queue {
    /// Queues `parcel` without waiting. On a full (or shut down) queue,
    /// the parcel is handed back, its notifications are counted `dropped`,
    /// logged and told `Failed`.
    pub fn push(&self, parcel: Parcel) -> Result<(), Parcel> {
        let why = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                // Before the send, so the task's decrement never comes first.
                self.metrics.queue_depth.increment(1.0);
                match self.tx.send(Entry { parcel, permit }) {
                    Ok(()) => return Ok(()),
                    Err(mpsc::error::SendError(entry)) => {
                        self.metrics.queue_depth.decrement(1.0);
                        return Err(self.refuse(entry.parcel, "alert queue closed"));
                    }
                }
            }
            Err(tokio::sync::TryAcquireError::Closed) => "alert queue closed",
            Err(tokio::sync::TryAcquireError::NoPermits) => "alert queue full",
        };
        Err(self.refuse(parcel, why))
    }

    fn refuse(&self, mut parcel: Parcel, why: &str) -> Parcel {
        error!(
            sink = self.metrics.sink.label(),
            what = ?parcel.what,
            capacity = self.capacity,
            "{why}: notification dropped"
        );
        for t in parcel.notices.drain(..) {
            self.metrics.count(AlertOutcome::Dropped, t.kind);
            if let Some(done) = t.done {
                let _ = done.send(Outcome::Failed(format!("{why}: dropped")));
            }
        }
        parcel
    }
}

/// Creates a queue of `capacity` waiting parcels, and the task that
/// delivers them through `transport`; the task runs until `stop` fires and
/// the drain ends, or every queue handle is dropped.
pub fn start<T: Transport>(
    transport: T,
    policy: Policy,
    capacity: usize,
    drain_for: Duration,
    metrics: Arc<DeliveryMetrics>,
    stop: oneshot::Receiver<()>,
) -> (Queue, impl std::future::Future<Output = ShutdownReport>) {
    let capacity = capacity.max(1);
    let (tx, rx) = mpsc::unbounded_channel();
    let permits = Arc::new(Semaphore::new(capacity));
    let queue = Queue {
        tx,
        permits: permits.clone(),
        capacity,
        metrics: metrics.clone(),
    };
    let dispatcher = Dispatcher {
        transport: Arc::new(transport),
        policy,
        metrics,
        lanes: HashMap::new(),
        turns: VecDeque::new(),
        turn_taken: None,
        running: JoinSet::new(),
        report: ShutdownReport::default(),
        draining: false,
    };
    (queue, dispatcher.run(rx, stop, permits, drain_for))
}

#[derive(Default)]
struct LaneState {
    /// Waiting parcels keep their permits: they count against the queue.
    waiting: VecDeque<Entry>,
    /// The parcel under way, and the token that stops its retries. Kept
    /// here, not in its task, so that a delivery cut off at the drain
    /// deadline is still reported.
    busy: Option<(Parcel, CancellationToken)>,
    /// Waiting for its turn at a first attempt (in `Dispatcher::turns`).
    in_turn: bool,
}

/// A delivery that ended, back from its task.
struct Done {
    lane: Lane,
    result: Delivered,
}

struct Dispatcher<T> {
    transport: Arc<T>,
    policy: Policy,
    metrics: Arc<DeliveryMetrics>,
    lanes: HashMap<Lane, LaneState>,
    /// Lanes whose next parcel waits for its first attempt, in order.
    turns: VecDeque<Lane>,
    /// Ends when the first attempt under way has ended; `None` when no
    /// first attempt is under way.
    turn_taken: Option<oneshot::Receiver<()>>,
    running: JoinSet<Done>,
    report: ShutdownReport,
    draining: bool,
}

impl<T: Transport> Dispatcher<T> {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Entry>,
        mut stop: oneshot::Receiver<()>,
        permits: Arc<Semaphore>,
        drain_for: Duration,
    ) -> ShutdownReport {
        // Disarmed once fired, or once the handle is gone without a
        // shutdown: then keep delivering until every queue is dropped.
        let mut stop_armed = true;
        let mut deadline: Option<Instant> = None;
        let mut open = true;
        loop {
            if !open && self.lanes.is_empty() {
                break;
            }
            let until = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
            tokio::select! {
                biased;
                signal = &mut stop, if stop_armed => {
                    stop_armed = false;
                    if signal.is_ok() {
                        // Stop accepting: later pushes are refused and
                        // counted, what is queued keeps going out.
                        permits.close();
                        rx.close();
                        deadline = Some(Instant::now() + drain_for);
                        self.draining = true;
                        info!(
                            sink = self.metrics.sink.label(),
                            queued = rx.len(),
                            deadline_secs = drain_for.as_secs_f64(),
                            "alert delivery: draining the queue before shutdown"
                        );
                    }
                }
                Some(done) = self.running.join_next(), if !self.running.is_empty() => {
                    match done {
                        Ok(done) => self.finished(done),
                        Err(e) => error!(error = %e, "alert delivery task ended abnormally"),
                    }
                }
                // Answered, failed or timed out, or its task is gone: the
                // next first attempt may start.
                _ = async { self.turn_taken.as_mut().expect("a turn").await }, if self.turn_taken.is_some() => {
                    self.turn_taken = None;
                    self.next_turn();
                }
                entry = rx.recv(), if open => match entry {
                    Some(entry) => self.accept(entry),
                    None => open = false,
                },
                _ = tokio::time::sleep_until(until), if deadline.is_some() => break,
            }
        }
        // Only reached with work left when the drain deadline passed.
        self.running.abort_all();
        while self.running.join_next().await.is_some() {}
        while let Ok(entry) = rx.try_recv() {
            self.metrics.queue_depth.decrement(1.0);
            self.undelivered(entry.parcel);
        }
        let left: Vec<Parcel> = self
            .lanes
            .drain()
            .flat_map(|(_, l)| {
                let waiting = l.waiting.into_iter().map(|e| {
                    self.metrics.queue_depth.decrement(1.0);
                    e.parcel
                });
                l.busy.map(|(p, _)| p).into_iter().chain(waiting)
            })
            .collect();
        for parcel in left {
            self.undelivered(parcel);
        }
        if self.draining {
            info!(
                sink = self.metrics.sink.label(),
                delivered = self.report.delivered,
                failed = self.report.failed,
                undelivered = self.report.undelivered,
                "alert delivery stopped"
            );
        }
        self.report
    }

    /// A new parcel joins its lane.
    fn accept(&mut self, mut entry: Entry) {
        let key = entry.parcel.lane.clone();
        let lane = self.lanes.entry(key.clone()).or_default();
        if entry.parcel.latest {
            // Older waiting states are replaced (and leave the queue);
            // their notifications ride along with this one.
            let mut carried: Vec<Tracked> = Vec::new();
            for old in lane.waiting.drain(..) {
                self.metrics.queue_depth.decrement(1.0);
                carried.extend(old.parcel.notices);
            }
            carried.append(&mut entry.parcel.notices);
            entry.parcel.notices = carried;
            if let Some((_, under_way)) = &lane.busy {
                under_way.cancel();
            }
        }
        lane.waiting.push_back(entry);
        if lane.busy.is_none() && !lane.in_turn {
            self.wait_turn(key);
        }
    }

    /// `lane`'s next parcel (if any) takes its turn at a first attempt.
    fn wait_turn(&mut self, lane: Lane) {
        let Some(state) = self.lanes.get_mut(&lane) else {
            return;
        };
        if state.waiting.is_empty() {
            self.lanes.remove(&lane);
            return;
        }
        state.in_turn = true;
        self.turns.push_back(lane);
        if self.turn_taken.is_none() {
            self.next_turn();
        }
    }

    /// Starts the first attempt of the lane whose turn it is.
    fn next_turn(&mut self) {
        while self.turn_taken.is_none() {
            let Some(lane) = self.turns.pop_front() else {
                return;
            };
            self.start(lane);
        }
    }

    /// Starts the next parcel of `lane`, rendering it first if need be.
    fn start(&mut self, lane: Lane) {
        let Some(state) = self.lanes.get_mut(&lane) else {
            return;
        };
        state.in_turn = false;
        let Some(Entry { mut parcel, permit }) = state.waiting.pop_front() else {
            self.lanes.remove(&lane);
            return;
        };
        // Under way, it no longer waits: its room in the queue is free.
        drop(permit);
        self.metrics.queue_depth.decrement(1.0);
        let body = match std::mem::replace(&mut parcel.body, Body::Ready(Bytes::new())) {
            Body::Ready(bytes) => bytes,
            Body::Later(render) => render(),
        };
        parcel.body = Body::Ready(body.clone());
        let what = parcel.what.clone();
        let superseded = CancellationToken::new();
        state.busy = Some((parcel, superseded.clone()));
        let transport = self.transport.clone();
        let policy = self.policy;
        let sink = self.metrics.sink.label();
        let (first_over, turn_taken) = oneshot::channel();
        self.turn_taken = Some(turn_taken);
        self.running.spawn(async move {
            let result = deliver(
                transport.as_ref(),
                &policy,
                &body,
                &what,
                sink,
                &superseded,
                Some(first_over),
            )
            .await;
            Done { lane, result }
        });
    }

    fn finished(&mut self, done: Done) {
        let Done { lane, result } = done;
        let sink = self.metrics.sink.label();
        let Some(state) = self.lanes.get_mut(&lane) else {
            return;
        };
        let Some((parcel, _)) = state.busy.take() else {
            return;
        };
        match result {
            Delivered::Sent(attempts) => {
                info!(sink, what = ?parcel.what, attempts, "alert sent");
                for t in parcel.notices {
                    self.report.delivered += u64::from(self.draining);
                    t.finish(Outcome::Sent, &self.metrics);
                }
            }
            Delivered::Failed(reason) => {
                error!(sink, what = ?parcel.what, %reason, "alert not delivered");
                for t in parcel.notices {
                    self.report.failed += u64::from(self.draining);
                    t.finish(Outcome::Failed(reason.clone()), &self.metrics);
                }
            }
            Delivered::Superseded => match state.waiting.back_mut() {
                Some(newest) => {
                    let mut carried = parcel.notices;
                    carried.append(&mut newest.parcel.notices);
                    newest.parcel.notices = carried;
                }
                None => {
                    for t in parcel.notices {
                        t.finish(
                            Outcome::Failed("replaced by a newer state".into()),
                            &self.metrics,
                        );
                    }
                }
            },
        }
        self.wait_turn(lane);
    }

    fn undelivered(&mut self, parcel: Parcel) {
        if parcel.notices.is_empty() {
            // A periodic re-send: nothing anyone waits for.
            return;
        }
        error!(
            sink = self.metrics.sink.label(),
            what = ?parcel.what,
            "alert undelivered: shutdown deadline passed"
        );
        for t in parcel.notices {
            self.report.undelivered += 1;
            t.finish(
                Outcome::Failed("undelivered: shutdown deadline passed".into()),
                &self.metrics,
            );
        }
    }
}
