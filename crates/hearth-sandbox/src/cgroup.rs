//! Control groups for one run: memory, pids and CPU limits, accounting, and a kill switch.
//!
//! Works with pure cgroup v2, pure v1, and hybrids (v1 controllers plus an empty v2
//! `unified` tree): each controller is taken from the hierarchy that actually has it.
//! A run's groups are created under Hearth's own group (so a delegated subtree is
//! enough) and removed at the end. Where a group cannot be written the caller falls
//! back to rlimits and says so.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::spec::Limits;

/// The controllers a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controller {
    Memory,
    Pids,
    Cpu,
    Cpuacct,
}

impl Controller {
    pub const ALL: [Controller; 4] = [
        Controller::Memory,
        Controller::Pids,
        Controller::Cpu,
        Controller::Cpuacct,
    ];

    fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpu => "cpu",
            Controller::Cpuacct => "cpuacct",
        }
    }
}

/// One mounted hierarchy and Hearth's place in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Hierarchy {
    pub v2: bool,
    pub mount: PathBuf,
    /// Hearth's own group, relative to the mount.
    pub own: PathBuf,
    /// Controllers this hierarchy offers Hearth's group (v2: `cgroup.controllers`).
    pub controllers: Vec<String>,
}

impl Hierarchy {
    pub fn own_dir(&self) -> PathBuf {
        self.mount.join(&self.own)
    }

    fn has(&self, c: Controller) -> bool {
        // v2 has no separate cpuacct: `cpu.stat` always carries usage.
        let name = if self.v2 && c == Controller::Cpuacct {
            "cpu"
        } else {
            c.name()
        };
        self.controllers.iter().any(|x| x == name)
    }
}

/// The cgroup hierarchies of this host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Host {
    pub hierarchies: Vec<Hierarchy>,
}

impl Host {
    pub fn detect() -> Host {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        Host::parse(&mountinfo, &own, |p| {
            fs::read_to_string(p).unwrap_or_default()
        })
    }

    fn parse(mountinfo: &str, self_cgroup: &str, read: impl Fn(&Path) -> String) -> Host {
        let mut hierarchies = Vec::new();
        for line in mountinfo.lines() {
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            let (Some(root), Some(mount), Some(fstype)) = (pre.get(3), pre.get(4), post.first())
            else {
                continue;
            };
            let v2 = *fstype == "cgroup2";
            if !v2 && *fstype != "cgroup" {
                continue;
            }
            let opts: Vec<String> = post
                .get(2)
                .map(|o| o.split(',').map(str::to_owned).collect())
                .unwrap_or_default();
            // Find Hearth's group in this hierarchy from /proc/self/cgroup.
            let own = self_cgroup.lines().find_map(|l| {
                let mut parts = l.splitn(3, ':');
                let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
                let matches = if v2 {
                    ctrls.is_empty()
                } else {
                    !ctrls.is_empty() && ctrls.split(',').all(|c| opts.iter().any(|o| o == c))
                };
                matches.then(|| path.to_owned())
            });
            let Some(own) = own else { continue };
            // Inside a cgroup namespace the mount root is "/"; outside one, the
            // mount may be of a sub-tree, and our path is relative to it.
            let own = own
                .strip_prefix(*root)
                .unwrap_or(&own)
                .trim_start_matches('/')
                .to_owned();
            let mount = PathBuf::from(unescape(mount));
            let controllers = if v2 {
                read(&mount.join(&own).join("cgroup.controllers"))
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect()
            } else {
                opts.iter()
                    .filter(|o| Controller::ALL.iter().any(|c| c.name() == o.as_str()))
                    .cloned()
                    .collect()
            };
            hierarchies.push(Hierarchy {
                v2,
                mount,
                own: PathBuf::from(own),
                controllers,
            });
        }
        Host { hierarchies }
    }

    /// The hierarchy that provides `c`, v2 first.
    pub fn provider(&self, c: Controller) -> Option<&Hierarchy> {
        self.hierarchies
            .iter()
            .filter(|h| h.v2)
            .chain(self.hierarchies.iter().filter(|h| !h.v2))
            .find(|h| h.has(c))
    }

