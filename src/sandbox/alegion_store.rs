//! Alegion's data (workflows, batches, input records) and how records progress over time.
//!
//! Statuses are computed from the clock when asked, never by background tasks: a record imported at
//! `t` is `queued` until it has had `complete_after / 2` seconds of *enabled* batch time,
//! `in-progress` until `complete_after`, then finished (`exception` by a seeded draw, else
//! `complete` with a result dated at the finishing instant). Time a batch spends disabled does not
//! count.
//!
//! What keeps 100,000-record batches cheap: records are stored in creation order, and ids carry a
//! seeded prefix that grows with creation, so creation order *is* the `(createdAt, id)` order. Every
//! record of a batch is slowed by the same disabled intervals, so finishing times are monotonic in
//! creation order too: "how many have finished" is a binary search, and prefix counts turn "the k-th
//! result" into another. Only the few records changed through `/_sim/records/{id}/status` (overrides)
//! fall outside that order; they are merged in per request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::seeded::{self, hash, unit};

pub struct Workflow {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub created_ms: i64,
    /// Where a record sits: queued, being worked, done.
    pub stages: [Uuid; 3],
}

pub struct Rec {
    pub id: Uuid,
    pub result_id: Uuid,
    pub created_ms: i64,
    pub data: Map<String, Value>,
    pub metadata: Option<String>,
    /// The seeded draw: this record ends as `exception` instead of `complete`.
    exception: bool,
    overridden: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Status {
    Queued,
    InProgress,
    /// With the result's `createdAt` (ms).
    Complete(i64),
    Exception,
    Canceled,
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::InProgress => "in-progress",
            Status::Complete(_) => "complete",
            Status::Exception => "exception",
            Status::Canceled => "canceled",
        }
    }

    /// Index into a workflow's `stages`.
    pub fn stage(&self) -> usize {
        match self {
            Status::Queued => 0,
            Status::InProgress => 1,
            _ => 2,
        }
    }
}

/// A status set by a test hook; it sticks until the next one.
#[derive(Clone, Copy, Debug)]
pub enum Override {
    Exception,
    Canceled,
    /// Restarted at this instant: finishes (always `complete`) after `complete_after / 2` more
    /// enabled seconds.
    InProgress(i64),
    /// Completed at this instant.
    Complete(i64),
}

/// Which statuses a listing asks for.
#[derive(Clone, Copy, Debug, Default)]
pub struct StatusSet {
    pub queued: bool,
    pub in_progress: bool,
    pub complete: bool,
    pub exception: bool,
    pub canceled: bool,
}

impl StatusSet {
    pub fn all() -> Self {
        StatusSet {
            queued: true,
            in_progress: true,
            complete: true,
            exception: true,
            canceled: true,
        }
    }

    /// `exception,canceled` style; unknown names match nothing.
    pub fn parse(list: &str) -> Self {
        let mut s = StatusSet::default();
        for name in list.split(',') {
            match name.trim().to_ascii_lowercase().as_str() {
                "queued" => s.queued = true,
                "in-progress" => s.in_progress = true,
                "complete" => s.complete = true,
                "exception" => s.exception = true,
                "canceled" => s.canceled = true,
                _ => {}
            }
        }
        s
    }

    pub fn contains(&self, st: Status) -> bool {
        match st {
            Status::Queued => self.queued,
            Status::InProgress => self.in_progress,
            Status::Complete(_) => self.complete,
            Status::Exception => self.exception,
            Status::Canceled => self.canceled,
        }
    }

    fn is_all(&self) -> bool {
        self.queued && self.in_progress && self.complete && self.exception && self.canceled
    }
}

pub struct Batch {
    pub id: Uuid,
    pub name: String,
    pub workflow_id: Uuid,
    pub created_ms: i64,
    pub enabled: bool,
    pub stages: [Uuid; 3],
    /// Disabled intervals `[from, to)`, sorted; the last may still be open.
    disabled: Vec<(i64, Option<i64>)>,
    pub records: Vec<Rec>,
    /// `natural[i]`: records before `i` that end `complete` on their own (no exception draw, no override).
    natural: Vec<u32>,
    /// `natural_exc[i]`: records before `i` that end `exception` on their own.
    natural_exc: Vec<u32>,
    overrides: HashMap<usize, Override>,
}

