//! Choosing which of a stream's inputs feeds the segmenter.
//!
//! Inputs are backups in priority order. Every input runs all the time (hot
//! standby): the ones not playing keep a short backlog of what they received,
//! stamped with its arrival time. When the playing input is lost (an error,
//! its end, or silence for `timeout_ms`), the best live backup takes over and
//! its backlog is replayed from the instant the lost input's data stopped, so
//! the tape's gap is the wait for the backup's next keyframe rather than the
//! detection timeout. A higher-priority input that delivers data again takes
//! over at once.
//!
//! This module is a pure state machine driven by the service loop: it never
//! reads a clock or touches the segmenter, and its tests run in microseconds.

use std::collections::VecDeque;

use bytes::Bytes;
use dvr_common::UtcMs;

/// Bytes from an input and when they arrived.
#[derive(Clone, Debug)]
pub struct Chunk {
    /// Transport-stream bytes, any alignment.
    pub data: Bytes,
    /// Wall-clock arrival time.
    pub arrival: UtcMs,
    /// The UTC the source gave the bytes' start, if any (HLS program
    /// date-time); the segmenter anchors on it instead of `arrival`.
    pub utc_hint: Option<UtcMs>,
}

/// What the service must do after an event.
#[derive(Debug)]
pub enum Action {
    /// Nothing for the segmenter.
    None,
    /// Feed this chunk of the playing input.
    Push(Chunk),
    /// End the current run (the next segment is a discontinuity), then feed
    /// `replay` from the new input.
    Switch {
        /// The input that was playing, if any.
        from: Option<usize>,
        /// The input that plays now.
        to: usize,
        /// Backlog of `to` from where `from` stopped, oldest first.
        replay: Vec<Chunk>,
    },
    /// The playing input is lost and no other input is alive.
    Lost {
        /// The input that was playing.
        from: usize,
    },
}

#[derive(Debug, Default)]
struct InputState {
    last_data: Option<UtcMs>,
    /// An error or silence was noticed since the last data.
    lost: bool,
    ended: bool,
    backlog: VecDeque<Chunk>,
    backlog_bytes: usize,
}

/// The failover state of one stream.
#[derive(Debug)]
pub struct Failover {
    timeout_ms: i64,
    backlog_ms: i64,
    max_backlog_bytes: usize,
    inputs: Vec<InputState>,
    active: Option<usize>,
}

impl Failover {
    /// `inputs` inputs in priority order; an input is lost after `timeout_ms`
    /// without data. Backups keep `timeout_ms` plus one second of backlog, at
    /// most `max_backlog_bytes` each.
    pub fn new(inputs: usize, timeout_ms: i64, max_backlog_bytes: usize) -> Self {
        Failover {
            timeout_ms,
            backlog_ms: timeout_ms + 1000,
            max_backlog_bytes,
            inputs: (0..inputs).map(|_| InputState::default()).collect(),
            active: None,
        }
    }

    /// The input playing now.
    pub fn active(&self) -> Option<usize> {
        self.active
    }

    /// Whether every input has ended for good.
    pub fn all_ended(&self) -> bool {
        self.inputs.iter().all(|i| i.ended)
    }

    fn alive(&self, index: usize, now: UtcMs) -> bool {
        self.inputs.get(index).is_some_and(|s| {
            !s.ended && !s.lost && s.last_data.is_some_and(|t| now.0 - t.0 <= self.timeout_ms)
        })
    }

    /// Data arrived from input `index`.
    pub fn on_data(&mut self, index: usize, chunk: Chunk) -> Action {
        let now = chunk.arrival;
        let Some(state) = self.inputs.get_mut(index) else {
            return Action::None;
        };
        state.last_data = Some(chunk.arrival);
        state.lost = false;
        if self.active == Some(index) {
            return Action::Push(chunk);
        }
        state.backlog_bytes += chunk.data.len();
        state.backlog.push_back(chunk);
        self.trim(index, now);
        let better = self.active.is_none_or(|active| index < active);
        if better {
            self.switch_to(index)
        } else {
            Action::None
        }
    }

    /// Input `index` failed (it will retry) or, with `ended`, stopped for good.
    /// Returns whether it was considered alive before.
    pub fn on_error(&mut self, index: usize, ended: bool, now: UtcMs) -> (bool, Action) {
        let was_alive = self.alive(index, now);
        let Some(state) = self.inputs.get_mut(index) else {
            return (false, Action::None);
        };
        state.lost = true;
        state.ended |= ended;
        state.backlog.clear();
        state.backlog_bytes = 0;
        let action = if self.active == Some(index) {
            self.fail_over(index, now)
        } else {
            Action::None
        };
        (was_alive, action)
    }

    /// Periodic check: the playing input is lost after `timeout_ms` of silence.
    pub fn on_tick(&mut self, now: UtcMs) -> Action {
        for index in 0..self.inputs.len() {
            self.trim(index, now);
        }
        match self.active {
            Some(active) if !self.alive(active, now) => {
                self.inputs[active].lost = true;
                self.fail_over(active, now)
            }
            _ => Action::None,
        }
    }

