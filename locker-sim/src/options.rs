//! What one run simulates: cluster shape, timing, workload and faults.

use serde::Serialize;

use crate::schedule::Schedule;

/// The kinds of fault a run may inject (`--faults` names them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Faults {
    /// Messages lost.
    pub loss: bool,
    /// Messages duplicated.
    pub dup: bool,
    /// Messages reordered on a link.
    pub reorder: bool,
    /// Long-tailed latency.
    pub delay: bool,
    /// Partitions (symmetric, one-way, isolation, majority/minority, ring).
    pub partition: bool,
    /// Crashes with amnesia and restarts.
    pub crash: bool,
    /// Process pauses (nodes and holders) longer than a lease. With an
    /// explicit schedule, node pauses come from it and this flag only lets
    /// holders pause past their deadline.
    pub pause: bool,
    /// Clock offsets and rate errors.
    pub skew: bool,
}

impl Faults {
    /// One fault kind per bit, in the order of the fields (bit 0: loss,
    /// ..., bit 7: skew); how fuzzers and property tests pick a fault set.
    pub fn from_bits(bits: u8) -> Faults {
        Faults {
            loss: bits & 1 != 0,
            dup: bits & 2 != 0,
            reorder: bits & 4 != 0,
            delay: bits & 8 != 0,
            partition: bits & 16 != 0,
            crash: bits & 32 != 0,
            pause: bits & 64 != 0,
            skew: bits & 128 != 0,
        }
    }
}

/// `none`, `all`, or the comma list that [`Faults::parse`] reads back.
impl std::fmt::Display for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if *self == Faults::all() {
            return write!(f, "all");
        }
        let names = [
            (self.loss, "loss"),
            (self.dup, "dup"),
            (self.reorder, "reorder"),
            (self.delay, "delay"),
            (self.partition, "partition"),
            (self.crash, "crash"),
            (self.pause, "pause"),
            (self.skew, "skew"),
        ];
        let on: Vec<&str> = names.iter().filter(|(b, _)| *b).map(|(_, n)| *n).collect();
        if on.is_empty() {
            write!(f, "none")
        } else {
            write!(f, "{}", on.join(","))
        }
    }
}

impl Faults {
    /// Every fault on.
    pub fn all() -> Faults {
        Faults {
            loss: true,
            dup: true,
            reorder: true,
            delay: true,
            partition: true,
            crash: true,
            pause: true,
            skew: true,
        }
    }

    /// Parses `all`, `none` or a comma list of fault names.
    pub fn parse(s: &str) -> Result<Faults, String> {
        match s {
            "all" => return Ok(Faults::all()),
            "none" | "" => return Ok(Faults::default()),
            _ => {}
        }
        let mut f = Faults::default();
        for name in s.split(',') {
            match name.trim() {
                "loss" => f.loss = true,
                "dup" => f.dup = true,
                "reorder" => f.reorder = true,
                "delay" => f.delay = true,
                "partition" => f.partition = true,
                "crash" => f.crash = true,
                "pause" => f.pause = true,
                "skew" => f.skew = true,
                other => return Err(format!("unknown fault {other:?}")),
            }
        }
        Ok(f)
    }
}