/// Where a batch stands at one instant: records `[0, finished)` are finished and
/// `[finished, started)` in progress, overrides aside.
pub struct Progress {
    pub now: i64,
    finished: usize,
    started: usize,
    complete_after: i64,
}

/// One result, ready to print.
pub struct ResultRef {
    pub index: usize,
    pub created_ms: i64,
}

impl Batch {
    /// The first instant at or after `t0` by which the batch has been enabled for `need` ms
    /// (`i64::MAX` while it stays disabled). Monotonic in `t0`.
    fn finish(&self, t0: i64, need: i64) -> i64 {
        let mut cur = t0;
        let mut rem = need;
        for &(from, to) in &self.disabled {
            let to = to.unwrap_or(i64::MAX);
            if to <= cur {
                continue;
            }
            if from > cur {
                let span = from - cur;
                if rem <= span {
                    return cur + rem;
                }
                rem -= span;
            }
            if to == i64::MAX {
                return i64::MAX;
            }
            cur = to;
        }
        cur.saturating_add(rem)
    }

    pub fn set_enabled(&mut self, enabled: bool, now: i64) {
        if enabled == self.enabled {
            return;
        }
        if enabled {
            if let Some(last) = self.disabled.last_mut() {
                if last.0 >= now {
                    self.disabled.pop();
                } else {
                    last.1 = Some(now);
                }
            }
        } else {
            self.disabled.push((now, None));
        }
        self.enabled = enabled;
    }

    pub fn progress(&self, now: i64, complete_after: i64) -> Progress {
        let half = complete_after / 2;
        let finished = self
            .records
            .partition_point(|r| self.finish(r.created_ms, complete_after) <= now);
        let started = self
            .records
            .partition_point(|r| self.finish(r.created_ms, half) <= now);
        Progress {
            now,
            finished,
            started: started.max(finished),
            complete_after,
        }
    }

    pub fn status(&self, p: &Progress, i: usize) -> Status {
        let r = &self.records[i];
        if r.overridden {
            return match self.overrides[&i] {
                Override::Exception => Status::Exception,
                Override::Canceled => Status::Canceled,
                Override::Complete(at) => Status::Complete(at),
                Override::InProgress(at) => {
                    let done = self.finish(at, p.complete_after / 2);
                    if done <= p.now {
                        Status::Complete(done)
                    } else {
                        Status::InProgress
                    }
                }
            };
        }
        if i < p.finished {
            if r.exception {
                Status::Exception
            } else {
                Status::Complete(self.finish(r.created_ms, p.complete_after))
            }
        } else if i < p.started {
            Status::InProgress
        } else {
            Status::Queued
        }
    }

    /// Records created in `[min_us, max_us]` (both inclusive), as an index range.
    pub fn created_range(&self, min_us: Option<i64>, max_us: Option<i64>) -> (usize, usize) {
        let lo = min_us.map_or(0, |m| {
            self.records
                .partition_point(|r| r.created_ms.saturating_mul(1000) < m)
        });
        let hi = max_us.map_or(self.records.len(), |m| {
            self.records
                .partition_point(|r| r.created_ms.saturating_mul(1000) <= m)
        });
        (lo, hi.max(lo))
    }

    /// How many records in `[lo, hi)` have a status in `set`, without visiting them.
    pub fn count(&self, p: &Progress, set: StatusSet, lo: usize, hi: usize) -> u64 {
        if set.is_all() {
            return (hi - lo) as u64;
        }
        let clamp = |a: usize, b: usize| (a.max(lo), b.min(hi).max(a.max(lo)));
        let mut n: i64 = 0;
        let (a, b) = clamp(0, p.finished);
        if set.complete {
            n += (self.natural[b] - self.natural[a]) as i64;
        }
        if set.exception {
            n += (self.natural_exc[b] - self.natural_exc[a]) as i64;
        }
        let (a, b) = clamp(p.finished, p.started);
        if set.in_progress {
            n += (b - a) as i64 - self.overridden_in(a, b);
        }
        let (a, b) = clamp(p.started, self.records.len());
        if set.queued {
            n += (b - a) as i64 - self.overridden_in(a, b);
        }
        for (&i, _) in self.overrides.iter() {
            if i >= lo && i < hi && set.contains(self.status(p, i)) {
                n += 1;
            }
        }
        n.max(0) as u64
    }

