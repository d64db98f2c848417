//! The request gate a run's S3 clients share: every HTTP request they send (a GET, a LIST page, a
//! PUT, each retry of one) waits for a permit, and the number of permits follows what S3 answers.
//! It starts at `--concurrency` and binds only once S3 asks to slow down: a `503 SlowDown` or a
//! `429` halves it, from what was in flight, at most once for the requests sent since the last
//! cut (the answers to requests sent before it say nothing new); each round of other answers (as
//! many as the limit) raises it by one again, up to `--concurrency` (additive increase,
//! multiplicative decrease, as TCP's congestion control does: at S3's 30 ms a round, about 30
//! more requests at once a second). S3 limits each key prefix to some thousands of requests a
//! second, and sending a thousand at once to one prefix of small objects exceeds it: without the
//! gate, every request retried on its own schedule, and the retries kept the rate above the
//! limit.
//!
//! A permit is held until the answer's status line arrives, not while its body streams: what S3
//! limits is requests, and the bytes in flight are bounded by the fetch budget elsewhere.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use object_store::ClientOptions;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService, ReqwestConnector,
};

/// The gate, shared by clones (one per run: the run's store options hold it).
#[derive(Clone)]
pub struct RequestGate(Arc<Inner>);

struct Inner {
    permits: tokio::sync::Semaphore,
    state: Mutex<State>,
}

impl Inner {
    /// One more permit (a raised limit, or a request's given back): it pays off a permit owed
    /// first, if any.
    fn add_permit(&self, s: &mut State) {
        if s.debt > 0 {
            s.debt -= 1;
        } else {
            self.permits.add_permits(1);
        }
    }
}

/// Invariant: permits available + requests in flight = limit + debt.
#[derive(Debug)]
struct State {
    /// Requests that may be in flight at once now.
    limit: usize,
    /// The most `limit` grows to.
    cap: usize,
    /// Permits to keep when they come back: the limit was cut below what was in flight.
    debt: usize,
    in_flight: usize,
    /// Answers that did not ask to slow down since the limit last changed.
    successes: usize,
    /// When the limit was last cut: an answer to a request sent before that does not cut it again.
    last_cut: Option<Instant>,
    lowest: usize,
    throttled: u64,
}

impl std::fmt::Debug for RequestGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.0.state.lock().expect("not poisoned");
        f.debug_struct("RequestGate").field("limit", &s.limit).field("cap", &s.cap).finish()
    }
}

impl Default for RequestGate {
    /// A gate of `--concurrency`'s default.
    fn default() -> Self {
        RequestGate::new(1024)
    }
}

/// What a request's answer says to the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// An answer asking to slow down: `503 Service Unavailable` (S3's `SlowDown`) or `429`.
    SlowDown,
    /// Any other answer, error statuses included: the store took the request.
    Taken,
    /// No answer (a connection failure, a timeout): says nothing of the request rate.
    None,
}

impl Answer {
    /// The answer of an HTTP status code.
    pub(crate) fn of(status: u16) -> Answer {
        match status {
            503 | 429 => Answer::SlowDown,
            _ => Answer::Taken,
        }
    }
}

/// A request's permit: given back when dropped (kept instead while the limit is below what is in
/// flight).
pub(crate) struct Pass {
    gate: RequestGate,
    sent: Instant,
}

impl RequestGate {
    /// A gate letting at most `cap` requests through at once, as long as nobody asks to slow down.
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        let state =
            State { limit: cap, cap, debt: 0, in_flight: 0, successes: 0, last_cut: None, lowest: cap, throttled: 0 };
        RequestGate(Arc::new(Inner { permits: tokio::sync::Semaphore::new(cap), state: Mutex::new(state) }))
    }

    /// Waits for a permit to send a request.
    pub(crate) async fn enter(&self) -> Pass {
        self.0.permits.acquire().await.expect("the semaphore is never closed").forget();
        self.0.state.lock().expect("not poisoned").in_flight += 1;
        Pass { gate: self.clone(), sent: Instant::now() }
    }

    /// The lowest the limit went, if it was ever cut.
    pub(crate) fn lowest(&self) -> Option<usize> {
        let s = self.0.state.lock().expect("not poisoned");
        (s.last_cut.is_some()).then_some(s.lowest)
    }

    /// Answers that asked to slow down.
    pub(crate) fn throttled(&self) -> u64 {
        self.0.state.lock().expect("not poisoned").throttled
    }
}

impl Pass {
    /// Tells the gate what the request's answer was.
    pub(crate) fn answered(&self, answer: Answer) {
        let inner = &self.gate.0;
        let mut s = inner.state.lock().expect("not poisoned");
        match answer {
            Answer::None => {}
            Answer::SlowDown => {
                s.throttled += 1;
                if s.last_cut.is_some_and(|cut| self.sent < cut) {
                    return;
                }
                let limit = (s.limit.min(s.in_flight) / 2).max(1);
                if limit < s.limit {
                    let cut = s.limit - limit;
                    // Permits nobody holds are taken back now, the rest as they come back.
                    let idle = inner.permits.forget_permits(cut);
                    s.debt += cut - idle;
                    tracing::warn!(
                        from = s.limit,
                        to = limit,
                        "S3 asks to slow down: fewer requests at once (raised again as they succeed)"
                    );
                    s.limit = limit;
                    s.lowest = s.lowest.min(limit);
                }
                s.last_cut = Some(Instant::now());
                s.successes = 0;
            }
            Answer::Taken => {
                s.successes += 1;
                if s.successes >= s.limit && s.limit < s.cap {
                    s.limit += 1;
                    s.successes = 0;
                    inner.add_permit(&mut s);
                }
            }
        }
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        let inner = &self.gate.0;
        let mut s = inner.state.lock().expect("not poisoned");
        s.in_flight -= 1;
        inner.add_permit(&mut s);
    }
}

