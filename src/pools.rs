//! Pools: the bounded set of pool labels, and which server belongs to which.
//!
//! Pool names arrive from requests (`X-App-Pool`), so any sender could invent
//! new ones. Known names come from `POOLS`; everything else folds into three
//! fixed labels, which keeps metric series and window memory bounded:
//! `other` (a name not in `POOLS`), `none` (nginx answered itself) and
//! `unknown` (an attempt at a server whose pool is not known yet).
//!
//! Attempts name a server, not a pool. The address map is learned from
//! responses that carry their pool, or given (`POOL_ADDRS`); it is a small
//! vector searched linearly, which beats hashing for the handful of servers a
//! pair of pools has, and it is capped so hostile input cannot grow it.
//!
//! Once learned, a server stays in its pool until [`MOVE_AFTER`] responses
//! in a row name another one: a container re-created with a reused address
//! gets there within a second of traffic, a forged datagram or a few never
//! do. Every response that disagrees is reported as a conflict; pinned
//! (`POOL_ADDRS`) servers never move.

/// Index of a pool label: known pools first, then [`PoolSet::other`],
/// [`PoolSet::none`], [`PoolSet::unknown`].
pub type PoolId = usize;

/// Most server addresses remembered; past this, new addresses stay `unknown`.
pub const MAX_ADDRS: usize = 256;

/// Responses in a row that must name another pool before a learned server
/// moves to it.
pub const MOVE_AFTER: u32 = 20;

/// The pool labels in force.
#[derive(Debug, Clone)]
pub struct PoolSet {
    labels: Vec<String>,
    known: usize,
}

impl PoolSet {
    /// `names` must be non-empty, distinct, and not one of the reserved labels
    /// (checked by the settings parser).
    pub fn new(names: &[String]) -> PoolSet {
        let mut labels = names.to_vec();
        labels.extend(["other", "none", "unknown"].map(String::from));
        PoolSet {
            labels,
            known: names.len(),
        }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn known(&self) -> usize {
        self.known
    }

    pub fn other(&self) -> PoolId {
        self.known
    }

    pub fn none(&self) -> PoolId {
        self.known + 1
    }

    pub fn unknown(&self) -> PoolId {
        self.known + 2
    }

    pub fn label(&self, id: PoolId) -> &str {
        &self.labels[id]
    }

    /// All labels, in id order.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.labels.iter().map(String::as_str)
    }

    /// The id of a known pool name, if it is one.
    pub fn find(&self, name: &str) -> Option<PoolId> {
        self.labels[..self.known].iter().position(|l| l == name)
    }

    /// Classify the `pool` field of a record.
    pub fn classify(&self, name: &str) -> PoolId {
        if name.is_empty() {
            self.none()
        } else {
            self.find(name).unwrap_or(self.other())
        }
    }
}

/// Where an address → pool entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// `POOL_ADDRS`: never overwritten by what requests say.
    Configured,
    /// Seen in a response that named its pool.
    Learned,
}

#[derive(Debug, Clone)]
struct Entry {
    addr: Box<str>,
    pool: PoolId,
    source: Source,
    /// Another pool the latest responses named, and how many in a row.
    claim: Option<(PoolId, u32)>,
}

/// What [`AddrMap::learn`] made of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// A server not seen before, now in the pool named.
    New,
    /// The pool it was already in.
    Same,
    /// Another pool than its own, which it keeps.
    Conflict { pool: PoolId },
    /// Another pool, named by the last [`MOVE_AFTER`] responses in a row:
    /// it has moved there from `from`.
    Moved { from: PoolId },
    /// A server not seen before, but the map is full: it stays unknown.
    Full,
}

/// Server address → pool.
#[derive(Debug, Clone, Default)]
pub struct AddrMap {
    entries: Vec<Entry>,
    full_warned: bool,
    /// Counts changes of an address's pool (new or moved), so a reader can
    /// tell cheaply whether the map changed since it last looked.
    generation: u64,
}

impl AddrMap {
    pub fn with_configured(pairs: impl IntoIterator<Item = (String, PoolId)>) -> AddrMap {
        AddrMap {
            entries: pairs
                .into_iter()
                .map(|(addr, pool)| Entry {
                    addr: addr.into(),
                    pool,
                    source: Source::Configured,
                    claim: None,
                })
                .collect(),
            full_warned: false,
            generation: 0,
        }
    }

    pub fn lookup(&self, addr: &str) -> Option<PoolId> {
        self.entries
            .iter()
            .find(|e| &*e.addr == addr)
            .map(|e| e.pool)
    }

    /// Take note that `addr` answered as `pool`. A learned address follows
    /// only a pool that [`MOVE_AFTER`] responses in a row name (a container
    /// re-created with a reused IP); a pinned one never moves.
    pub fn learn(&mut self, addr: &str, pool: PoolId) -> Learned {
        if let Some(e) = self.entries.iter_mut().find(|e| &*e.addr == addr) {
            if e.pool == pool {
                e.claim = None;
                return Learned::Same;
            }
            if e.source == Source::Configured {
                return Learned::Conflict { pool: e.pool };
            }
            let n = match e.claim {
                Some((claimed, n)) if claimed == pool => n + 1,
                _ => 1,
            };
            if n < MOVE_AFTER {
                e.claim = Some((pool, n));
                return Learned::Conflict { pool: e.pool };
            }
            let from = e.pool;
            e.pool = pool;
            e.claim = None;
            self.generation += 1;
            return Learned::Moved { from };
        }
        if self.entries.len() >= MAX_ADDRS {
            if !self.full_warned {
                self.full_warned = true;
                tracing::warn!(
                    max = MAX_ADDRS,
                    "address map is full; attempts at further servers count as pool=\"unknown\""
                );
            }
            return Learned::Full;
        }
        self.entries.push(Entry {
            addr: addr.into(),
            pool,
            source: Source::Learned,
            claim: None,
        });
        self.generation += 1;
        Learned::New
    }

