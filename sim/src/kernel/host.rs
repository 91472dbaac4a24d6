//! What the host can run, and where the kernels are: the host CPU's XSAVE area (which decides
//! whether a UML kernel with a fixed-size FP buffer can boot here), the cache of UML kernels
//! that `sim/kernel/build-uml.sh` builds, and the words for a console that shows a host
//! problem.
//!
//! Why XSAVE matters: UML runs its processes under ptrace and moves their FP state with
//! `PTRACE_GETREGSET`/`PTRACE_SETREGSET (NT_X86_XSTATE)`. The host accepts a SETREGSET only
//! of exactly its own XSAVE size. Debian's UML 6.1 (and 6.12's source) hands it a buffer of
//! a fixed [`FIXED_FP_BUFFER_BYTES`]; on a host whose area is larger (AMX: about 11 KB) the
//! call fails with EFAULT and the guest panics at init. The kernel that `build-uml.sh`
//! builds sizes the transfer by the host, so it boots anywhere.
//!
//! Invariants: nothing here starts a process or changes a file; the XSAVE size is read from
//! CPUID leaf 0xD (the standard-format size of the features the host OS enabled, which is
//! what the host's ptrace regset is), and is `None` off x86-64 or without XSAVE.

use std::path::{Path, PathBuf};

/// The FP buffer of UML kernels that do not size it by the host (Debian's 6.1 and 6.12's
/// source as shipped): the largest XSAVE area they can boot on.
pub const FIXED_FP_BUFFER_BYTES: u32 = 2696;

/// The console line such a kernel panics with when the host refuses its FP state.
const FP_REGS_PANICS: [&str; 2] = ["ptrace set fp regs failed", "ptrace get fp regs failed"];

/// The host CPU's XSAVE area in bytes (standard format, the OS-enabled features), or `None`
/// where there is no XSAVE (or not x86-64).
pub fn xsave_bytes() -> Option<u32> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::__cpuid_count;
        // CPUID.1:ECX bit 27 is OSXSAVE: the OS enabled XSAVE (and so leaf 0xD is in use).
        #[allow(unused_unsafe)]
        // SAFETY: CPUID exists on every x86-64 CPU; it only reads identification registers.
        let (leaf1, leaf_d) = unsafe { (__cpuid_count(1, 0), __cpuid_count(0xD, 0)) };
        if leaf1.ecx & (1 << 27) == 0 {
            return None;
        }
        Some(leaf_d.ebx)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// Whether the host CPU has AMX (its tile state is what makes the XSAVE area large).
pub fn has_amx() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").map(|s| cpuinfo_has_amx(&s)).unwrap_or(false)
}

fn cpuinfo_has_amx(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .take(1)
        .any(|l| l.split_whitespace().any(|f| f == "amx_tile"))
}

/// Why a kernel with a fixed FP buffer cannot run on a host with `xsave` bytes of XSAVE
/// area, or `None` when it can.
pub fn fixed_buffer_problem(xsave: Option<u32>, amx: bool) -> Option<HostProblem> {
    let bytes = xsave?;
    (bytes > FIXED_FP_BUFFER_BYTES).then_some(HostProblem::XsaveTooLarge { bytes, amx })
}

/// A host this UML kernel cannot boot on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostProblem {
    /// The host's XSAVE area is larger than the kernel's fixed FP buffer.
    XsaveTooLarge { bytes: u32, amx: bool },
}

impl std::fmt::Display for HostProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostProblem::XsaveTooLarge { bytes, amx } => write!(
                f,
                "this UML cannot run on a host {}(XSAVE area {bytes} bytes; it keeps FP state in \
                 {FIXED_FP_BUFFER_BYTES}): build one that sizes it by the host with \
                 `sim/kernel/build-uml.sh` (cached in {}), then run again",
                if *amx { "with AMX " } else { "whose XSAVE area is this large " },
                cache_dir().display()
            ),
        }
    }
}

/// Whether a guest's console shows the fixed-FP-buffer panic.
pub fn console_shows_fp_panic(console: &str) -> bool {
    console.lines().any(|l| FP_REGS_PANICS.iter().any(|p| l.contains(p)))
}

/// The first line of a console that says the kernel panicked, if any.
pub fn console_panic_line(console: &str) -> Option<&str> {
    console.lines().find(|l| l.contains("Kernel panic") || l.contains("panic")).map(str::trim)
}

/// Where `build-uml.sh` caches the kernels it builds: `$THINSIM_CACHE`, else
/// `$XDG_CACHE_HOME/thinsim`, else `~/.cache/thinsim` (the script uses the same rule).
pub fn cache_dir() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("THINSIM_CACHE")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("thinsim")))
        .or_else(|| var("HOME").map(|h| h.join(".cache/thinsim")))
        .unwrap_or_else(|| PathBuf::from(".cache/thinsim"))
}