    /// `cgroup v2`, `cgroup v1`, or `hybrid`, from the mounts alone.
    pub fn layout(&self) -> &'static str {
        let v2 = self
            .hierarchies
            .iter()
            .any(|h| h.v2 && !h.controllers.is_empty());
        let v1 = self
            .hierarchies
            .iter()
            .any(|h| !h.v2 && !h.controllers.is_empty());
        match (v2, v1) {
            (true, false) => "cgroup v2",
            (false, true) => "cgroup v1",
            (true, true) => "hybrid (v1 + v2)",
            (false, false) => "none",
        }
    }
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// The groups of one run.
#[derive(Debug, Default)]
pub struct Cgroup {
    /// (hierarchy is v2, directory, controllers it serves).
    dirs: Vec<(bool, PathBuf, Vec<Controller>)>,
}

/// What a run's groups enforce: for each controller, `cgroup v1`/`cgroup v2`, or the
/// reason it is not.
#[derive(Debug, Clone)]
pub struct Applied {
    pub memory: Result<&'static str, String>,
    pub pids: Result<&'static str, String>,
    pub cpu: Result<&'static str, String>,
    pub accounting: Result<&'static str, String>,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn version(v2: bool) -> &'static str {
    if v2 { "cgroup v2" } else { "cgroup v1" }
}

impl Cgroup {
    /// Create this run's groups and write `limits`. Never fails as a whole: a controller
    /// that cannot be used is reported in [`Applied`].
    pub fn create(host: &Host, limits: &Limits) -> (Cgroup, Applied) {
        let name = format!(
            "hearth-sbx-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut cg = Cgroup::default();
        let mut applied = Applied {
            memory: Err("no memory controller".into()),
            pids: Err("no pids controller".into()),
            cpu: Err("no cpu controller".into()),
            accounting: Err("no cpu accounting controller".into()),
        };
        for c in Controller::ALL {
            let Some(h) = host.provider(c) else { continue };
            let dir = match cg.dir_for(h, &name, c) {
                Ok(d) => d,
                Err(e) => {
                    let msg = format!("{} {}: {e}", version(h.v2), h.own_dir().display());
                    set(&mut applied, c, Err(msg));
                    continue;
                }
            };
            let r = write_limit(h.v2, &dir, c, limits).map(|()| version(h.v2));
            set(
                &mut applied,
                c,
                r.map_err(|e| format!("{}: {e}", version(h.v2))),
            );
        }
        (cg, applied)
    }

    /// The directory serving `c` in hierarchy `h`, created on first use.
    fn dir_for(&mut self, h: &Hierarchy, name: &str, c: Controller) -> io::Result<PathBuf> {
        let dir = h.own_dir().join(name);
        if let Some(entry) = self.dirs.iter_mut().find(|(_, d, _)| *d == dir) {
            entry.2.push(c);
            return Ok(dir);
        }
        if h.v2 {
            enable_v2_controllers(&h.own_dir())?;
        }
        fs::create_dir(&dir)?;
        self.dirs.push((h.v2, dir.clone(), vec![c]));
        Ok(dir)
    }

    /// Descriptors of the v1 groups' `tasks` files, for the child to join by itself.
    ///
    /// Moving a process by writing its pid to `cgroup.procs` takes the kernel's global
    /// threadgroup lock (an RCU grace period, milliseconds per hierarchy); a
    /// single-threaded task writing `0` to v1 `tasks` moves only itself and skips it.
    /// The kernel checks permission against the opener (Hearth), so the child may write.
    pub fn v1_task_files(&self) -> io::Result<Vec<std::os::fd::OwnedFd>> {
        self.dirs
            .iter()
            .filter(|(v2, _, _)| !v2)
            .map(|(_, dir, _)| {
                Ok(fs::OpenOptions::new()
                    .write(true)
                    .open(dir.join("tasks"))?
                    .into())
            })
            .collect()
    }

    /// Move `pid` into every v2 group (v1 groups are joined by the child itself).
    pub fn add_v2(&self, pid: i32) -> io::Result<()> {
        for (_, dir, _) in self.dirs.iter().filter(|(v2, _, _)| *v2) {
            fs::write(dir.join("cgroup.procs"), pid.to_string())?;
        }
        Ok(())
    }

    fn dir(&self, c: Controller) -> Option<(bool, &Path)> {
        self.dirs
            .iter()
            .find(|(_, _, cs)| cs.contains(&c))
            .map(|(v2, d, _)| (*v2, d.as_path()))
    }

    /// Usage and limit events, read before the groups are removed.
    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        if let Some((v2, d)) = self.dir(Controller::Memory) {
            let (peak, events) = if v2 {
                ("memory.peak", "memory.events")
            } else {
                ("memory.max_usage_in_bytes", "memory.oom_control")
            };
            s.peak_memory = read_u64(&d.join(peak));
            s.oom_kills = read_key(&d.join(events), "oom_kill").unwrap_or(0);
        }
        if let Some((_, d)) = self.dir(Controller::Pids) {
            s.pids_max_hits = read_key(&d.join("pids.events"), "max").unwrap_or(0);
        }
        if let Some((v2, d)) = self.dir(Controller::Cpuacct) {
            s.cpu_ns = if v2 {
                read_key(&d.join("cpu.stat"), "usage_usec").map(|us| us * 1000)
            } else {
                read_u64(&d.join("cpuacct.usage"))
            };
        }
        s
    }