    /// Changes so far: differs from a previous value once an address was
    /// learned or moved.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The learned addresses and their pools, for the state file. Pinned
    /// ones come from `POOL_ADDRS` at every start.
    pub fn learned(&self) -> impl Iterator<Item = (&str, PoolId)> {
        self.entries
            .iter()
            .filter(|e| e.source == Source::Learned)
            .map(|e| (&*e.addr, e.pool))
    }

    /// Learned addresses a previous run saved, as if learned again: an
    /// address `POOL_ADDRS` pins now keeps its pin, and the cap holds. A
    /// restored address moves only on [`MOVE_AFTER`] responses in a row, as
    /// before the restart, so a restart is no window for forged datagrams
    /// to teach a new map. Returns how many were taken.
    pub fn restore_learned(&mut self, saved: impl IntoIterator<Item = (String, PoolId)>) -> usize {
        let mut taken = 0;
        for (addr, pool) in saved {
            if self.entries.len() >= MAX_ADDRS || self.lookup(&addr).is_some() {
                continue;
            }
            self.entries.push(Entry {
                addr: addr.into(),
                pool,
                source: Source::Learned,
                claim: None,
            });
            taken += 1;
        }
        if taken > 0 {
            self.generation += 1;
        }
        taken
    }

    /// `(address, pool id, source)` for `/state`.
    pub fn entries(&self) -> impl Iterator<Item = (&str, PoolId, Source)> {
        self.entries.iter().map(|e| (&*e.addr, e.pool, e.source))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> PoolSet {
        PoolSet::new(&["blue".into(), "green".into()])
    }

    #[test]
    fn classify_bounds_the_labels() {
        let p = set();
        assert_eq!(p.classify("blue"), 0);
        assert_eq!(p.classify("green"), 1);
        assert_eq!(p.label(p.classify("evil-\u{1F600}")), "other");
        assert_eq!(p.label(p.classify("")), "none");
        assert_eq!(p.label(p.unknown()), "unknown");
        assert_eq!(p.len(), 5);
    }

    #[test]
    fn configured_addresses_never_move() {
        let mut m = AddrMap::with_configured([("10.0.0.2:3000".to_string(), 0)]);
        for _ in 0..10 * MOVE_AFTER {
            assert_eq!(m.learn("10.0.0.2:3000", 1), Learned::Conflict { pool: 0 });
        }
        assert_eq!(m.lookup("10.0.0.2:3000"), Some(0));
        assert_eq!(m.lookup("10.0.0.4:3000"), None);
    }

    #[test]
    fn learned_addresses_move_only_on_sustained_evidence() {
        let mut m = AddrMap::default();
        let a = "10.0.0.3:3000";
        assert_eq!(m.learn(a, 1), Learned::New);
        assert_eq!(m.learn(a, 1), Learned::Same);
        // One claim, or many interrupted by the truth, moves nothing.
        assert_eq!(m.learn(a, 0), Learned::Conflict { pool: 1 });
        assert_eq!(m.lookup(a), Some(1));
        assert_eq!(m.learn(a, 1), Learned::Same);
        for _ in 0..5 {
            for _ in 0..MOVE_AFTER - 1 {
                assert_eq!(m.learn(a, 0), Learned::Conflict { pool: 1 });
            }
            assert_eq!(m.learn(a, 1), Learned::Same);
        }
        // Claims for two different pools do not add up.
        for i in 0..MOVE_AFTER * 2 {
            let claim = if i % 2 == 0 { 0 } else { 2 };
            assert_eq!(m.learn(a, claim), Learned::Conflict { pool: 1 });
        }
        // MOVE_AFTER in a row for one pool: it moves, once.
        for _ in 0..MOVE_AFTER - 1 {
            assert_eq!(m.learn(a, 0), Learned::Conflict { pool: 1 });
        }
        assert_eq!(m.learn(a, 0), Learned::Moved { from: 1 });
        assert_eq!(m.lookup(a), Some(0));
        assert_eq!(m.learn(a, 0), Learned::Same);
    }

    #[test]
    fn restored_addresses_keep_pins_and_move_only_on_evidence() {
        let mut m = AddrMap::with_configured([("10.0.0.2:3000".to_string(), 0)]);
        let g = m.generation();
        let taken = m.restore_learned([
            ("10.0.0.2:3000".to_string(), 1),
            ("10.0.0.3:3000".to_string(), 1),
        ]);
        assert_eq!(taken, 1);
        assert_ne!(m.generation(), g);
        assert_eq!(m.lookup("10.0.0.2:3000"), Some(0), "the pin wins");
        assert_eq!(m.learned().collect::<Vec<_>>(), [("10.0.0.3:3000", 1)]);
        for _ in 0..MOVE_AFTER - 1 {
            assert_eq!(m.learn("10.0.0.3:3000", 0), Learned::Conflict { pool: 1 });
        }
    }

    #[test]
    fn map_is_capped() {
        let mut m = AddrMap::default();
        for i in 0..MAX_ADDRS + 50 {
            let learned = m.learn(&format!("10.1.{}.{}:80", i / 256, i % 256), 0);
            assert_eq!(learned == Learned::Full, i >= MAX_ADDRS);
        }
        assert_eq!(m.len(), MAX_ADDRS);
    }
}