/// A kernel `build-uml.sh` built: its directory holds `linux`, `modules/<release>/` and a
/// `stamp` (`source <pkg> <version>`, `release <r>`, `recipe <r>`, `seconds <s>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltKernel {
    pub dir: PathBuf,
    pub linux: PathBuf,
    pub modules: PathBuf,
    pub release: String,
    pub source: String,
    pub build_seconds: Option<u64>,
}

impl BuiltKernel {
    /// Reads one cache entry; `None` unless it is complete (stamp, kernel, modules).
    pub fn read(dir: &Path) -> Option<BuiltKernel> {
        let stamp = std::fs::read_to_string(dir.join("stamp")).ok()?;
        let field =
            |k: &str| stamp.lines().find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()));
        let release = field("release ")?;
        let linux = dir.join("linux");
        let modules = dir.join("modules").join(&release);
        (linux.is_file() && modules.join("kernel/drivers/md").is_dir()).then(|| BuiltKernel {
            dir: dir.to_path_buf(),
            linux,
            modules,
            release,
            source: field("source ").unwrap_or_default(),
            build_seconds: field("seconds ").and_then(|s| s.parse().ok()),
        })
    }
}

/// The built kernels in `cache`, newest release first (compared as versions).
pub fn built_kernels(cache: &Path) -> Vec<BuiltKernel> {
    let mut v: Vec<BuiltKernel> = std::fs::read_dir(cache)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("uml-"))
        .filter_map(|e| BuiltKernel::read(&e.path()))
        .collect();
    v.sort_by(|a, b| {
        super::defects::Version::parse(&b.release)
            .cmp(&super::defects::Version::parse(&a.release))
            .then_with(|| b.dir.cmp(&a.dir))
    });
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_xsave_area_is_a_host_problem_with_words_that_say_what_to_do() {
        assert_eq!(fixed_buffer_problem(Some(2696), false), None);
        assert_eq!(fixed_buffer_problem(Some(832), false), None);
        assert_eq!(fixed_buffer_problem(None, false), None);
        let p = fixed_buffer_problem(Some(10688), true).expect("too large");
        let words = p.to_string();
        assert!(words.contains("cannot run on a host with AMX (XSAVE area 10688 bytes"), "{words}");
        assert!(words.contains("sim/kernel/build-uml.sh"), "{words}");
    }

    #[test]
    fn the_fp_panic_is_recognised_on_a_console() {
        let console = "Checking host MADV_REMOVE support...OK\n\
            Kernel panic - not syncing: userspace - ptrace set fp regs failed, errno = 14\n";
        assert!(console_shows_fp_panic(console));
        assert!(!console_shows_fp_panic("Linux version 6.1.176\nRun /init as init process\n"));
        assert_eq!(
            console_panic_line(console),
            Some("Kernel panic - not syncing: userspace - ptrace set fp regs failed, errno = 14")
        );
    }

    #[test]
    fn amx_is_read_from_the_first_flags_line() {
        assert!(cpuinfo_has_amx("processor: 0\nflags\t: fpu sse avx512f amx_bf16 amx_tile\n"));
        assert!(!cpuinfo_has_amx("flags\t: fpu sse avx2\n"));
    }

    #[test]
    fn a_cache_entry_counts_only_when_complete_and_the_newest_release_comes_first() {
        let d = tempfile::tempdir().expect("tempdir");
        let make = |name: &str, release: &str, complete: bool| {
            let e = d.path().join(name);
            std::fs::create_dir_all(e.join("modules").join(release).join("kernel/drivers/md"))
                .expect("mkdir");
            std::fs::write(
                e.join("stamp"),
                format!("source linux-source-x 1\nrelease {release}\nrecipe r\nseconds 42\n"),
            )
            .expect("stamp");
            if complete {
                std::fs::write(e.join("linux"), b"").expect("linux");
            }
        };
        make("uml-6.9.1-r", "6.9.1-r", true);
        make("uml-6.12.118-r", "6.12.118-r", true);
        make("uml-6.13.0-r", "6.13.0-r", false);
        make("other", "7.0.0", true);
        let v = built_kernels(d.path());
        let releases: Vec<&str> = v.iter().map(|k| k.release.as_str()).collect();
        assert_eq!(releases, ["6.12.118-r", "6.9.1-r"]);
        assert_eq!(v[0].build_seconds, Some(42));
        assert!(built_kernels(&d.path().join("missing")).is_empty());
    }
}