    /// SIGKILL everything left in the groups.
    pub fn kill_all(&self) {
        for (v2, dir, _) in &self.dirs {
            if *v2 && fs::write(dir.join("cgroup.kill"), "1").is_ok() {
                continue;
            }
            for _ in 0..10 {
                let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                let pids: Vec<i32> = procs
                    .lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect();
                if pids.is_empty() {
                    break;
                }
                for pid in pids {
                    crate::sys::kill(pid, libc::SIGKILL);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// Remove the groups (retrying while the last processes are reaped).
    pub fn remove(&mut self) {
        for (_, dir, _) in self.dirs.drain(..) {
            for attempt in 0..100 {
                match fs::remove_dir(&dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(_) if attempt < 99 => std::thread::sleep(Duration::from_millis(2)),
                    Err(_) => {} // left behind; harmless, and named after our pid
                }
            }
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if !self.dirs.is_empty() {
            self.kill_all();
            self.remove();
        }
    }
}

fn set(a: &mut Applied, c: Controller, r: Result<&'static str, String>) {
    match c {
        Controller::Memory => a.memory = r,
        Controller::Pids => a.pids = r,
        Controller::Cpu => a.cpu = r,
        Controller::Cpuacct => a.accounting = r,
    }
}

/// On v2 a group's controllers must be enabled in its parent's `subtree_control`, and
/// a group with processes in it cannot enable any ("no internal processes"). Hearth's
/// own group usually has Hearth in it, so Hearth first moves itself into a leaf
/// `hearth` child — the usual answer for a delegated subtree (systemd `Delegate=yes`).
fn enable_v2_controllers(own: &Path) -> io::Result<()> {
    let wanted = ["memory", "pids", "cpu"];
    let available = fs::read_to_string(own.join("cgroup.controllers"))?;
    let enabled = fs::read_to_string(own.join("cgroup.subtree_control"))?;
    let missing: Vec<&str> = wanted
        .into_iter()
        .filter(|c| available.split_whitespace().any(|a| a == *c))
        .filter(|c| !enabled.split_whitespace().any(|a| a == *c))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let line: String = missing.iter().map(|c| format!("+{c} ")).collect();
    match fs::write(own.join("cgroup.subtree_control"), line.trim_end()) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            let leaf = own.join("hearth");
            match fs::create_dir(&leaf) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            fs::write(leaf.join("cgroup.procs"), "0")?;
            fs::write(own.join("cgroup.subtree_control"), line.trim_end())
        }
        Err(e) => Err(e),
    }
}

fn write_limit(v2: bool, dir: &Path, c: Controller, l: &Limits) -> io::Result<()> {
    match (c, v2) {
        (Controller::Memory, true) => {
            fs::write(dir.join("memory.max"), l.memory_bytes.to_string())?;
            let _ = fs::write(dir.join("memory.swap.max"), "0"); // absent without swap accounting
            Ok(())
        }
        (Controller::Memory, false) => {
            fs::write(
                dir.join("memory.limit_in_bytes"),
                l.memory_bytes.to_string(),
            )?;
            let _ = fs::write(
                dir.join("memory.memsw.limit_in_bytes"),
                l.memory_bytes.to_string(),
            );
            Ok(())
        }
        (Controller::Pids, _) => fs::write(dir.join("pids.max"), l.pids.to_string()),
        (Controller::Cpu, true) => {
            let quota = (l.cpus * 100_000.0).round().max(1000.0) as u64;
            fs::write(dir.join("cpu.max"), format!("{quota} 100000"))
        }
        (Controller::Cpu, false) => {
            let quota = (l.cpus * 100_000.0).round().max(1000.0) as u64;
            fs::write(dir.join("cpu.cfs_period_us"), "100000")?;
            fs::write(dir.join("cpu.cfs_quota_us"), quota.to_string())
        }
        (Controller::Cpuacct, _) => Ok(()),
    }
}

/// Usage and limit events of one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub peak_memory: Option<u64>,
    pub oom_kills: u64,
    pub pids_max_hits: u64,
    pub cpu_ns: Option<u64>,
}

fn read_u64(p: &Path) -> Option<u64> {
    fs::read_to_string(p).ok()?.trim().parse().ok()
}

fn read_key(p: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(p).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Is `name` (`hearth-sbx-<pid>-<n>`) left behind by a Hearth process that is gone?
pub fn is_stale(name: &str) -> bool {
    let Some(pid) = name
        .strip_prefix("hearth-sbx-")
        .and_then(|r| r.split('-').next())
    else {
        return false;
    };
    pid.parse::<u32>().is_ok_and(|p| p != std::process::id())
        && !Path::new("/proc").join(pid).exists()
}

/// Remove the groups of Hearth processes that were killed mid-run, killing what is left
/// in them (in the Landlock fallback, a killed Hearth's sandbox descendants survive it).
/// Liveness is judged by `/proc/<pid>`: Hearth processes sharing a cgroup are assumed to
/// share the PID namespace too.
pub fn sweep_stale(host: &Host) {
    for h in &host.hierarchies {
        let Ok(entries) = fs::read_dir(h.own_dir()) else {
            continue;
        };
        let dirs: Vec<(bool, PathBuf, Vec<Controller>)> = entries
            .flatten()
            .filter(|e| e.file_name().to_str().is_some_and(is_stale))
            .map(|e| (h.v2, e.path(), Vec::new()))
            .collect();
        if !dirs.is_empty() {
            drop(Cgroup { dirs }); // Drop kills what is left, then removes the groups
        }
    }
}

/// Create and remove a throwaway group in each hierarchy: can Hearth write there?
pub fn probe(host: &Host) -> Applied {
    let (cg, applied) = Cgroup::create(host, &Limits::default());
    drop(cg);
    applied
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
35 25 0:30 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
36 25 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 25 0:32 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
38 25 0:33 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
39 25 0:34 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpuacct
";
    const SELF: &str = "8:pids:/\n4:memory:/process_api/abc\n1:cpu:/\n2:cpuacct:/\n0::/\n";

    #[test]
    fn hybrid_takes_each_controller_from_v1() {
        let host = Host::parse(HYBRID, SELF, |_| "hugetlb".into());
        let mem = host.provider(Controller::Memory).unwrap();
        assert!(!mem.v2);
        assert_eq!(
            mem.own_dir(),
            PathBuf::from("/sys/fs/cgroup/memory/process_api/abc")
        );
        assert_eq!(
            host.provider(Controller::Cpuacct).unwrap().mount,
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
        );
        assert!(host.provider(Controller::Pids).is_some());
    }

    #[test]
    fn stale_names_belong_to_dead_hearth_processes() {
        assert!(!is_stale(&format!("hearth-sbx-{}-0", std::process::id())));
        assert!(!is_stale("hearth-sbx-1-0")); // pid 1 is alive
        assert!(is_stale("hearth-sbx-4194305-3")); // above pid_max: never alive
        assert!(!is_stale("hearth"));
        assert!(!is_stale("hearth-sbx-wt"));
    }

    #[test]
    fn pure_v2_strips_mount_root() {
        let mi = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let host = Host::parse(mi, "0::/system.slice/hearth.service\n", |_| {
            "cpu memory pids".into()
        });
        let h = &host.hierarchies[0];
        assert!(h.v2);
        assert!(host.provider(Controller::Cpuacct).unwrap().v2);
        assert_eq!(h.own, PathBuf::from("system.slice/hearth.service"));
    }
}