    fn overridden_in(&self, a: usize, b: usize) -> i64 {
        self.overrides.keys().filter(|&&i| i >= a && i < b).count() as i64
    }

    /// Indexes of the matching records at ascending positions `[s, e)` among those in `[lo, hi)`.
    pub fn select_records(
        &self,
        p: &Progress,
        set: StatusSet,
        (lo, hi): (usize, usize),
        (s, e): (u64, u64),
        total: u64,
    ) -> Vec<usize> {
        if e <= s {
            return Vec::new();
        }
        if set.is_all() {
            return (lo + s as usize..lo + e as usize).collect();
        }
        let want = (e - s) as usize;
        let matching = |i: &usize| set.contains(self.status(p, *i));
        if s <= total - e {
            // Nearer the start: walk forward.
            (lo..hi)
                .filter(matching)
                .skip(s as usize)
                .take(want)
                .collect()
        } else {
            let mut out: Vec<usize> = (lo..hi)
                .rev()
                .filter(matching)
                .skip((total - e) as usize)
                .take(want)
                .collect();
            out.reverse();
            out
        }
    }

    /// Results whose `createdAt` lies in `[min_us, max_us]`: the total, and those at ascending
    /// positions `[s, e)` of the `(createdAt, result id)` order.
    pub fn results(
        &self,
        p: &Progress,
        min_us: Option<i64>,
        max_us: Option<i64>,
        window: impl FnOnce(u64) -> (u64, u64),
    ) -> (u64, Vec<ResultRef>) {
        let ca = p.complete_after;
        let in_bounds = |t_ms: i64| {
            let us = t_ms.saturating_mul(1000);
            min_us.is_none_or(|m| us >= m) && max_us.is_none_or(|m| us <= m)
        };
        // Records finishing on their own, within the bounds: a contiguous index range.
        let done = &self.records[..p.finished];
        let lo = min_us.map_or(0, |m| {
            done.partition_point(|r| self.finish(r.created_ms, ca).saturating_mul(1000) < m)
        });
        let hi = max_us
            .map_or(done.len(), |m| {
                done.partition_point(|r| self.finish(r.created_ms, ca).saturating_mul(1000) <= m)
            })
            .max(lo);
        let natural_total = (self.natural[hi] - self.natural[lo]) as u64;
        let base_rank = self.natural[lo];
        // The j-th natural result (0-based, within the bounds) is the record where the prefix
        // count steps past its rank.
        let nat_index = |j: u64| {
            self.natural
                .partition_point(|&c| c as u64 <= base_rank as u64 + j)
                - 1
        };
        let nat_key = |j: u64| {
            let i = nat_index(j);
            (
                self.finish(self.records[i].created_ms, ca),
                self.records[i].result_id,
            )
        };

        let mut extra: Vec<(i64, Uuid, usize)> = self
            .overrides
            .keys()
            .filter_map(|&i| match self.status(p, i) {
                Status::Complete(t) if in_bounds(t) => Some((t, self.records[i].result_id, i)),
                _ => None,
            })
            .collect();
        extra.sort_unstable();

        let total = natural_total + extra.len() as u64;
        let (s, e) = window(total);
        if e <= s {
            return (total, Vec::new());
        }
        // Split position s between the two sorted sequences: `a` naturals and `b` overrides
        // come first.
        let m = extra.len();
        let (mut a, mut b) = (s, 0usize);
        for cand in 0..=m.min(s as usize) {
            let na = s - cand as u64;
            if na > natural_total {
                continue;
            }
            let ok_left = cand == 0 || na == natural_total || {
                let (t, id, _) = extra[cand - 1];
                (t, id) < nat_key(na)
            };
            let ok_right = na == 0 || cand == m || {
                let (t, id, _) = extra[cand];
                nat_key(na - 1) < (t, id)
            };
            if ok_left && ok_right {
                (a, b) = (na, cand);
                break;
            }
        }
        let mut out = Vec::with_capacity((e - s) as usize);
        let mut next_nat = (a < natural_total).then(|| nat_index(a));
        while (out.len() as u64) < e - s {
            let nat = next_nat.map(|i| (self.finish(self.records[i].created_ms, ca), i));
            let take_extra = match (nat, extra.get(b)) {
                (None, None) => break,
                (None, Some(_)) => true,
                (Some(_), None) => false,
                (Some((t, i)), Some(&(et, eid, _))) => (et, eid) < (t, self.records[i].result_id),
            };
            if take_extra {
                let (t, _, i) = extra[b];
                out.push(ResultRef {
                    index: i,
                    created_ms: t,
                });
                b += 1;
            } else if let Some((t, i)) = nat {
                out.push(ResultRef {
                    index: i,
                    created_ms: t,
                });
                a += 1;
                next_nat = if a < natural_total {
                    // The following natural result: scan forward past exceptions and overrides.
                    (i + 1..hi).find(|&k| !self.records[k].exception && !self.records[k].overridden)
                } else {
                    None
                };
            }
        }
        (total, out)
    }
}

