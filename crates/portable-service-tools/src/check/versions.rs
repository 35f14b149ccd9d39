//! The systemd versions `check` knows and what each does differently: the measured versions,
//! whose rules a version between them follows, and from which version on each difference
//! holds. Kept together so that what changed when, and how it was measured, reads in one place.

/// The systemd versions whose differences `check` knows, measured in VMs (tests/tests/acceptance):
/// Debian's builds of 247 to 262, and 239, 245 and 249 built from systemd's sources
/// (tests/old-hosts.sh).
pub const SYSTEMD_VERSIONS: [u32; 8] = [239, 245, 247, 249, 252, 254, 257, 262];
/// The oldest systemd with portable services, the manual's; versions from here to the first
/// measured one get its rules, and the report says so.
pub const OLDEST: u32 = 239;
/// The newest of them: the rules `check` applies unless told a version.
pub const NEWEST: u32 = SYSTEMD_VERSIONS[SYSTEMD_VERSIONS.len() - 1];

/// The rules a systemd version follows: those of the newest measured version not above it (for
/// one older than every measured version, the oldest measured).
pub fn rules_of(version: u32) -> u32 {
    SYSTEMD_VERSIONS
        .into_iter()
        .filter(|v| *v <= version)
        .max()
        .unwrap_or(SYSTEMD_VERSIONS[0])
}

/// From this version on, portabled follows a unit that is an absolute symlink inside the image
/// (measured: 252, 254 and 257 pass over it silently, 262 attaches it;
/// tests/tests/acceptance/differential.rs).
pub(super) const FOLLOWS_ABSOLUTE_UNIT_LINKS: u32 = 262;
/// From this version on, portabled gives only services its profile's drop-in (measured: 239
/// refuses an image with a socket to attach, "No such file or directory": it looks for
/// `socket.conf` in the profile and takes its absence for an error; RHEL 8.10's 239 does the
/// same; 245 fixed the comparison).
pub const PROFILES_SERVICES_ONLY: u32 = 245;
/// From this version on, a service with `PrivateDevices=yes` (every profile but `trusted`
/// sets it) runs in its image (measured: under it 239 ran a `RootImage=` service's programs
/// from the host's root, so the image's failed 203/EXEC and a program the host has at that path
/// ran in their place; 245 ran the image's).
pub const PRIVATE_DEVICES_IN_THE_IMAGE: u32 = 245;
/// From this version on, portabled waits for udev's link to an image's loop device before it
/// mounts an image of one file system (measured: 239 lost that race now and then; the sources:
/// 245.7).
pub const WAITS_FOR_UDEV: u32 = 245;
/// From this version on, systemd looks up a program named without a path when it runs it, in
/// the service's own root (measured: 245 fails such a unit to load, "bad-setting", looking it up
/// on the host; 247 runs it from the image; the sources: 247 moved the lookup).
pub(super) const FINDS_NAMES_IN_THE_IMAGE: u32 = 247;
/// From this version on, portabled refuses matches outside the image's `PORTABLE_PREFIXES=`
/// and an os-release without `ID=` (measured: 247 attaches both; the sources have them from 250).
pub(super) const READS_PORTABLE_PREFIXES: u32 = 252;
/// From this version on, `portablectl attach --extension` exists (measured: 245's and 247's
/// portablectl don't know the option, 249's does).
pub const ATTACHES_EXTENSIONS: u32 = 249;
/// From this version on, an extension's `SYSEXT_SCOPE=` and `ARCHITECTURE=` count, and `ID=_any`
/// matches any base (measured: 249 compares ID, the level and VERSION_ID only, and takes `_any`
/// for an ID like any other; the sources have the three from 250).
pub(super) const READS_SCOPE_AND_ARCHITECTURE: u32 = 252;
/// From this version on, systemd sets up dm-verity from the hash tree beside a naked image
/// (measured: 245 ran an image whose block was changed, and the change reached squashfs, not
/// dm-verity; the sources: `RootVerity=` and the `.verity` file came in 247, a signature's
/// `RootHashSignature=` in 246).
pub(super) const READS_HASH_TREE_BESIDE: u32 = 247;
/// From this version on, systemd checks a root hash's signature against /etc/verity.d/ in
/// userspace and knows a DDI's signature partition (the sources: 250). 247 hands a sidecar
/// signature to the kernel, which checks it against its own keyring only (measured: the service
/// fails with 226/NAMESPACE with the certificate in /etc/verity.d/), and ignores a signature
/// partition (measured: a signed DDI runs, changed or not).
pub(super) const CHECKS_SIGNATURES: u32 = 252;
/// From this version on, portabled passes over an empty unit file as a masked one and looks on
/// for one of its name (measured: 247 attaches it, and the attached unit is masked).
pub(super) const PASSES_OVER_EMPTY_UNITS: u32 = 252;
/// From this version on, systemd-dissect says what an image is for ("✓ portable service";
/// measured: 247 prints its partitions and os-release only; the sources have it from 250).
pub const NAMES_USES: u32 = 252;
/// From this version on, an extension's ID may be one of the base's `ID_LIKE=` (measured:
/// tests/tests/acceptance/extensions.rs).
pub(super) const MATCHES_ID_LIKE: u32 = 257;
/// From this version on, an extension holding /usr/lib/os-release is refused (measured there
/// too: 252 attaches it; 254 says it "lacks extension-release data", 257 and 262 refuse it).
pub(super) const FORBIDS_OS_RELEASE: u32 = 254;
