//! Running a workload in the real kernel: user-mode Linux booted as a host process with the
//! host's `/` as its root, the run directory's images as its ubd disks and the workload's
//! script (`script`) as init; then reading what the guest left in the run directory.
//!
//! Which kernel ([`KernelChoice`]): by default the newest kernel `sim/kernel/build-uml.sh`
//! built (cached outside the clone, [`super::host::cache_dir`]), else Debian's
//! `user-mode-linux` where the host can run it; or either by name; or any kernel built with
//! `ARCH=um` given as `--linux`/`--modules`. A missing kernel is [`UmlError::Missing`] and a
//! host the kernel cannot boot on [`UmlError::HostUnsupported`], each with what to do, never
//! a panic; a guest that dies is diagnosed from its console ([`diagnose`]), so a host
//! problem is never reported as "stopped after 0 ops".
//!
//! Invariants: the run's images are created sparse at their largest sizes before the boot;
//! a guest that has not powered off after `timeout` is killed with its whole process group
//! ([`UmlError::Timeout`]); results are parsed strictly (an unknown line is an error).

use super::emulate::Outcome;
use super::host::{self, BuiltKernel, HostProblem};
use super::script::{self, ScriptPaths};
use super::workload::Workload;
use model::Errno;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's UML kernel.
pub const DEFAULT_LINUX: &str = "/usr/bin/linux.uml";
/// Debian's UML modules (one directory per kernel version below it).
pub const DEFAULT_MODULES_ROOT: &str = "/usr/lib/uml/modules";

/// Which kernel to run when none is given by path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelChoice {
    /// The newest built kernel, else Debian's where the host can run it.
    Auto,
    /// The newest kernel `build-uml.sh` built.
    Built,
    /// Debian's `user-mode-linux`.
    Debian,
}

impl std::str::FromStr for KernelChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(KernelChoice::Auto),
            "built" => Ok(KernelChoice::Built),
            "debian" => Ok(KernelChoice::Debian),
            _ => Err(format!("{s:?}: expected auto, built or debian")),
        }
    }
}

/// Where a kernel came from (reports name it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `--linux PATH`.
    Given,
    /// Built by `build-uml.sh` from a Debian source package.
    Built { source: String, build_seconds: Option<u64> },
    /// Debian's `user-mode-linux` package.
    Debian,
}

impl Origin {
    pub fn name(&self) -> &'static str {
        match self {
            Origin::Given => "given",
            Origin::Built { .. } => "built",
            Origin::Debian => "debian",
        }
    }
}

/// A UML kernel: the binary and its modules directory.
#[derive(Clone, Debug)]
pub struct UmlKernel {
    pub linux: PathBuf,
    pub modules: PathBuf,
    pub origin: Origin,
    /// Guest memory in MiB.
    pub mem_mib: u32,
    pub timeout: Duration,
}

/// Why the kernel could not be run or its results read.
#[derive(Debug)]
pub enum UmlError {
    /// Not installed: what is missing and how to get it.
    Missing(String),
    /// This host cannot boot this kernel (and what to do about it).
    HostUnsupported {
        linux: PathBuf,
        problem: HostProblem,
    },
    Io {
        what: String,
        error: std::io::Error,
    },
    Timeout {
        seconds: u64,
        console: PathBuf,
    },
    /// The guest's harness failed (module, device, mount): the run is void.
    Fatal {
        what: String,
        console: PathBuf,
    },
    /// The guest kernel panicked (the console's line).
    Panicked {
        line: String,
        console: PathBuf,
    },
    /// The guest stopped before its last op without saying why.
    Incomplete {
        ops_done: usize,
        console: PathBuf,
    },
    BadResults {
        line: String,
    },
}