pub struct NewRecord {
    pub data: Map<String, Value>,
    pub metadata: Option<String>,
}

struct Batches {
    order: Vec<Arc<RwLock<Batch>>>,
    by_id: HashMap<Uuid, Arc<RwLock<Batch>>>,
}

pub struct Store {
    seed: u64,
    exception_rate: f64,
    pub complete_after_ms: i64,
    id_base: u64,
    seq: AtomicU64,
    pub workflows: Vec<Workflow>,
    batches: RwLock<Batches>,
}

/// Record ids count up from here; result ids from here + `RESULT_REGION`. 46 + 1 bits stay within
/// the 48-bit prefix.
const PREFIX_MASK: u64 = (1 << 46) - 1;
const RESULT_REGION: u64 = 1 << 46;

impl Store {
    pub fn new(seed: u64, complete_after_ms: i64, exception_rate: f64, origin_ms: i64) -> Self {
        let id_base = u64::from_le_bytes(hash(seed, "id-base", &[])[..8].try_into().unwrap())
            & (PREFIX_MASK >> 1);
        let workflows = (0..2u64)
            .map(|n| Workflow {
                id: seeded_uuid(seed, "workflow", n),
                name: format!("Sandbox workflow {}", n + 1),
                description: format!("Seeded sandbox workflow {} (seed {seed})", n + 1),
                // Set up by "customer success" a while before the sandbox started.
                created_ms: origin_ms - 86_400_000 * (30 - n as i64),
                stages: [0u64, 1, 2].map(|s| seeded_uuid(seed, "stage", n * 16 + s)),
            })
            .collect();
        Store {
            seed,
            exception_rate,
            complete_after_ms,
            id_base,
            seq: AtomicU64::new(0),
            workflows,
            batches: RwLock::new(Batches {
                order: Vec::new(),
                by_id: HashMap::new(),
            }),
        }
    }

    pub fn workflow(&self, id: Uuid) -> Option<&Workflow> {
        self.workflows.iter().find(|w| w.id == id)
    }

    pub fn create_batch(
        &self,
        workflow: &Workflow,
        name: String,
        enabled: bool,
        now: i64,
    ) -> Arc<RwLock<Batch>> {
        let mut all = self.batches.write();
        let id = seeded_uuid(self.seed, "batch", all.order.len() as u64);
        let mut batch = Batch {
            id,
            name,
            workflow_id: workflow.id,
            created_ms: now,
            enabled: true,
            stages: workflow.stages,
            disabled: Vec::new(),
            records: Vec::new(),
            natural: vec![0],
            natural_exc: vec![0],
            overrides: HashMap::new(),
        };
        batch.set_enabled(enabled, now);
        let batch = Arc::new(RwLock::new(batch));
        all.order.push(batch.clone());
        all.by_id.insert(id, batch.clone());
        batch
    }