/// object_store's HTTP client (reqwest) with every request through `gate`.
#[derive(Debug)]
pub(crate) struct GatedConnector(pub RequestGate);

impl HttpConnector for GatedConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let client = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(Gated { client, gate: self.0.clone() }))
    }
}

#[derive(Debug)]
struct Gated {
    client: HttpClient,
    gate: RequestGate,
}

#[async_trait::async_trait]
impl HttpService for Gated {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let pass = self.gate.enter().await;
        let answer = self.client.execute(req).await;
        pass.answered(answer.as_ref().map_or(Answer::None, |r| Answer::of(r.status().as_u16())));
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(gate: &RequestGate) -> (usize, usize, usize, usize) {
        let s = gate.0.state.lock().unwrap();
        (s.limit, s.debt, s.in_flight, gate.0.permits.available_permits())
    }

    fn enter(gate: &RequestGate) -> Pass {
        futures::executor::block_on(gate.enter())
    }

    /// Without a slow-down the gate is the cap; a slow-down halves what was in flight, once for
    /// the requests sent before it, and the permits held above the new limit are kept as they
    /// come back.
    #[test]
    fn a_slow_down_halves_what_was_in_flight_once_per_round() {
        let gate = RequestGate::new(64);
        let passes: Vec<Pass> = (0..20).map(|_| enter(&gate)).collect();
        assert_eq!(state(&gate), (64, 0, 20, 44));
        passes[0].answered(Answer::SlowDown);
        // Half of the 20 in flight; the 44 idle permits and 10 of those held are taken back.
        assert_eq!(state(&gate), (10, 10, 20, 0));
        // The others' answers were to requests sent before the cut: no second cut.
        passes[1].answered(Answer::SlowDown);
        passes[2].answered(Answer::SlowDown);
        assert_eq!(state(&gate).0, 10);
        assert_eq!(gate.throttled(), 3);
        drop(passes);
        assert_eq!(state(&gate), (10, 0, 0, 10));
        // A request sent after the cut that is throttled cuts again, from the limit down.
        let late: Vec<Pass> = (0..10).map(|_| enter(&gate)).collect();
        assert_eq!(gate.0.permits.available_permits(), 0);
        late[9].answered(Answer::SlowDown);
        assert_eq!(state(&gate), (5, 5, 10, 0));
        drop(late);
        assert_eq!(state(&gate), (5, 0, 0, 5));
        assert_eq!(gate.lowest(), Some(5));
    }

    /// Each `limit` answers taken raise the limit by one, up to the cap; the permits follow.
    #[test]
    fn answers_taken_raise_the_limit_up_to_the_cap() {
        let gate = RequestGate::new(4);
        assert_eq!(gate.lowest(), None);
        let pass = enter(&gate);
        pass.answered(Answer::SlowDown);
        drop(pass);
        assert_eq!(state(&gate), (1, 0, 0, 1));
        let mut limits = Vec::new();
        for _ in 0..12 {
            let pass = enter(&gate);
            pass.answered(Answer::Taken);
            drop(pass);
            limits.push(state(&gate).0);
        }
        // One answer at a limit of 1, two at 2, three at 3; then the cap.
        assert_eq!(limits, [2, 2, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4]);
        assert_eq!(state(&gate), (4, 0, 0, 4));
        // Answers without a status say nothing.
        let pass = enter(&gate);
        pass.answered(Answer::None);
        assert_eq!(state(&gate), (4, 0, 1, 3));
        assert_eq!(gate.lowest(), Some(1));
    }

    /// A raise while permits are still owed pays one off instead of adding one.
    #[test]
    fn a_raise_while_owing_pays_off_the_debt() {
        let gate = RequestGate::new(8);
        let passes: Vec<Pass> = (0..8).map(|_| enter(&gate)).collect();
        passes[0].answered(Answer::SlowDown);
        assert_eq!(state(&gate), (4, 4, 8, 0));
        // Requests sent before the cut still count as answers taken.
        for p in &passes[1..5] {
            p.answered(Answer::Taken);
        }
        assert_eq!(state(&gate), (5, 3, 8, 0));
        drop(passes);
        assert_eq!(state(&gate), (5, 0, 0, 5));
    }

    #[test]
    fn statuses_that_ask_to_slow_down() {
        assert_eq!(Answer::of(503), Answer::SlowDown);
        assert_eq!(Answer::of(429), Answer::SlowDown);
        assert_eq!(Answer::of(500), Answer::Taken);
        assert_eq!(Answer::of(404), Answer::Taken);
        assert_eq!(Answer::of(200), Answer::Taken);
    }
}
