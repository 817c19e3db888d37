//! The WebSocket between the gateway and one receiver: two FIFO queues with
//! delivery times. A WebSocket never reorders or loses a message while it
//! is up, so a message is never delivered before one sent earlier the same
//! way, and a cut connection loses everything from some point on.

use std::collections::VecDeque;
use std::time::Duration;

use anpx_core::WsMessage;

/// Which way a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dir {
    /// Gateway to receiver.
    Down,
    /// Receiver to gateway.
    Up,
}

/// Latency of one link.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub base: Duration,
    pub jitter: Duration,
    /// Chance per thousand messages of a stall (a retransmission, a GC
    /// pause) that holds back everything behind it.
    pub stall_per_mille: u32,
    pub stall_max: Duration,
}

impl Latency {
    pub fn sample(&self, rng: &mut fastrand::Rng) -> Duration {
        let mut d = self.base + self.jitter.mul_f64(rng.f64());
        if rng.u32(..1000) < self.stall_per_mille {
            d += self.stall_max.mul_f64(rng.f64());
        }
        d
    }
}

/// One connection's two directions.
#[derive(Debug)]
pub struct Wire {
    down: VecDeque<(Duration, WsMessage)>,
    up: VecDeque<(Duration, WsMessage)>,
    /// Set once the connection silently stops carrying anything (a
    /// half-open TCP connection); only liveness checks can notice.
    cut: bool,
    pub latency: Latency,
}

impl Wire {
    pub fn new(latency: Latency) -> Self {
        Wire {
            down: VecDeque::new(),
            up: VecDeque::new(),
            cut: false,
            latency,
        }
    }

    fn queue(&mut self, dir: Dir) -> &mut VecDeque<(Duration, WsMessage)> {
        match dir {
            Dir::Down => &mut self.down,
            Dir::Up => &mut self.up,
        }
    }

    /// Sends `message`, to arrive `delay` from `now` but never before the
    /// message sent ahead of it.
    pub fn send(&mut self, dir: Dir, now: Duration, delay: Duration, message: WsMessage) {
        if self.cut {
            return;
        }
        let queue = self.queue(dir);
        let at = queue
            .back()
            .map_or(now + delay, |(last, _)| (*last).max(now + delay));
        queue.push_back((at, message));
    }

    /// When the next message the `dir` way arrives.
    pub fn next_at(&self, dir: Dir) -> Option<Duration> {
        match dir {
            Dir::Down => self.down.front(),
            Dir::Up => self.up.front(),
        }
        .map(|(at, _)| *at)
    }

    /// How many messages are on their way the `dir` way.
    pub fn queued(&self, dir: Dir) -> usize {
        match dir {
            Dir::Down => self.down.len(),
            Dir::Up => self.up.len(),
        }
    }

    pub fn pop(&mut self, dir: Dir) -> Option<WsMessage> {
        self.queue(dir).pop_front().map(|(_, m)| m)
    }

    pub fn cut(&mut self) {
        self.cut = true;
        self.down.clear();
        self.up.clear();
    }
}

/// A message as a log line shows it: kind and size, not content.
pub fn describe(message: &WsMessage) -> String {
    match message {
        WsMessage::Binary(b) => format!("bin({})", b.len()),
        WsMessage::Text(t) => format!("text({t})"),
        WsMessage::Ping(_) => "ws-ping".to_owned(),
        WsMessage::Pong(_) => "ws-pong".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_message_holds_back_the_ones_behind_it() {
        let latency = Latency {
            base: Duration::ZERO,
            jitter: Duration::ZERO,
            stall_per_mille: 0,
            stall_max: Duration::ZERO,
        };
        let mut w = Wire::new(latency);
        let ms = Duration::from_millis;
        w.send(Dir::Up, ms(0), ms(50), WsMessage::Text("a".into()));
        w.send(Dir::Up, ms(1), ms(1), WsMessage::Text("b".into()));
        assert_eq!(w.next_at(Dir::Up), Some(ms(50)));
        assert_eq!(w.pop(Dir::Up), Some(WsMessage::Text("a".into())));
        assert_eq!(w.next_at(Dir::Up), Some(ms(50)));
        w.cut();
        w.send(Dir::Down, ms(2), ms(1), WsMessage::Text("c".into()));
        assert_eq!((w.next_at(Dir::Up), w.next_at(Dir::Down)), (None, None));
    }
}