    pub fn batch(&self, id: Uuid) -> Option<Arc<RwLock<Batch>>> {
        self.batches.read().by_id.get(&id).cloned()
    }

    /// A workflow's batches in creation order.
    pub fn batches_of(&self, workflow: Uuid) -> Vec<Arc<RwLock<Batch>>> {
        self.batches
            .read()
            .order
            .iter()
            .filter(|b| b.read().workflow_id == workflow)
            .cloned()
            .collect()
    }

    /// Appends records (all of them; validation happened before). The caller holds the batch's
    /// write lock and passes the clock's `now`, so creation order, time and ids agree.
    pub fn append(
        &self,
        batch: &mut Batch,
        now: i64,
        items: Vec<NewRecord>,
    ) -> std::ops::Range<usize> {
        let start = batch.records.len();
        let first = self.seq.fetch_add(items.len() as u64, Ordering::SeqCst);
        for (k, item) in items.into_iter().enumerate() {
            let seq = first + k as u64;
            let id = self.ordered_id(0, seq);
            let exception = self.exception_rate > 0.0
                && unit(&hash(self.seed, "exception", id.as_bytes())) < self.exception_rate;
            batch.records.push(Rec {
                id,
                result_id: self.ordered_id(RESULT_REGION, seq),
                created_ms: now,
                data: item.data,
                metadata: item.metadata,
                exception,
                overridden: false,
            });
            let (n, x) = (
                *batch.natural.last().unwrap(),
                *batch.natural_exc.last().unwrap(),
            );
            batch.natural.push(n + !exception as u32);
            batch.natural_exc.push(x + exception as u32);
        }
        start..batch.records.len()
    }

    /// Finds a record anywhere: ids grow with creation, so each batch is binary-searched.
    pub fn find_record(&self, id: Uuid) -> Option<(Arc<RwLock<Batch>>, usize)> {
        let all = self.batches.read();
        for b in &all.order {
            let g = b.read();
            if let Ok(i) = g.records.binary_search_by(|r| r.id.cmp(&id)) {
                return Some((b.clone(), i));
            }
        }
        None
    }

    /// Gives records a status by hand. Records leaving the natural sequences cost one rebuild of
    /// the prefix counts after the first of them.
    pub fn set_overrides(&self, batch: &mut Batch, indexes: &[usize], o: Override) {
        let mut rebuild_from = None;
        for &i in indexes {
            batch.overrides.insert(i, o);
            if !batch.records[i].overridden {
                batch.records[i].overridden = true;
                rebuild_from = Some(rebuild_from.map_or(i, |r: usize| r.min(i)));
            }
        }
        if let Some(from) = rebuild_from {
            for k in from..batch.records.len() {
                let r = &batch.records[k];
                let natural = !r.overridden;
                batch.natural[k + 1] = batch.natural[k] + (natural && !r.exception) as u32;
                batch.natural_exc[k + 1] = batch.natural_exc[k] + (natural && r.exception) as u32;
            }
        }
    }

    /// The seeded labels of a record: a class and a confidence, the same for the same seed and id.
    pub fn result_data(&self, record_id: Uuid) -> Value {
        const CLASSES: [&str; 4] = ["car", "pedestrian", "cyclist", "background"];
        let h = hash(self.seed, "labels", record_id.as_bytes());
        let class = CLASSES[h[0] as usize % CLASSES.len()];
        let confidence = 0.5 + (u16::from_le_bytes([h[1], h[2]]) % 5001) as f64 / 10_000.0;
        serde_json::json!({"label": class, "confidence": confidence})
    }

    fn ordered_id(&self, region: u64, seq: u64) -> Uuid {
        let prefix = (self.id_base + region + seq) & ((1 << 48) - 1);
        let mut b = [0u8; 16];
        b[..6].copy_from_slice(&prefix.to_be_bytes()[2..]);
        b[6..].copy_from_slice(&hash(self.seed, "id", &(region + seq).to_le_bytes())[..10]);
        seeded::uuid_v4(b)
    }
}