impl std::fmt::Display for UmlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UmlError::Missing(m) => write!(f, "user-mode Linux is not available: {m}"),
            UmlError::HostUnsupported { linux, problem } => {
                write!(f, "{}: {problem}", linux.display())
            }
            UmlError::Io { what, error } => write!(f, "{what}: {error}"),
            UmlError::Timeout { seconds, console } => write!(
                f,
                "the UML guest did not finish in {seconds} s (console: {})",
                console.display()
            ),
            UmlError::Fatal { what, console } => {
                write!(f, "the guest harness failed: {what} (console: {})", console.display())
            }
            UmlError::Panicked { line, console } => {
                write!(f, "the guest kernel panicked: {line} (console: {})", console.display())
            }
            UmlError::Incomplete { ops_done, console } => write!(
                f,
                "the guest stopped after {ops_done} ops without a reason (console: {})",
                console.display()
            ),
            UmlError::BadResults { line } => write!(f, "unreadable guest result line: {line:?}"),
        }
    }
}

impl std::error::Error for UmlError {}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> UmlError {
    let what = what.into();
    move |error| UmlError::Io { what, error }
}

/// Why a guest that did not finish stopped, from its console (at `console`): the host
/// problem a fixed-FP-buffer kernel panics with, any other panic, else `Incomplete`.
pub fn diagnose(k: &UmlKernel, console: &Path, ops_done: usize) -> UmlError {
    let text = std::fs::read_to_string(console).unwrap_or_default();
    if host::console_shows_fp_panic(&text) {
        // The console is the evidence: the host refused the kernel's FP state; the words
        // name what the host reports of its XSAVE area.
        let problem = HostProblem::XsaveTooLarge {
            bytes: host::xsave_bytes().unwrap_or(0),
            amx: host::has_amx(),
        };
        return UmlError::HostUnsupported { linux: k.linux.clone(), problem };
    }
    match host::console_panic_line(&text) {
        Some(line) => UmlError::Panicked { line: line.to_string(), console: console.into() },
        None => UmlError::Incomplete { ops_done, console: console.into() },
    }
}

fn dmsetup_present() -> Result<(), UmlError> {
    ["/usr/sbin/dmsetup", "/sbin/dmsetup"]
        .iter()
        .any(|t| Path::new(t).is_file())
        .then_some(())
        .ok_or_else(|| UmlError::Missing("no dmsetup (apt-get install -y dmsetup)".into()))
}

impl UmlKernel {
    fn new(linux: PathBuf, modules: PathBuf, origin: Origin) -> Result<UmlKernel, UmlError> {
        if !modules.join("kernel/drivers/md").is_dir() {
            return Err(UmlError::Missing(format!(
                "{} has no kernel/drivers/md (is it a modules directory?)",
                modules.display()
            )));
        }
        dmsetup_present()?;
        Ok(UmlKernel { linux, modules, origin, mem_mib: 256, timeout: Duration::from_secs(900) })
    }

    /// The kernel at `linux` with `modules`, or by `choice` when no `linux` is given.
    /// Without `modules`, a given kernel's are its directory's `modules/<one release>/`
    /// (a `build-uml.sh` layout), else Debian's.
    pub fn find(
        choice: KernelChoice,
        linux: Option<&Path>,
        modules: Option<&Path>,
    ) -> Result<UmlKernel, UmlError> {
        let Some(linux) = linux else { return Self::choose(choice) };
        if !linux.is_file() {
            return Err(UmlError::Missing(format!("no UML kernel at {}", linux.display())));
        }
        let modules = match modules {
            Some(m) => m.to_path_buf(),
            None => {
                let beside = linux.parent().map(|d| d.join("modules")).filter(|d| d.is_dir());
                match beside {
                    Some(d) => only_version_dir(&d)?,
                    None => only_version_dir(Path::new(DEFAULT_MODULES_ROOT))?,
                }
            }
        };
        Self::new(linux.to_path_buf(), modules, Origin::Given)
    }

    /// The kernel `choice` names.
    pub fn choose(choice: KernelChoice) -> Result<UmlKernel, UmlError> {
        let built = || host::built_kernels(&host::cache_dir()).into_iter().next();
        match choice {
            KernelChoice::Built => match built() {
                Some(b) => Self::built(b),
                None => Err(UmlError::Missing(format!(
                    "no kernel built in {} (run sim/kernel/build-uml.sh)",
                    host::cache_dir().display()
                ))),
            },
            KernelChoice::Debian => Self::debian(),
            KernelChoice::Auto => match built() {
                Some(b) => Self::built(b),
                None => Self::debian(),
            },
        }
    }

