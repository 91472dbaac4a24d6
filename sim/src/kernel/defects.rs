//! Known kernel defects and the kernels that have them: what turns a rediscovered defect
//! into a regression detector. On a kernel known to carry a defect its symptom is counted
//! and explained; on a kernel known to have the fix the same symptom fails the run (the
//! defect is back); on a kernel whose status is not known it is counted and reported as
//! such, and `--held-root-defect present|fixed` says which rule to apply.
//!
//! Facts, each with where it comes from:
//! - [`Defect::HeldRootOutsideCommit`] (reports/kernel/held-root-outside-commit.md): present
//!   in Debian's UML 6.1.176 (found by thinsim's crash mode); fixed upstream and backported
//!   to 6.1.178 ("dm thin metadata: fix metadata snapshot consistency on commit failure");
//!   fixed in 6.12.118 (Debian's linux-source-6.12: reserve and release leave the held root
//!   in memory and only a commit writes it). Older lines than 6.1 predate the fix.
//!
//! Invariant: a status is `Fixed` or `Present` only where one of those facts says so;
//! every other kernel is `Unknown`.

/// A kernel version as `uname -r` prints it, compared by its three numbers (a suffix such
/// as `-thinsim2` is kept for display, not compared).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    /// `6.12.118-thinsim2` → 6.12.118; `6.13` → 6.13.0; `None` without two numbers.
    pub fn parse(s: &str) -> Option<Version> {
        let head = s.trim().split(|c: char| !(c.is_ascii_digit() || c == '.')).next()?;
        let mut it = head.split('.').map(|n| n.parse::<u32>());
        let major = it.next()?.ok()?;
        let minor = it.next()?.ok()?;
        let patch = it.next().and_then(Result::ok).unwrap_or(0);
        Some(Version { major, minor, patch })
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A kernel defect thinsim knows and detects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Defect {
    /// Reserving or releasing the metadata snapshot dirties the superblock's held root
    /// outside the commit, so a crash can leave a superblock naming a copy never written.
    HeldRootOutsideCommit,
}

impl Defect {
    pub fn name(self) -> &'static str {
        match self {
            Defect::HeldRootOutsideCommit => "held-root-outside-commit",
        }
    }

    /// Where it is written up.
    pub fn report(self) -> &'static str {
        match self {
            Defect::HeldRootOutsideCommit => "reports/kernel/held-root-outside-commit.md",
        }
    }

    /// Whether the kernel `release` carries this defect, as far as the facts above go.
    pub fn status(self, release: &str) -> DefectStatus {
        let Some(v) = Version::parse(release) else { return DefectStatus::Unknown };
        match self {
            Defect::HeldRootOutsideCommit => {
                let at = |major, minor, patch| Version { major, minor, patch };
                if v < at(6, 1, 178) {
                    DefectStatus::Present
                } else if (v.major, v.minor) == (6, 1) || (v >= at(6, 12, 118) && v < at(6, 13, 0))
                {
                    DefectStatus::Fixed
                } else {
                    DefectStatus::Unknown
                }
            }
        }
    }
}

/// Whether a kernel carries a defect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DefectStatus {
    /// Known present: its symptom is counted and explained.
    Present,
    /// Known fixed: its symptom fails the run.
    Fixed,
    /// Not known: its symptom is counted and reported as unexplained.
    Unknown,
}

impl DefectStatus {
    pub fn name(self) -> &'static str {
        match self {
            DefectStatus::Present => "present",
            DefectStatus::Fixed => "fixed",
            DefectStatus::Unknown => "unknown",
        }
    }
}

impl std::str::FromStr for DefectStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "present" => Ok(DefectStatus::Present),
            "fixed" => Ok(DefectStatus::Fixed),
            _ => Err(format!("{s:?}: expected present or fixed")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_order_by_their_numbers() {
        let v = |s| Version::parse(s).expect(s);
        assert_eq!(v("6.12.118-thinsim2"), Version { major: 6, minor: 12, patch: 118 });
        assert_eq!(v("6.13"), Version { major: 6, minor: 13, patch: 0 });
        assert_eq!(v(" 6.1.176\n"), Version { major: 6, minor: 1, patch: 176 });
        assert!(v("6.1.178") > v("6.1.99"));
        assert!(v("6.12.1") > v("6.1.200"));
        assert_eq!(Version::parse("linux"), None);
        assert_eq!(Version::parse("6"), None);
    }

    #[test]
    fn the_held_root_defect_is_present_before_6_1_178_and_fixed_where_the_facts_say() {
        let s = |r| Defect::HeldRootOutsideCommit.status(r);
        assert_eq!(s("6.1.176"), DefectStatus::Present);
        assert_eq!(s("6.1.177"), DefectStatus::Present);
        assert_eq!(s("5.15.80"), DefectStatus::Present);
        assert_eq!(s("6.1.178"), DefectStatus::Fixed);
        assert_eq!(s("6.1.192"), DefectStatus::Fixed);
        assert_eq!(s("6.12.118-thinsim2"), DefectStatus::Fixed);
        assert_eq!(s("6.12.140"), DefectStatus::Fixed);
        assert_eq!(s("6.12.117"), DefectStatus::Unknown);
        assert_eq!(s("6.6.50"), DefectStatus::Unknown);
        assert_eq!(s("6.18.2"), DefectStatus::Unknown);
        assert_eq!(s("garbage"), DefectStatus::Unknown);
    }
}