/// Everything one run depends on besides its seed.
#[derive(Clone, Debug, Serialize)]
pub struct SimOptions {
    /// Voting masters.
    pub masters: usize,
    /// Asynchronous replicas.
    pub replicas: usize,
    /// Client processes, each beside its own client-only node.
    pub clients: usize,
    /// Write quorum; `None` is the smallest majority.
    pub w: Option<usize>,
    /// Allow `w` below a majority (checker validation only).
    pub unsafe_quorum: bool,
    /// Faults injected during the fault phase.
    pub faults: Faults,
    /// The drift bound the nodes are configured with.
    pub max_drift: f64,
    /// The actual bound on clock rate errors; above `max_drift` breaks an assumption.
    pub drift: Option<f64>,
    /// Length of the fault phase, in simulated seconds.
    pub sim_secs: f64,
    /// Operations started per simulated second, over all clients (an open
    /// loop: an arrival that finds every slot of its client busy is dropped).
    pub ops_per_sec: f64,
    /// Operations each client may have outstanding at once, on distinct keys.
    pub pipeline: usize,
    /// Membership changes in the workload: `set_w` between majority values.
    pub admin: bool,
    /// Membership changes in the workload that also swap a master and a
    /// replica (`set_nodes`); implies `admin`.
    pub admin_nodes: bool,
    /// The cluster's `max_lease`, in milliseconds (quarantine scales with it).
    pub max_lease_ms: u64,
    /// Persist the token ceiling across crashes (a host with durable storage).
    pub persist_ceiling: bool,
    /// Restart crashed masters with `Node::restarted` (quarantine); `false`
    /// restarts them with `Node::new`, as if quarantine were off.
    pub quarantine: bool,
    /// Heal partitions when the quiet phase starts (`false` breaks liveness on purpose).
    pub heal_in_quiet: bool,
    /// Crash every master at once at this simulated second (scripted fault).
    pub crash_all_masters_at: Option<f64>,
    /// Keep a partition that isolates these nodes (by index) for the whole run.
    pub isolate_forever: Vec<usize>,
    /// Lose every `Freed` message (a master's news that a key a waiting
    /// lock found taken is free): breaks the handoff probe on purpose.
    pub drop_freed: bool,
    /// The fault schedule; `None` draws it from the seed (within `faults`).
    /// An explicit schedule replaces the drawn partitions, crashes and node
    /// pauses; the steady loss, duplication, reordering, delay and skew of
    /// `faults` still apply.
    pub schedule: Option<Schedule>,
    /// With an explicit `schedule`: draw the seed's schedule first anyway
    /// (and ignore it), so that the rest of the run is the one the seed
    /// gives; the seed's own schedule given this way is the same run. How
    /// `locker-sim replay --shrink` shrinks a seed's drawn schedule.
    pub after_draw: bool,
}

impl Default for SimOptions {
    fn default() -> SimOptions {
        SimOptions {
            masters: 5,
            replicas: 2,
            clients: 8,
            w: None,
            unsafe_quorum: false,
            faults: Faults::all(),
            max_drift: 0.001,
            drift: None,
            sim_secs: 20.0,
            ops_per_sec: 300.0,
            pipeline: 8,
            admin: false,
            admin_nodes: false,
            max_lease_ms: 10_000,
            persist_ceiling: true,
            quarantine: true,
            heal_in_quiet: true,
            crash_all_masters_at: None,
            isolate_forever: Vec::new(),
            drop_freed: false,
            schedule: None,
            after_draw: false,
        }
    }
}

impl SimOptions {
    /// The actual clock-rate bound used for this run.
    pub fn actual_drift(&self) -> f64 {
        if !self.faults.skew {
            0.0
        } else {
            self.drift.unwrap_or(self.max_drift)
        }
    }

    /// The `locker-sim replay` command that reruns `seed` with these options.
    /// Options the command line cannot express (`heal_in_quiet`,
    /// `crash_all_masters_at`, `isolate_forever`, `drop_freed`) are left out.
    pub fn replay_command(&self, seed: u64) -> String {
        format!("locker-sim replay --seed {seed} {}", self.flags())
    }

    /// These options as `locker-sim` flags.
    pub fn flags(&self) -> String {
        let mut s = format!(
            "--masters {} --replicas {} --clients {} --faults {} --max-drift {} --sim-secs {} --ops-per-sec {} --pipeline {} --max-lease-ms {}",
            self.masters,
            self.replicas,
            self.clients,
            self.faults,
            self.max_drift,
            self.sim_secs,
            self.ops_per_sec,
            self.pipeline,
            self.max_lease_ms
        );
        if let Some(w) = self.w {
            s += &format!(" --w {w}");
        }
        if self.unsafe_quorum {
            s += " --unsafe";
        }
        if let Some(d) = self.drift {
            s += &format!(" --drift {d}");
        }
        if !self.persist_ceiling {
            s += " --no-ceiling";
        }
        if !self.quarantine {
            s += " --no-quarantine";
        }
        if self.admin {
            s += " --admin";
        }
        if self.admin_nodes {
            s += " --admin-nodes";
        }
        if let Some(sch) = &self.schedule {
            s += &format!(" --schedule {sch}");
            if self.after_draw {
                s += " --after-draw";
            }
        }
        s
    }

    /// Total nodes (masters, replicas, client-only nodes).
    pub fn nodes(&self) -> usize {
        self.masters + self.replicas + self.clients
    }
}