fn seeded_uuid(seed: u64, what: &str, n: u64) -> Uuid {
    seeded::uuid(seed, what, &n.to_le_bytes())
}

/// The seeded user's password.
pub fn password(seed: u64) -> String {
    format!(
        "sandbox-{}",
        &hex::encode(hash(seed, "password", &[]))[..16]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(ca: i64, rate: f64) -> Store {
        Store::new(1, ca, rate, 1_700_000_000_000)
    }

    fn recs(n: usize) -> Vec<NewRecord> {
        (0..n)
            .map(|i| NewRecord {
                data: Map::new(),
                metadata: Some(format!("k{i}")),
            })
            .collect()
    }

    #[test]
    fn ids_grow_with_creation() {
        let s = store(0, 0.0);
        let b = s.create_batch(&s.workflows[0], "b".into(), true, 0);
        let mut b = b.write();
        s.append(&mut b, 10, recs(300));
        assert!(b
            .records
            .windows(2)
            .all(|w| w[0].id < w[1].id && w[0].result_id < w[1].result_id));
        assert!(b.records.iter().all(|r| r.id != r.result_id));
    }

    #[test]
    fn freezing_delays_finish() {
        let s = store(1000, 0.0);
        let b = s.create_batch(&s.workflows[0], "b".into(), true, 0);
        let mut b = b.write();
        s.append(&mut b, 0, recs(1));
        b.set_enabled(false, 200);
        assert_eq!(b.finish(0, 1000), i64::MAX);
        b.set_enabled(true, 5200);
        assert_eq!(b.finish(0, 1000), 6000);
        assert_eq!(b.status(&b.progress(5999, 1000), 0), Status::InProgress);
        assert_eq!(b.status(&b.progress(6000, 1000), 0), Status::Complete(6000));
    }

    #[test]
    fn results_merge_overrides_in_order() {
        let s = store(100, 0.5);
        let b = s.create_batch(&s.workflows[0], "b".into(), true, 0);
        let mut b = b.write();
        for t in 0..50 {
            s.append(&mut b, t * 10, recs(3));
        }
        let excs: Vec<usize> = (0..b.records.len())
            .filter(|&i| b.records[i].exception)
            .collect();
        s.set_overrides(&mut b, &[excs[0]], Override::Complete(10_000));
        s.set_overrides(&mut b, &[excs[1]], Override::InProgress(300));
        s.set_overrides(&mut b, &[5], Override::Canceled);
        let p = b.progress(20_000, 100);
        let (total, all) = b.results(&p, None, None, |t| (0, t));
        assert_eq!(total as usize, all.len());
        let keys: Vec<(i64, Uuid)> = all
            .iter()
            .map(|r| (r.created_ms, b.records[r.index].result_id))
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        for (s0, e0) in [(0, 7), (3, 40), (60, total)] {
            let (_, part) = b.results(&p, None, None, |_| (s0, e0));
            let idx: Vec<usize> = part.iter().map(|r| r.index).collect();
            let want: Vec<usize> = all[s0 as usize..e0 as usize]
                .iter()
                .map(|r| r.index)
                .collect();
            assert_eq!(idx, want);
        }
        let n = b.records.len() as u64;
        let all_set = StatusSet::all();
        let by = |l: &str| b.count(&p, StatusSet::parse(l), 0, b.records.len());
        assert_eq!(b.count(&p, all_set, 0, n as usize), n);
        assert_eq!(by("complete"), total);
        assert_eq!(
            by("complete") + by("exception,canceled") + by("queued,in-progress"),
            n
        );
    }

    /// The fast paths (binary searches, prefix counts, merged overrides) against brute force,
    /// over random imports, pauses, overrides, filters and windows.
    #[test]
    fn fast_paths_agree_with_brute_force() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for round in 0..300 {
            let ca = [0, 1, 100, 1000][round % 4];
            let s = store(ca, [0.0, 0.3, 0.9][round % 3]);
            let b = s.create_batch(&s.workflows[0], "b".into(), round % 5 != 0, 0);
            let mut b = b.write();
            let mut now = 0;
            for _ in 0..rng.random_range(1..30) {
                now += rng.random_range(0..400);
                match rng.random_range(0..10) {
                    0 => {
                        let on = !b.enabled;
                        b.set_enabled(on, now)
                    }
                    1 if !b.records.is_empty() => {
                        let i = rng.random_range(0..b.records.len());
                        let o = match rng.random_range(0..4) {
                            0 => Override::Exception,
                            1 => Override::Canceled,
                            2 => Override::InProgress(now),
                            _ => Override::Complete(now),
                        };
                        s.set_overrides(&mut b, &[i], o);
                    }
                    _ => {
                        let n = rng.random_range(0..20);
                        s.append(&mut b, now, recs(n));
                    }
                }
            }
            let n = b.records.len();
            for _ in 0..10 {
                let at = now + rng.random_range(0..3000);
                let p = b.progress(at, ca);
                let statuses: Vec<Status> = (0..n).map(|i| b.status(&p, i)).collect();
                // Natural statuses straight from the definition.
                for (i, st) in statuses.iter().enumerate() {
                    let r = &b.records[i];
                    if r.overridden {
                        continue;
                    }
                    let done = b.finish(r.created_ms, ca);
                    let want = if done <= at {
                        if r.exception {
                            Status::Exception
                        } else {
                            Status::Complete(done)
                        }
                    } else if b.finish(r.created_ms, ca / 2) <= at {
                        Status::InProgress
                    } else {
                        Status::Queued
                    };
                    assert_eq!(*st, want, "round {round} record {i}");
                }
                let set = StatusSet::parse(
                    [
                        "queued",
                        "in-progress,complete",
                        "exception,canceled",
                        "complete",
                        "canceled,queued",
                    ][rng.random_range(0..5)],
                );
                let (lo, hi) = if n > 0 && rng.random_bool(0.5) {
                    let a = rng.random_range(0..n);
                    (a, rng.random_range(a..=n))
                } else {
                    (0, n)
                };
                let matching: Vec<usize> =
                    (lo..hi).filter(|&i| set.contains(statuses[i])).collect();
                let total = b.count(&p, set, lo, hi);
                assert_eq!(total as usize, matching.len(), "round {round}");
                let s0 = rng.random_range(0..=total);
                let e0 = rng.random_range(s0..=total);
                assert_eq!(
                    b.select_records(&p, set, (lo, hi), (s0, e0), total),
                    matching[s0 as usize..e0 as usize]
                );

                let min = rng
                    .random_bool(0.5)
                    .then(|| rng.random_range(0..at + 1) * 1000);
                let max = rng
                    .random_bool(0.5)
                    .then(|| rng.random_range(0..at + 2000) * 1000);
                let mut want: Vec<(i64, Uuid, usize)> = statuses
                    .iter()
                    .enumerate()
                    .filter_map(|(i, st)| match st {
                        Status::Complete(t)
                            if min.is_none_or(|m| t * 1000 >= m)
                                && max.is_none_or(|m| t * 1000 <= m) =>
                        {
                            Some((*t, b.records[i].result_id, i))
                        }
                        _ => None,
                    })
                    .collect();
                want.sort_unstable();
                let (rt, _) = b.results(&p, min, max, |_| (0, 0));
                assert_eq!(rt as usize, want.len(), "round {round}");
                let s0 = rng.random_range(0..=rt);
                let e0 = rng.random_range(s0..=rt);
                let (_, got) = b.results(&p, min, max, |_| (s0, e0));
                let got: Vec<(i64, usize)> = got.iter().map(|r| (r.created_ms, r.index)).collect();
                let want: Vec<(i64, usize)> = want[s0 as usize..e0 as usize]
                    .iter()
                    .map(|&(t, _, i)| (t, i))
                    .collect();
                assert_eq!(got, want, "round {round}");
            }
        }
    }
}