    fn fail_over(&mut self, from: usize, now: UtcMs) -> Action {
        let next = (0..self.inputs.len()).find(|&i| i != from && self.alive(i, now));
        match next {
            Some(to) => self.switch_to(to),
            None => {
                self.active = None;
                Action::Lost { from }
            }
        }
    }

    fn switch_to(&mut self, to: usize) -> Action {
        let from = self.active;
        // Replay from where the previous input's data stopped.
        let cutoff = from.and_then(|f| self.inputs[f].last_data);
        if let Some(f) = from {
            self.inputs[f].backlog.clear();
            self.inputs[f].backlog_bytes = 0;
        }
        let state = &mut self.inputs[to];
        let replay = state
            .backlog
            .drain(..)
            .filter(|c| cutoff.is_none_or(|cut| c.arrival > cut))
            .collect();
        state.backlog_bytes = 0;
        self.active = Some(to);
        Action::Switch { from, to, replay }
    }

    fn trim(&mut self, index: usize, now: UtcMs) {
        let (backlog_ms, max_bytes) = (self.backlog_ms, self.max_backlog_bytes);
        let state = &mut self.inputs[index];
        while let Some(front) = state.backlog.front() {
            if now.0 - front.arrival.0 <= backlog_ms && state.backlog_bytes <= max_bytes {
                break;
            }
            state.backlog_bytes -= front.data.len();
            state.backlog.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(at: i64) -> Chunk {
        Chunk {
            data: Bytes::from_static(&[0x47; 188]),
            arrival: UtcMs(at),
            utc_hint: None,
        }
    }

    fn switched(action: &Action) -> Option<(Option<usize>, usize, Vec<i64>)> {
        match action {
            Action::Switch { from, to, replay } => {
                Some((*from, *to, replay.iter().map(|c| c.arrival.0).collect()))
            }
            _ => None,
        }
    }

    #[test]
    fn primary_plays_backup_waits_then_takes_over_from_where_primary_stopped() {
        let mut f = Failover::new(2, 1000, 1 << 20);
        assert_eq!(switched(&f.on_data(0, chunk(0))), Some((None, 0, vec![0])));
        for t in (100..=2000).step_by(100) {
            assert!(matches!(f.on_data(0, chunk(t)), Action::Push(_)));
            assert!(matches!(f.on_data(1, chunk(t + 10)), Action::None));
        }
        // The primary goes silent at 2000; the backup keeps sending.
        for t in (2100..=2900).step_by(100) {
            assert!(matches!(f.on_data(1, chunk(t + 10)), Action::None));
            assert!(matches!(f.on_tick(UtcMs(t + 10)), Action::None));
        }
        f.on_data(1, chunk(3010));
        let action = f.on_tick(UtcMs(3010));
        let (from, to, replay) = switched(&action).unwrap();
        assert_eq!((from, to), (Some(0), 1));
        assert_eq!(replay.first(), Some(&2010), "replay starts after 2000");
        assert_eq!(replay.last(), Some(&3010));
        assert!(matches!(f.on_data(1, chunk(3110)), Action::Push(_)));
        // The primary returns: it takes over at its first chunk.
        let (from, to, replay) = switched(&f.on_data(0, chunk(5000))).unwrap();
        assert_eq!((from, to, replay), (Some(1), 0, vec![5000]));
    }

    #[test]
    fn errors_fail_over_at_once_and_total_loss_is_reported() {
        let mut f = Failover::new(3, 4000, 1 << 20);
        f.on_data(1, chunk(0));
        f.on_data(2, chunk(0));
        assert_eq!(f.active(), Some(1));
        let (was_alive, action) = f.on_error(1, false, UtcMs(10));
        assert!(was_alive);
        assert_eq!(switched(&action).map(|s| (s.0, s.1)), Some((Some(1), 2)));
        let (_, action) = f.on_error(2, true, UtcMs(20));
        assert!(matches!(action, Action::Lost { from: 2 }));
        assert_eq!(f.active(), None);
        assert!(!f.all_ended());
        f.on_error(0, true, UtcMs(30));
        f.on_error(1, true, UtcMs(30));
        assert!(f.all_ended());
    }

    #[test]
    fn backlog_is_bounded_in_time_and_bytes() {
        let mut f = Failover::new(2, 1000, 188 * 3);
        f.on_data(0, chunk(0));
        for t in 0..10 {
            f.on_data(1, chunk(t));
        }
        assert_eq!(f.inputs[1].backlog.len(), 3);
        f.on_data(0, chunk(5000));
        f.on_tick(UtcMs(5000));
        assert!(f.inputs[1].backlog.is_empty());
        assert_eq!(f.inputs[1].backlog_bytes, 0);
    }
}