    fn built(b: BuiltKernel) -> Result<UmlKernel, UmlError> {
        let origin = Origin::Built { source: b.source, build_seconds: b.build_seconds };
        Self::new(b.linux, b.modules, origin)
    }

    /// Debian's kernel, if installed and this host can boot it.
    fn debian() -> Result<UmlKernel, UmlError> {
        let linux = PathBuf::from(DEFAULT_LINUX);
        if !linux.is_file() {
            return Err(UmlError::Missing(format!(
                "no UML kernel at {DEFAULT_LINUX} and none built (apt-get install -y \
                 user-mode-linux dmsetup kmod, or sim/kernel/build-uml.sh, or --linux PATH)"
            )));
        }
        if let Some(problem) = host::fixed_buffer_problem(host::xsave_bytes(), host::has_amx()) {
            return Err(UmlError::HostUnsupported { linux, problem });
        }
        let modules = only_version_dir(Path::new(DEFAULT_MODULES_ROOT))?;
        Self::new(linux, modules, Origin::Debian)
    }

    /// The kernel version: the modules directory's name.
    pub fn version(&self) -> String {
        self.modules.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }

    /// The command-line arguments that name this kernel exactly (for replay lines).
    pub fn args(&self) -> String {
        format!("--linux {} --modules {}", self.linux.display(), self.modules.display())
    }
}

/// The newest version directory under `root` (a modules root: one directory per release).
fn only_version_dir(root: &Path) -> Result<PathBuf, UmlError> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(|_| UmlError::Missing(format!("no {} (--modules DIR)", root.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    versions.sort();
    versions.pop().ok_or_else(|| UmlError::Missing(format!("nothing under {}", root.display())))
}

/// What the guest reported.
#[derive(Clone, Debug, Default)]
pub struct GuestResults {
    /// `uname -r` in the guest.
    pub kernel: String,
    /// One outcome per op done, with the error text the kernel gave.
    pub outcomes: Vec<(Outcome, String)>,
    /// (op index, `dmsetup status` line) per checkpoint.
    pub statuses: Vec<(usize, String)>,
    /// Per heal: the op index, the exit status of the tools' check that cleared
    /// needs_check, and the pool's status line before the teardown.
    pub heals: Vec<(usize, i32, String)>,
    /// Per metadata exhaustion: the op index, the devices the pool created, and its status
    /// line after the message it refused (or after the last create).
    pub exhausts: Vec<(usize, u64, String)>,
    pub ended: bool,
    pub fatal: Option<String>,
}

/// The errno a failed command's last line names (`errno NAME` from `kernel-guest`, or
/// dmsetup's strerror text).
pub fn parse_errno(text: &str) -> Option<Errno> {
    let name = text.strip_prefix("errno ").unwrap_or("");
    let by_name = match name {
        "ENOSPC" => Some(Errno::ENOSPC),
        "EIO" => Some(Errno::EIO),
        "EINVAL" => Some(Errno::EINVAL),
        "EEXIST" => Some(Errno::EEXIST),
        "ENODATA" => Some(Errno::ENODATA),
        "EBUSY" => Some(Errno::EBUSY),
        "EPERM" => Some(Errno::EPERM),
        "ENOMEM" => Some(Errno::ENOMEM),
        "EOPNOTSUPP" => Some(Errno::EOPNOTSUPP),
        _ => None,
    };
    by_name.or_else(|| {
        [
            ("No space left on device", Errno::ENOSPC),
            ("Input/output error", Errno::EIO),
            ("Invalid argument", Errno::EINVAL),
            ("File exists", Errno::EEXIST),
            ("No data available", Errno::ENODATA),
            ("Device or resource busy", Errno::EBUSY),
            ("Operation not permitted", Errno::EPERM),
            ("Cannot allocate memory", Errno::ENOMEM),
            ("Operation not supported", Errno::EOPNOTSUPP),
        ]
        .iter()
        .find(|(s, _)| text.ends_with(s))
        .map(|(_, e)| *e)
    })
}

/// Parses the guest's result file.
pub fn parse_results(text: &str) -> Result<GuestResults, UmlError> {
    let mut r = GuestResults::default();
    for line in text.lines() {
        let bad = || UmlError::BadResults { line: line.to_string() };
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "KERNEL" => r.kernel = rest.to_string(),
            "END" => r.ended = true,
            "FATAL" => r.fatal = Some(rest.to_string()),
            "OP" => {
                let mut it = rest.splitn(3, ' ');
                let i: usize = it.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
                let rc: i32 = it.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
                let text = it.next().unwrap_or("").trim().to_string();
                if i != r.outcomes.len() {
                    return Err(bad());
                }
                let o = if rc == 0 {
                    Outcome::Ok
                } else {
                    // An error the parser cannot name is kept as EIO with its text.
                    Outcome::Failed(parse_errno(&text).unwrap_or(Errno::EIO))
                };
                r.outcomes.push((o, text));
            }
            "HEAL" => {
                let mut it = rest.splitn(3, ' ');
                let i: usize = it.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
                let rc: i32 = it.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
                r.heals.push((i, rc, it.next().unwrap_or("").to_string()));
            }
            "EXHAUST" => {
                let mut it = rest.splitn(3, ' ');
                let i: usize = it.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
                let n: u64 = it.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
                r.exhausts.push((i, n, it.next().unwrap_or("").to_string()));
            }
            "CKPT" => {
                let (i, st) = rest.split_once(' ').ok_or_else(bad)?;
                r.statuses.push((i.parse().map_err(|_| bad())?, st.to_string()));
            }
            _ => return Err(bad()),
        }
    }
    Ok(r)
}

/// A run directory's files.
pub struct RunDir {
    pub dir: PathBuf,
}

impl RunDir {
    pub fn checkpoint(&self, op: usize) -> PathBuf {
        self.dir.join(format!("ckpt-{op}.img"))
    }
    /// The metadata taken out at the heal at op `op`.
    pub fn heal(&self, op: usize) -> PathBuf {
        self.dir.join(format!("heal-{op}.img"))
    }
    pub fn final_image(&self) -> PathBuf {
        self.dir.join("final.img")
    }
    /// The log of every write to the metadata and data devices.
    pub fn log(&self) -> PathBuf {
        self.dir.join("log.img")
    }
    pub fn console(&self) -> PathBuf {
        self.dir.join("console.log")
    }
    pub fn data(&self) -> PathBuf {
        self.dir.join("data.img")
    }
    pub fn metadata(&self) -> PathBuf {
        self.dir.join("meta.img")
    }
    /// The metadata image the run started from (blank or restored), kept so that the
    /// run's log can be judged on its own (`thinsim kernel --judge DIR`).
    pub fn initial(&self) -> PathBuf {
        self.dir.join("initial.img")
    }
}

pub fn sparse(path: &Path, bytes: u64) -> Result<(), UmlError> {
    let f = std::fs::File::create(path).map_err(io(format!("create {}", path.display())))?;
    f.set_len(bytes).map_err(io(format!("size {}", path.display())))
}

/// Log device size (sparse): every metadata and data write is logged with its bytes and
/// a sector of header; a 300-op run logs some hundreds of MiB at most.
const LOG_BYTES: u64 = 4 << 30;

/// Boots the kernel with `script` as init (written to `dir/init.sh`) and `disks` as
/// ubd0, ubd1, …; waits for it to power off (or kills it at the timeout) and returns the
/// results file the script wrote (`dir/results`, removed first).
pub fn boot(
    k: &UmlKernel,
    dir: &Path,
    script: &str,
    disks: &[PathBuf],
) -> Result<String, UmlError> {
    let rd = RunDir { dir: dir.to_path_buf() };
    let results = dir.join("results");
    let _ = std::fs::remove_file(&results);
    let init = dir.join("init.sh");
    std::fs::write(&init, script).map_err(io(format!("write {}", init.display())))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755))
        .map_err(io("chmod init.sh"))?;
    let console = std::fs::File::create(rd.console()).map_err(io("create console.log"))?;
    let mut cmd = Command::new(&k.linux);
    cmd.arg(format!("mem={}M", k.mem_mib))
        .args(["root=/dev/root", "rootfstype=hostfs", "rootflags=/", "rw"])
        .arg(format!("init={}", init.display()));
    for (i, d) in disks.iter().enumerate() {
        cmd.arg(format!("ubd{i}={}", d.display()));
    }
    cmd.args(["con=null", "con0=null,fd:2"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(console);
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    let mut child = cmd.spawn().map_err(io(format!("start {}", k.linux.display())))?;
    let start = Instant::now();
    loop {
        match child.try_wait().map_err(io("wait for the guest"))? {
            Some(_) => break,
            None if start.elapsed() > k.timeout => {
                // SAFETY: signalling the guest's own process group.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                let _ = child.wait();
                return Err(UmlError::Timeout {
                    seconds: k.timeout.as_secs(),
                    console: rd.console(),
                });
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    // UML's helper threads may outlive the main process for a moment.
    // SAFETY: as above.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    Ok(std::fs::read_to_string(&results).unwrap_or_default())
}

/// Boots the kernel on `w` in `dir` (created if missing; its old results are removed) and
/// returns what the guest reported.
pub fn run(
    k: &UmlKernel,
    w: &Workload,
    dir: &Path,
    thinsim: &Path,
) -> Result<GuestResults, UmlError> {
    std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
    let dir = dir.canonicalize().map_err(io(format!("resolve {}", dir.display())))?;
    let rd = RunDir { dir: dir.clone() };
    // The run directory holds everything its log is judged from again: the workload and
    // the image the kernel started from.
    std::fs::write(dir.join("workload.json"), w.to_json()).map_err(io("write workload.json"))?;
    // The kernel starts from a blank device or from the image thinsim restored.
    let restored = match w.shape.prepopulation {
        None => None,
        Some(_) => Some(
            super::emulate::initial_image(&w.shape)
                .map_err(|e| UmlError::Io { what: e, error: std::io::Error::other("restore") })?
                .0
                .to_bytes(),
        ),
    };
    for path in [rd.metadata(), rd.initial()] {
        sparse(&path, w.shape.max_metadata_blocks * 4096)?;
        if let Some(bytes) = &restored {
            std::fs::write(&path, bytes).map_err(io(format!("write {}", path.display())))?;
        }
    }
    sparse(&rd.data(), w.shape.max_data_blocks * w.shape.data_block_sectors as u64 * 512)?;
    sparse(&rd.log(), LOG_BYTES)?;
    let text = script::script(w, &ScriptPaths { dir: &dir, modules: &k.modules, thinsim });
    let text = boot(k, &dir, &text, &[rd.metadata(), rd.data(), rd.log()])?;
    let r = parse_results(&text)?;
    if let Some(what) = r.fatal.clone() {
        return Err(UmlError::Fatal { what, console: rd.console() });
    }
    if !r.ended {
        return Err(diagnose(k, &rd.console(), r.outcomes.len()));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_parse_strictly() {
        let r = parse_results(
            "KERNEL 6.1.176\nOP 0 0 \nOP 1 1 device-mapper: message ioctl on pool  failed: File exists\nOP 2 1 errno ENOSPC\nCKPT 3 0 1 thin-pool 0 1/2 3/4 - rw\nOP 3 0\nEND\n",
        )
        .expect("parses");
        assert_eq!(r.kernel, "6.1.176");
        assert!(r.ended);
        let o: Vec<Outcome> = r.outcomes.iter().map(|(o, _)| *o).collect();
        assert_eq!(
            o,
            vec![
                Outcome::Ok,
                Outcome::Failed(Errno::EEXIST),
                Outcome::Failed(Errno::ENOSPC),
                Outcome::Ok
            ]
        );
        assert_eq!(r.statuses, vec![(3, "0 1 thin-pool 0 1/2 3/4 - rw".into())]);
        assert!(
            matches!(parse_results("OP 1 0\n"), Err(UmlError::BadResults { .. })),
            "ops in order"
        );
        assert!(matches!(parse_results("hello\n"), Err(UmlError::BadResults { .. })));
    }
}
