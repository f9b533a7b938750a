//! POSIX attributes (mode, owner, times, symlink target) kept in S3 user metadata.
//!
//! S3 objects have no owner, mode or mtime of their own, so every FUSE-like tool keeps them
//! in `x-amz-meta-*` headers, each with its own key names, number bases and time formats.
//! bucketfs writes the s3fs-fuse convention ([`encode`]) so a bucket it has written stays
//! usable from s3fs (and from geesefs and rclone, which read the same keys), and it reads
//! every common convention ([`parse`]) so a bucket filled by another tool shows the right
//! modes and times. [`is_posix_key`] tells which keys are these attributes, so they are not
//! shown as `user.*` extended attributes.
//!
//! What each tool writes (keys as stored here: lowercase, without `x-amz-meta-`):
//!
//! | tool | keys | format |
//! |---|---|---|
//! | s3fs-fuse | `mode`, `uid`, `gid`, `mtime`, `ctime`, `atime`, `rdev` | decimal `st_mode` with type bits (`33188`); times `SECONDS` or `SECONDS.NNNNNNNNN`; `rdev` decimal (a device's number) |
//! | AWS file services (DataSync, FSx for Lustre, S3 File Gateway) | `file-permissions`, `file-owner`, `file-group`, `file-mtime`, `file-atime`, `file-ctime` | permissions octal with type bits (`0100664`); times integer nanoseconds with an `ns` suffix (`1595002920000000000ns`) |
//! | rclone | `mtime` | float seconds, trailing zeros dropped (`1606478323.1234`) |
//! | rclone `--metadata` | `mode`, `uid`, `gid`, `atime`, `btime` | mode octal with type bits (`100664`, docs show `0100664`); times RFC 3339 |
//! | geesefs | `mode`, `uid`, `gid`, `mtime` (names configurable), `--symlink-target` | decimal `st_mode`; mtime integer seconds; target percent-escaped |
//! | gsutil `-P` / gcloud storage | `goog-reserved-posix-{mode,uid,gid}`, `goog-reserved-file-{mtime,atime}` | mode 3 octal digits, permissions only (`644`); integer seconds; `-1` = unknown |
//! | gcsfuse | `gcsfuse_mtime` | RFC 3339 with nanoseconds |
//! | s3cmd | `s3cmd-attrs` | `atime:S/ctime:S/gid:N/gname:g/md5:h/mode:33188/mtime:S/uid:N/uname:u` (mode decimal) |
//! | MinIO mc `-a` | `mc-attrs` | as s3cmd, times `SECONDS#NANOSECONDS` (nanoseconds as an integer, not a fraction) |
//!
//! rclone's `btime` has no field here; it stays ordinary user metadata. Times before the
//! epoch or after year 9999 are ignored. bucketfs writes the AWS convention too when asked
//! (`aws_file_metadata`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::store::UserMetadata;

/// The file-type bits of `st_mode`.
pub const S_IFMT: u32 = 0o170000;
pub const S_IFIFO: u32 = 0o010000;
pub const S_IFCHR: u32 = 0o020000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFBLK: u32 = 0o060000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFLNK: u32 = 0o120000;
pub const S_IFSOCK: u32 = 0o140000;
/// Permission, setuid, setgid and sticky bits.
const PERM_BITS: u32 = 0o7777;
/// The largest valid `st_mode`.
const MAX_MODE: u32 = S_IFMT | PERM_BITS;
/// Every valid file type.
const FILE_TYPES: [u32; 7] = [
    S_IFIFO, S_IFCHR, S_IFDIR, S_IFBLK, S_IFREG, S_IFLNK, S_IFSOCK,
];
/// Latest time accepted: 9999-12-31T23:59:59Z; a larger value is taken as garbage.
const MAX_SECONDS: u64 = 253_402_300_799;
const NANOS_PER_SECOND: u32 = 1_000_000_000;

/// s3fs keys, shared by rclone and geesefs (with rclone's formats for `mode` and `atime`).
pub const MODE_KEY: &str = "mode";
pub const UID_KEY: &str = "uid";
pub const GID_KEY: &str = "gid";
pub const MTIME_KEY: &str = "mtime";
pub const ATIME_KEY: &str = "atime";
pub const CTIME_KEY: &str = "ctime";
/// The device number of a character or block device (decimal, Linux's encoding).
pub const RDEV_KEY: &str = "rdev";
/// AWS file services: permissions octal with type bits, times `NANOSECONDSns`.
pub const AWS_PERMISSIONS_KEY: &str = "file-permissions";
pub const AWS_OWNER_KEY: &str = "file-owner";
pub const AWS_GROUP_KEY: &str = "file-group";
pub const AWS_MTIME_KEY: &str = "file-mtime";
pub const AWS_ATIME_KEY: &str = "file-atime";
pub const AWS_CTIME_KEY: &str = "file-ctime";
/// geesefs: the target of a symlink, percent-escaped (`%25` for `%`, `%XX` for unprintables).
pub const GEESEFS_SYMLINK_KEY: &str = "--symlink-target";
/// gsutil `-P` / `gcloud storage --preserve-posix`.
pub const GCS_MODE_KEY: &str = "goog-reserved-posix-mode";
pub const GCS_UID_KEY: &str = "goog-reserved-posix-uid";
pub const GCS_GID_KEY: &str = "goog-reserved-posix-gid";
pub const GCS_MTIME_KEY: &str = "goog-reserved-file-mtime";
pub const GCS_ATIME_KEY: &str = "goog-reserved-file-atime";
/// gcsfuse's mtime, RFC 3339.
pub const GCSFUSE_MTIME_KEY: &str = "gcsfuse_mtime";
/// s3cmd: all attributes in one `name:value/name:value` key.
pub const S3CMD_ATTRS_KEY: &str = "s3cmd-attrs";
/// MinIO client (`mc cp -a`, `mc mirror -a`): the s3cmd layout with `SECONDS#NANOS` times.
pub const MC_ATTRS_KEY: &str = "mc-attrs";

/// bucketfs: a random value an exclusive create (`exclusive_in_bucket`) stores with the empty
/// object reserving the name, so a retried reservation tells its own object from another
/// host's (the same empty body). Never shown as an xattr, dropped at the next upload.
pub const CLAIM_KEY: &str = "bucketfs-claim";

/// Every key that belongs to a convention handled here.
const POSIX_KEYS: [&str; 23] = [
    MODE_KEY,
    UID_KEY,
    GID_KEY,
    MTIME_KEY,
    ATIME_KEY,
    CTIME_KEY,
    RDEV_KEY,
    AWS_PERMISSIONS_KEY,
    AWS_OWNER_KEY,
    AWS_GROUP_KEY,
    AWS_MTIME_KEY,
    AWS_ATIME_KEY,
    AWS_CTIME_KEY,
    GEESEFS_SYMLINK_KEY,
    GCS_MODE_KEY,
    GCS_UID_KEY,
    GCS_GID_KEY,
    GCS_MTIME_KEY,
    GCS_ATIME_KEY,
    GCSFUSE_MTIME_KEY,
    S3CMD_ATTRS_KEY,
    MC_ATTRS_KEY,
    CLAIM_KEY,
];

/// POSIX attributes found in (or to be written to) an object's user metadata. None = not stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Posix {
    /// st_mode: type bits (S_IFREG, S_IFDIR, S_IFLNK...) + permission bits, or only permission bits (type bits 0) when the convention stores no type.
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mtime: Option<std::time::SystemTime>,
    pub atime: Option<std::time::SystemTime>,
    pub ctime: Option<std::time::SystemTime>,
    /// Device number of a character or block device (the encoding FUSE and `stat` use).
    pub rdev: Option<u32>,
    /// Target of a symlink kept in metadata (geesefs style) rather than in the object body.
    pub symlink_target: Option<String>,
}

impl Posix {
    /// Each field of `self`, or of `other` where `self` has none.
    fn or(self, other: Posix) -> Posix {
        Posix {
            mode: self.mode.or(other.mode),
            uid: self.uid.or(other.uid),
            gid: self.gid.or(other.gid),
            mtime: self.mtime.or(other.mtime),
            atime: self.atime.or(other.atime),
            ctime: self.ctime.or(other.ctime),
            rdev: self.rdev.or(other.rdev),
            symlink_target: self.symlink_target.or(other.symlink_target),
        }
    }
}

/// Reads every common convention. Precedence: s3fs keys first, then rclone, geesefs, GCS (goog-reserved-*), s3cmd (s3cmd-attrs). Field by field: a field missing in the winning convention may come from another. Unparsable values are ignored (never panic, never error).
///
/// MinIO's `mc-attrs` comes last. A symlink target from geesefs leaves `mode` as stored
/// (geesefs keeps no type bits for symlinks): the target's presence is what marks a symlink.
pub fn parse(meta: &UserMetadata) -> Posix {
    [
        s3fs(meta),
        aws(meta),
        rclone(meta),
        geesefs(meta),
        gcs(meta),
        s3cmd(meta),
        mc(meta),
    ]
    .into_iter()
    .fold(Posix::default(), Posix::or)
}

/// Writes the s3fs convention into `out` after removing every key `is_posix_key` matches (so stale values of other tools' conventions never win later): "mode" = decimal st_mode, "uid", "gid" decimal, "mtime"/"atime"/"ctime" = "SECONDS.NANOSECONDS" with exactly 9 fraction digits (e.g. "1700000000.000000001"). Only the fields that are Some. (symlink_target is not written: bucketfs stores the target as the body, like s3fs.)
///
/// Pass the complete attributes (a field left None loses what another key held). A mode
/// without type bits is written as octal with a leading `0` (`0644`): s3fs and geesefs read
/// `mode` with C/Go base-0 rules and rclone as octal, so all of them and [`parse`] read it
/// back right, where a bare decimal `420` would read as octal 0o420.
///
/// With `aws`, the AWS file services' keys are written as well (`file-permissions` octal
/// with type bits, `file-owner`, `file-group`, `file-mtime`/`-atime`/`-ctime` in
/// nanoseconds with an `ns` suffix), so DataSync and FSx for Lustre read the same attributes.
pub fn encode(p: &Posix, out: &mut UserMetadata, aws: bool) {
    out.retain(|key, _| !is_posix_key(key));
    let s3fs = [
        (MODE_KEY, p.mode.map(format_mode)),
        (UID_KEY, p.uid.map(|uid| uid.to_string())),
        (GID_KEY, p.gid.map(|gid| gid.to_string())),
        (MTIME_KEY, p.mtime.map(format_time)),
        (ATIME_KEY, p.atime.map(format_time)),
        (CTIME_KEY, p.ctime.map(format_time)),
        (RDEV_KEY, p.rdev.map(|rdev| rdev.to_string())),
    ];
    let aws_fields = [
        (AWS_PERMISSIONS_KEY, p.mode.map(|m| format!("0{m:o}"))),
        (AWS_OWNER_KEY, p.uid.map(|uid| uid.to_string())),
        (AWS_GROUP_KEY, p.gid.map(|gid| gid.to_string())),
        (AWS_MTIME_KEY, p.mtime.map(format_nanos)),
        (AWS_ATIME_KEY, p.atime.map(format_nanos)),
        (AWS_CTIME_KEY, p.ctime.map(format_nanos)),
    ];
    let aws_fields = if aws { &aws_fields[..] } else { &[] };
    for (key, value) in s3fs.iter().chain(aws_fields) {
        if let Some(value) = value {
            out.insert(key.to_string(), value.clone());
        }
    }
}

/// A time as the AWS file services write it: nanoseconds since the epoch, then `ns`.
fn format_nanos(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    format!("{}ns", since.as_nanos())
}

/// A time as the AWS file services write it (`1595002920000000000ns`); any other form
/// [`parse_time`] reads is taken too.
fn parse_nanos(value: &str) -> Option<SystemTime> {
    match value.strip_suffix("ns") {
        Some(nanos) => {
            let nanos = decimal_u64(nanos)?;
            let per_second = u64::from(NANOS_PER_SECOND);
            epoch_time(nanos / per_second, (nanos % per_second) as u32)
        }
        None => parse_time(value),
    }
}

/// True for keys that belong to any POSIX convention handled here (they are not shown as user.* extended attributes).
///
/// Case-insensitive, so a stray uppercase key is cleaned up by [`encode`] too.
pub fn is_posix_key(key: &str) -> bool {
    POSIX_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key))
}

/// Formats a time as "SECONDS.NANOSECONDS" (9 digits); times before the epoch clamp to 0.
pub fn format_time(t: std::time::SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    format!("{}.{:09}", since.as_secs(), since.subsec_nanos())
}

/// `mode` as s3fs writes it: decimal, or `0`-prefixed octal when there are no type bits.
fn format_mode(mode: u32) -> String {
    if mode & S_IFMT == 0 {
        format!("0{mode:o}")
    } else {
        mode.to_string()
    }
}

// ---- the conventions, each reading only its own keys ----

/// s3fs: decimal `mode` (see [`s3fs_mode`]), decimal ids, times in seconds. Its time keys are
/// also rclone's and geesefs's, so [`parse_time`] takes RFC 3339 (rclone's `atime`) as well.
fn s3fs(meta: &UserMetadata) -> Posix {
    Posix {
        mode: get(meta, MODE_KEY).and_then(s3fs_mode),
        uid: get(meta, UID_KEY).and_then(decimal_u32),
        gid: get(meta, GID_KEY).and_then(decimal_u32),
        mtime: get(meta, MTIME_KEY).and_then(parse_time),
        atime: get(meta, ATIME_KEY).and_then(parse_time),
        ctime: get(meta, CTIME_KEY).and_then(parse_time),
        rdev: get(meta, RDEV_KEY).and_then(decimal_u32),
        symlink_target: None,
    }
}

/// AWS file services (DataSync, FSx for Lustre, S3 File Gateway): `file-permissions` octal
/// with type bits (`0100664`), decimal owner and group, times in nanoseconds (`…ns`).
fn aws(meta: &UserMetadata) -> Posix {
    Posix {
        mode: get(meta, AWS_PERMISSIONS_KEY).and_then(octal_mode),
        uid: get(meta, AWS_OWNER_KEY).and_then(decimal_u32),
        gid: get(meta, AWS_GROUP_KEY).and_then(decimal_u32),
        mtime: get(meta, AWS_MTIME_KEY).and_then(parse_nanos),
        atime: get(meta, AWS_ATIME_KEY).and_then(parse_nanos),
        ctime: get(meta, AWS_CTIME_KEY).and_then(parse_nanos),
        ..Posix::default()
    }
}

/// rclone `--metadata`: the same keys, `mode` in octal. Its uid, gid and times are read
/// by [`s3fs`] already (decimal ids; float seconds or RFC 3339 times).
fn rclone(meta: &UserMetadata) -> Posix {
    Posix {
        mode: get(meta, MODE_KEY).and_then(octal_mode),
        ..Posix::default()
    }
}

/// geesefs: mode, ids and mtime use the s3fs keys and formats (decimal `st_mode`, integer
/// seconds); what is its own is the symlink target.
fn geesefs(meta: &UserMetadata) -> Posix {
    Posix {
        symlink_target: get(meta, GEESEFS_SYMLINK_KEY).and_then(symlink_target),
        ..Posix::default()
    }
}

/// gsutil/gcloud (`goog-reserved-*`, mode octal) and gcsfuse (`gcsfuse_mtime`, which gcsfuse
/// itself prefers over `goog-reserved-file-mtime`).
fn gcs(meta: &UserMetadata) -> Posix {
    let gcsfuse_mtime = get(meta, GCSFUSE_MTIME_KEY).and_then(parse_time);
    Posix {
        mode: get(meta, GCS_MODE_KEY).and_then(octal_mode),
        uid: get(meta, GCS_UID_KEY).and_then(decimal_u32),
        gid: get(meta, GCS_GID_KEY).and_then(decimal_u32),
        mtime: gcsfuse_mtime.or_else(|| get(meta, GCS_MTIME_KEY).and_then(parse_time)),
        atime: get(meta, GCS_ATIME_KEY).and_then(parse_time),
        ..Posix::default()
    }
}

/// s3cmd: `s3cmd-attrs`.
fn s3cmd(meta: &UserMetadata) -> Posix {
    get(meta, S3CMD_ATTRS_KEY)
        .map(parse_attrs)
        .unwrap_or_default()
}

/// MinIO client: `mc-attrs`.
fn mc(meta: &UserMetadata) -> Posix {
    get(meta, MC_ATTRS_KEY).map(parse_attrs).unwrap_or_default()
}

/// A value, without surrounding whitespace.
fn get<'a>(meta: &'a UserMetadata, key: &str) -> Option<&'a str> {
    meta.get(key).map(|v| v.trim())
}

// ---- s3cmd / mc attribute lists ----

/// `name:value` pairs separated by `/`, in any order (s3cmd sorted them only in later
/// versions); `uname`, `gname`, `md5` and unknown names are skipped.
fn parse_attrs(attrs: &str) -> Posix {
    let field = |name: &str| attr_field(attrs, name);
    Posix {
        mode: field("mode").and_then(decimal_mode),
        uid: field("uid").and_then(decimal_u32),
        gid: field("gid").and_then(decimal_u32),
        mtime: field("mtime").and_then(attr_time),
        atime: field("atime").and_then(attr_time),
        ctime: field("ctime").and_then(attr_time),
        ..Posix::default()
    }
}

/// The value of the first `name:` field in an attribute list.
fn attr_field<'a>(attrs: &'a str, name: &str) -> Option<&'a str> {
    attrs
        .split('/')
        .filter_map(|pair| pair.trim().split_once(':'))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim())
}

/// mc's `SECONDS#NANOSECONDS`, or any time [`parse_time`] reads (s3cmd writes seconds).
fn attr_time(value: &str) -> Option<SystemTime> {
    match value.split_once('#') {
        Some((secs, nanos)) => {
            let nanos = decimal_u32(nanos).filter(|n| *n < NANOS_PER_SECOND)?;
            epoch_time(decimal_u64(secs)?, nanos)
        }
        None => parse_time(value),
    }
}

// ---- modes ----
//
// The `mode` key is shared: s3fs and geesefs write decimal `st_mode` with its type bits
// (`33188` = 0o100644), rclone writes octal with type bits (`100644`, or `0100644`), and a
// few writers keep permission bits only (`644`). The rule:
//
// 1. A leading `0` or `0o` means octal (s3fs and geesefs read `mode` with C/Go base-0 rules).
// 2. Decimal if the value is at most 0o177777 and its type bits are a valid file type:
//    `33188` (regular 0o100644), `16877` (dir 0o40755), `41471` (symlink 0o120777).
//    Exception: a decimal reading that gives a symlink whose permissions are not 0777
//    (symlinks are 0777 on Linux, and s3fs writes them so) is rejected when the octal
//    reading is valid, so rclone's setgid/sticky directories (`42775`, `41777`) stay octal.
// 3. Otherwise octal, if every digit is 0-7 and the value is at most 0o177777 with a valid
//    (or no) file type: `100644`, `40755` (decimal 40755 has no valid type), `644`.
// 4. Otherwise decimal permission bits, if the value cannot be octal and is at most 0o7777
//    (`493` = 0o755).
//
// Ambiguity left: a five-digit string of octal digits valid both ways is read as decimal,
// so an rclone FIFO `10644` reads as a character device (decimal 10644 = 0o24624); rclone
// rarely meets FIFOs and s3fs is the primary convention. A decimal permission-only value
// written with digits 0-7 (`420`) reads as octal (0o420). Six-digit octal values
// (regular files, symlinks) never collide: as decimal they exceed 0o177777.

/// s3fs's reading of `mode` (rules 1, 2 and 4 above).
fn s3fs_mode(value: &str) -> Option<u32> {
    if value.len() > 1 && value.starts_with('0') {
        return None;
    }
    let mode = decimal_u32(value).filter(|m| *m <= MAX_MODE)?;
    if has_file_type(mode) {
        return (!is_implausible_symlink(mode) || octal_mode(value).is_none()).then_some(mode);
    }
    let permission_only = mode & S_IFMT == 0 && octal_u32(value).is_none();
    permission_only.then_some(mode)
}

/// An octal `st_mode` with a valid or no file type, optionally prefixed `0o` (rule 3).
fn octal_mode(value: &str) -> Option<u32> {
    let digits = value
        .strip_prefix("0o")
        .or_else(|| value.strip_prefix("0O"))
        .unwrap_or(value);
    octal_u32(digits).filter(|m| is_valid_mode(*m))
}

/// A decimal `st_mode` with a valid or no file type (s3cmd and mc).
fn decimal_mode(value: &str) -> Option<u32> {
    decimal_u32(value).filter(|m| is_valid_mode(*m))
}

fn is_valid_mode(mode: u32) -> bool {
    mode <= MAX_MODE && (mode & S_IFMT == 0 || has_file_type(mode))
}

fn has_file_type(mode: u32) -> bool {
    FILE_TYPES.contains(&(mode & S_IFMT))
}

/// A symlink whose permissions are not the 0777 every Linux symlink has.
fn is_implausible_symlink(mode: u32) -> bool {
    mode & S_IFMT == S_IFLNK && mode & PERM_BITS != 0o777
}

// ---- numbers ----

/// Only ASCII digits (no sign, no spaces), fitting in u64.
fn decimal_u64(value: &str) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

fn decimal_u32(value: &str) -> Option<u32> {
    decimal_u64(value).and_then(|n| u32::try_from(n).ok())
}

/// Only the digits 0-7, fitting in u32.
fn octal_u32(value: &str) -> Option<u32> {
    if value.is_empty() || !value.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(value, 8).ok()
}

// ---- times ----
//
// Accepted: integer seconds (s3fs, geesefs, gsutil, s3cmd), seconds with a 1-9 digit
// fraction (s3fs writes 9 digits, rclone drops trailing zeros; "1.5" is 1 s 500 ms), and
// RFC 3339 (rclone `--metadata` atime/btime, gcsfuse_mtime). No convention found stores
// milliseconds or nanoseconds as one integer, so such values are not guessed at: a
// 13-digit millisecond count is past year 9999 as seconds and is ignored. Negative times
// (gsutil's -1 "unknown", or pre-epoch) are ignored.

/// A time in any of the accepted forms.
fn parse_time(value: &str) -> Option<SystemTime> {
    epoch_seconds(value).or_else(|| rfc3339(value))
}

/// `SECONDS` or `SECONDS.FRACTION` with 1 to 9 fraction digits.
fn epoch_seconds(value: &str) -> Option<SystemTime> {
    let (secs, fraction) = match value.split_once('.') {
        Some((secs, fraction)) => (secs, Some(fraction)),
        None => (value, None),
    };
    let nanos = match fraction {
        Some(fraction) => fraction_nanos(fraction)?,
        None => 0,
    };
    epoch_time(decimal_u64(secs)?, nanos)
}

/// A decimal fraction of 1 to 9 digits, in nanoseconds ("5" is 500 ms).
fn fraction_nanos(fraction: &str) -> Option<u32> {
    let digits = u32::try_from(fraction.len()).ok().filter(|d| *d <= 9)?;
    let scale = 10u32.pow(9 - digits);
    decimal_u32(fraction).map(|n| n * scale)
}

fn rfc3339(value: &str) -> Option<SystemTime> {
    use time::format_description::well_known::Rfc3339;
    let t = time::OffsetDateTime::parse(value, &Rfc3339).ok()?;
    let secs = u64::try_from(t.unix_timestamp()).ok()?;
    epoch_time(secs, t.nanosecond())
}

/// The time `secs` + `nanos` after the epoch, if not past [`MAX_SECONDS`].
fn epoch_time(secs: u64, nanos: u32) -> Option<SystemTime> {
    (secs <= MAX_SECONDS && nanos < NANOS_PER_SECOND)
        .then(|| UNIX_EPOCH + Duration::new(secs, nanos))
}

// ---- symlink targets ----

/// geesefs's percent-escaped target; None if empty or not valid escaping/UTF-8.
fn symlink_target(value: &str) -> Option<String> {
    percent_decode(value).filter(|target| !target.is_empty())
}

/// `%XX` to the byte 0xXX; a `%` not followed by two hex digits makes the value invalid.
fn percent_decode(value: &str) -> Option<String> {
    let mut bytes = value.bytes();
    let mut out = Vec::with_capacity(value.len());
    while let Some(b) = bytes.next() {
        let byte = match b {
            b'%' => hex_byte(bytes.next()?, bytes.next()?)?,
            other => other,
        };
        out.push(byte);
    }
    String::from_utf8(out).ok()
}

fn hex_byte(high: u8, low: u8) -> Option<u8> {
    let digit = |c: u8| char::from(c).to_digit(16);
    let value = digit(high)? * 16 + digit(low)?;
    u8::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> UserMetadata {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    fn mode_of(value: &str) -> Option<u32> {
        parse(&meta(&[("mode", value)])).mode
    }

    fn mtime_of(value: &str) -> Option<SystemTime> {
        parse(&meta(&[("mtime", value)])).mtime
    }

    // ---- one test per convention ----

    #[test]
    fn s3fs_keys_are_decimal_mode_ids_and_second_times() {
        let p = parse(&meta(&[
            ("mode", "33188"),
            ("uid", "1000"),
            ("gid", "100"),
            ("mtime", "1700000000"),
            ("atime", "1700000001.5"),
            ("ctime", "1700000002.000000001"),
        ]));
        assert_eq!(
            p,
            Posix {
                mode: Some(0o100644),
                uid: Some(1000),
                gid: Some(100),
                mtime: Some(at(1_700_000_000, 0)),
                atime: Some(at(1_700_000_001, 500_000_000)),
                ctime: Some(at(1_700_000_002, 1)),
                ..Posix::default()
            }
        );
    }

    #[test]
    fn rclone_float_mtime_keeps_nanoseconds_and_short_fractions_scale() {
        assert_eq!(
            mtime_of("1606478323.123456789"),
            Some(at(1_606_478_323, 123_456_789))
        );
        // rclone drops trailing zeros.
        assert_eq!(
            mtime_of("1606478323.1"),
            Some(at(1_606_478_323, 100_000_000))
        );
        assert_eq!(mtime_of("1.5"), Some(at(1, 500_000_000)));
    }

    #[test]
    fn rclone_metadata_mode_is_octal_and_times_rfc3339() {
        let p = parse(&meta(&[
            ("mode", "100664"),
            ("uid", "1000"),
            ("gid", "1000"),
            ("mtime", "1683824051.523399602"),
            ("atime", "2023-05-11T17:54:11.523399602+01:00"),
            ("btime", "2023-05-11T17:54:11.523399602+01:00"),
        ]));
        assert_eq!(p.mode, Some(0o100664));
        assert_eq!((p.uid, p.gid), (Some(1000), Some(1000)));
        assert_eq!(p.mtime, Some(at(1_683_824_051, 523_399_602)));
        assert_eq!(p.atime, Some(at(1_683_824_051, 523_399_602)));
    }

    #[test]
    fn rclone_mode_with_leading_zero_is_octal() {
        assert_eq!(mode_of("0100664"), Some(0o100664));
    }

    #[test]
    fn rfc3339_times_are_read_on_any_time_key() {
        let p = parse(&meta(&[("ctime", "2001-02-03T04:05:06.000000007Z")]));
        assert_eq!(p.ctime, Some(at(981_173_106, 7)));
    }

    #[test]
    fn geesefs_symlink_target_is_read_and_unescaped() {
        let p = parse(&meta(&[
            ("--symlink-target", "../dir/100%25 real%0A"),
            ("mode", "16877"),
            ("mtime", "1700000000"),
        ]));
        assert_eq!(p.symlink_target.as_deref(), Some("../dir/100% real\n"));
        assert_eq!(p.mode, Some(0o40755));
        assert_eq!(p.mtime, Some(at(1_700_000_000, 0)));
    }

    #[test]
    fn geesefs_symlink_target_with_bad_escape_or_empty_is_ignored() {
        for bad in ["a%zz", "a%4", "%ff%fe", ""] {
            let p = parse(&meta(&[("--symlink-target", bad)]));
            assert_eq!(p.symlink_target, None, "{bad:?}");
        }
    }

    #[test]
    fn gcs_goog_reserved_keys_are_octal_permissions_and_second_times() {
        let p = parse(&meta(&[
            ("goog-reserved-posix-mode", "644"),
            ("goog-reserved-posix-uid", "1000"),
            ("goog-reserved-posix-gid", "1001"),
            ("goog-reserved-file-mtime", "1700000000"),
            ("goog-reserved-file-atime", "1700000100"),
        ]));
        assert_eq!(
            p,
            Posix {
                mode: Some(0o644),
                uid: Some(1000),
                gid: Some(1001),
                mtime: Some(at(1_700_000_000, 0)),
                atime: Some(at(1_700_000_100, 0)),
                ..Posix::default()
            }
        );
    }

    #[test]
    fn gcs_minus_one_means_unknown() {
        let p = parse(&meta(&[
            ("goog-reserved-posix-mode", "-1"),
            ("goog-reserved-posix-uid", "-1"),
            ("goog-reserved-file-mtime", "-1"),
        ]));
        assert_eq!(p, Posix::default());
    }

    #[test]
    fn gcsfuse_mtime_is_rfc3339_and_wins_over_goog_reserved_mtime() {
        let p = parse(&meta(&[
            ("gcsfuse_mtime", "2001-02-03T04:05:06.000000007Z"),
            ("goog-reserved-file-mtime", "1700000000"),
        ]));
        assert_eq!(p.mtime, Some(at(981_173_106, 7)));
    }

    #[test]
    fn s3cmd_attrs_are_one_key_with_decimal_mode_and_second_times() {
        let value = "atime:1584989483/ctime:1584097909/gid:1000/gname:ninesuns/\
                     md5:f7985d578d7469a176418762e89d020f/mode:33188/mtime:1584097909/\
                     uid:1000/uname:ninesuns";
        let p = parse(&meta(&[("s3cmd-attrs", value)]));
        assert_eq!(
            p,
            Posix {
                mode: Some(0o100644),
                uid: Some(1000),
                gid: Some(1000),
                mtime: Some(at(1_584_097_909, 0)),
                atime: Some(at(1_584_989_483, 0)),
                ctime: Some(at(1_584_097_909, 0)),
                ..Posix::default()
            }
        );
    }

    #[test]
    fn s3cmd_attrs_in_any_order_and_with_garbage_fields() {
        let value = "uid:0/junk/gname:root/mode:16877/:x/mtime:1488265189/gid:nope";
        let p = parse(&meta(&[("s3cmd-attrs", value)]));
        assert_eq!(p.uid, Some(0));
        assert_eq!(p.mode, Some(0o40755));
        assert_eq!(p.mtime, Some(at(1_488_265_189, 0)));
        assert_eq!(p.gid, None);
    }

    #[test]
    fn mc_attrs_times_carry_integer_nanoseconds_after_a_hash() {
        let value = "atime:1605622283#477880624/gid:1000/gname:u/mode:33188/\
                     mtime:1605622283#5/uid:1000/uname:u";
        let p = parse(&meta(&[("mc-attrs", value)]));
        assert_eq!(p.mode, Some(0o100644));
        assert_eq!(p.atime, Some(at(1_605_622_283, 477_880_624)));
        // "#5" is five nanoseconds, not half a second.
        assert_eq!(p.mtime, Some(at(1_605_622_283, 5)));
        assert_eq!((p.uid, p.gid), (Some(1000), Some(1000)));
    }

    // ---- precedence ----

    #[test]
    fn s3fs_keys_win_over_every_other_convention() {
        let p = parse(&meta(&[
            ("mode", "33188"),
            ("mtime", "1000"),
            ("goog-reserved-posix-mode", "600"),
            ("goog-reserved-file-mtime", "2000"),
            ("s3cmd-attrs", "mode:16877/mtime:3000"),
        ]));
        assert_eq!(p.mode, Some(0o100644));
        assert_eq!(p.mtime, Some(at(1000, 0)));
    }

    #[test]
    fn gcs_wins_over_s3cmd_which_wins_over_mc() {
        let p = parse(&meta(&[
            ("goog-reserved-posix-uid", "1"),
            ("s3cmd-attrs", "uid:2/gid:2"),
            ("mc-attrs", "uid:3/gid:3/ctime:3"),
        ]));
        assert_eq!((p.uid, p.gid), (Some(1), Some(2)));
        assert_eq!(p.ctime, Some(at(3, 0)));
    }

    #[test]
    fn missing_fields_are_filled_from_lower_conventions() {
        let p = parse(&meta(&[
            ("uid", "1000"),
            ("goog-reserved-posix-mode", "750"),
            ("s3cmd-attrs", "gid:20/mtime:1700000000/atime:1700000001"),
        ]));
        assert_eq!(p.uid, Some(1000));
        assert_eq!(p.mode, Some(0o750));
        assert_eq!(p.gid, Some(20));
        assert_eq!(p.mtime, Some(at(1_700_000_000, 0)));
        assert_eq!(p.atime, Some(at(1_700_000_001, 0)));
    }

    #[test]
    fn an_unparsable_winner_falls_through_to_the_next_convention() {
        let p = parse(&meta(&[
            ("mtime", "yesterday"),
            ("goog-reserved-file-mtime", "1700000000"),
        ]));
        assert_eq!(p.mtime, Some(at(1_700_000_000, 0)));
    }

    // ---- decimal or octal `mode` ----

    #[test]
    fn mode_33188_is_decimal_regular_file() {
        assert_eq!(mode_of("33188"), Some(0o100644));
    }

    #[test]
    fn mode_100644_is_octal_because_too_big_for_decimal() {
        assert_eq!(mode_of("100644"), Some(0o100644));
    }

    #[test]
    fn mode_40755_is_octal_dir_because_decimal_has_no_valid_type() {
        assert_eq!(mode_of("40755"), Some(0o40755));
    }

    #[test]
    fn mode_16877_is_decimal_dir() {
        assert_eq!(mode_of("16877"), Some(0o40755));
    }

    #[test]
    fn mode_41471_is_decimal_symlink() {
        assert_eq!(mode_of("41471"), Some(0o120777));
    }

    #[test]
    fn mode_644_is_octal_permission_bits_only() {
        assert_eq!(mode_of("644"), Some(0o644));
    }

    #[test]
    fn mode_as_decimal_symlink_without_0777_is_octal_when_it_can_be() {
        // rclone's setgid and sticky directories, not symlinks 0o123427 / 0o121461.
        assert_eq!(mode_of("42775"), Some(0o42775));
        assert_eq!(mode_of("41777"), Some(0o41777));
    }

    #[test]
    fn mode_with_0o_prefix_is_octal() {
        assert_eq!(mode_of("0o755"), Some(0o755));
        assert_eq!(mode_of("0o100755"), Some(0o100755));
    }

    #[test]
    fn mode_with_8_or_9_and_no_type_is_decimal_permission_bits() {
        assert_eq!(mode_of("493"), Some(0o755));
    }

    #[test]
    fn mode_valid_both_ways_reads_as_decimal() {
        // Documented ambiguity: s3fs's decimal reading wins (char device 0o24624).
        assert_eq!(mode_of("10644"), Some(0o24624));
    }

    #[test]
    fn mode_with_invalid_type_or_out_of_range_is_ignored() {
        for bad in [
            "170644", "0170644", "200000", "99999", "0o8", "0x1ff", "-420",
        ] {
            assert_eq!(mode_of(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn gcs_and_attrs_modes_use_their_own_base_only() {
        // goog-reserved mode is always octal, s3cmd's always decimal.
        assert_eq!(
            parse(&meta(&[("goog-reserved-posix-mode", "33188")])).mode,
            None
        );
        assert_eq!(
            parse(&meta(&[("s3cmd-attrs", "mode:420")])).mode,
            Some(0o644)
        );
    }

    // ---- encode ----

    #[test]
    fn encode_then_parse_round_trips_nanoseconds() {
        let p = Posix {
            mode: Some(0o100640),
            uid: Some(1000),
            gid: Some(1000),
            mtime: Some(at(1_700_000_000, 1)),
            atime: Some(at(1_700_000_001, 999_999_999)),
            ctime: Some(at(1_700_000_002, 123_456_789)),
            rdev: Some(0x0801),
            symlink_target: None,
        };
        for aws in [false, true] {
            let mut out = UserMetadata::new();
            encode(&p, &mut out, aws);
            assert_eq!(parse(&out), p, "aws: {aws}");
            out.retain(|k, _| k.starts_with("file-"));
            if aws {
                assert_eq!(
                    parse(&out),
                    Posix {
                        rdev: None,
                        ..p.clone()
                    },
                    "the AWS keys alone"
                );
            } else {
                assert!(out.is_empty(), "AWS keys only when asked");
            }
        }
    }

    #[test]
    fn aws_file_services_keys_are_octal_permissions_and_nanosecond_times() {
        let p = parse(&meta(&[
            ("file-permissions", "0100664"),
            ("file-owner", "500"),
            ("file-group", "501"),
            ("file-mtime", "1595002920123456789ns"),
            ("file-atime", "1595002921000000000ns"),
        ]));
        assert_eq!(p.mode, Some(0o100664));
        assert_eq!((p.uid, p.gid), (Some(500), Some(501)));
        assert_eq!(p.mtime, Some(at(1_595_002_920, 123_456_789)));
        assert_eq!(p.atime, Some(at(1_595_002_921, 0)));
        assert!(is_posix_key("file-permissions"), "not shown as user.*");
        let both = parse(&meta(&[("mode", "33188"), ("file-permissions", "0100600")]));
        assert_eq!(both.mode, Some(0o100644), "the s3fs key wins");
    }

    #[test]
    fn a_device_number_is_the_decimal_rdev_key() {
        let p = parse(&meta(&[("mode", "8630"), ("rdev", "259")])); // 0o20666, 1:3
        assert_eq!((p.mode, p.rdev), (Some(0o020666), Some(259)));
        let mut out = UserMetadata::new();
        encode(&p, &mut out, false);
        assert_eq!(out.get("rdev").map(String::as_str), Some("259"));
    }

    #[test]
    fn encode_writes_s3fs_format() {
        let p = Posix {
            mode: Some(0o100644),
            uid: Some(1000),
            gid: Some(0),
            mtime: Some(at(1_700_000_000, 1)),
            atime: Some(at(1_700_000_000, 0)),
            ..Posix::default()
        };
        let mut out = UserMetadata::new();
        encode(&p, &mut out, false);
        assert_eq!(
            out,
            meta(&[
                ("mode", "33188"),
                ("uid", "1000"),
                ("gid", "0"),
                ("mtime", "1700000000.000000001"),
                ("atime", "1700000000.000000000"),
            ])
        );
    }

    #[test]
    fn encode_removes_foreign_posix_keys_but_keeps_user_keys() {
        let mut out = meta(&[
            ("goog-reserved-posix-mode", "777"),
            ("gcsfuse_mtime", "2001-02-03T04:05:06Z"),
            ("s3cmd-attrs", "mode:33279"),
            ("mc-attrs", "mode:33279"),
            ("--symlink-target", "elsewhere"),
            ("ctime", "5"),
            ("Mode", "0777"),
            ("color", "blue"),
            ("btime", "2001-02-03T04:05:06Z"),
            ("md5chksum", "abc"),
        ]);
        let p = Posix {
            mode: Some(0o100600),
            symlink_target: Some("ignored".into()),
            ..Posix::default()
        };
        encode(&p, &mut out, false);
        assert_eq!(
            out,
            meta(&[
                ("btime", "2001-02-03T04:05:06Z"),
                ("color", "blue"),
                ("md5chksum", "abc"),
                ("mode", "33152"),
            ])
        );
    }

    #[test]
    fn encode_writes_only_fields_that_are_some() {
        let mut out = UserMetadata::new();
        encode(&Posix::default(), &mut out, false);
        assert!(out.is_empty());
    }

    #[test]
    fn encode_writes_a_typeless_mode_as_zero_prefixed_octal_that_reads_back() {
        let p = Posix {
            mode: Some(0o644),
            ..Posix::default()
        };
        let mut out = UserMetadata::new();
        encode(&p, &mut out, false);
        assert_eq!(out.get("mode").map(String::as_str), Some("0644"));
        assert_eq!(parse(&out).mode, Some(0o644));
    }

    // ---- format_time ----

    #[test]
    fn format_time_always_has_nine_fraction_digits() {
        assert_eq!(format_time(at(1_700_000_000, 1)), "1700000000.000000001");
        assert_eq!(format_time(at(5, 0)), "5.000000000");
        assert_eq!(format_time(at(5, 120_000_000)), "5.120000000");
    }

    #[test]
    fn format_time_clamps_times_before_the_epoch_to_zero() {
        let before = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(format_time(before), "0.000000000");
    }

    // ---- is_posix_key ----

    #[test]
    fn posix_keys_of_every_convention_are_recognised() {
        for key in POSIX_KEYS {
            assert!(is_posix_key(key), "{key}");
        }
        assert!(is_posix_key("MTIME"));
    }

    #[test]
    fn other_keys_are_user_keys() {
        for key in [
            "btime",
            "md5chksum",
            "color",
            "modes",
            "x-amz-meta-mode",
            "",
        ] {
            assert!(!is_posix_key(key), "{key}");
        }
    }

    // ---- garbage ----

    #[test]
    fn garbage_times_are_ignored() {
        let bad = [
            "",
            " ",
            "abc",
            "-5",
            "+5",
            "1e9",
            "1.",
            ".5",
            "1.1234567890",
            "1.-5",
            "1..2",
            "0x10",
            "99999999999999999999",
            "253402300800",
            "1700000000000",
            "2023-13-45T00:00:00Z",
            "1960-01-01T00:00:00Z",
            "2023-05-11 17:54:11",
            "NaN",
        ];
        for value in bad {
            assert_eq!(mtime_of(value), None, "{value:?}");
        }
    }

    #[test]
    fn surrounding_whitespace_is_tolerated() {
        assert_eq!(mtime_of(" 1700000000 "), Some(at(1_700_000_000, 0)));
        assert_eq!(mode_of(" 33188"), Some(0o100644));
    }

    #[test]
    fn epoch_zero_and_year_9999_are_valid_times() {
        assert_eq!(mtime_of("0"), Some(UNIX_EPOCH));
        assert_eq!(mtime_of("253402300799"), Some(at(253_402_300_799, 0)));
    }

    #[test]
    fn garbage_ids_are_ignored() {
        for bad in ["", "-1", "4294967296", "1000.0", "0x10", "root", "+1"] {
            let p = parse(&meta(&[("uid", bad), ("gid", bad)]));
            assert_eq!((p.uid, p.gid), (None, None), "{bad:?}");
        }
    }

    #[test]
    fn garbage_attr_lists_are_ignored() {
        for bad in [
            "",
            "/",
            "::::",
            "mode",
            "mtime:1#",
            "mtime:1#1000000000",
            "mtime:#5",
        ] {
            let p = parse(&meta(&[("s3cmd-attrs", bad), ("mc-attrs", bad)]));
            assert_eq!(p, Posix::default(), "{bad:?}");
        }
    }

    #[test]
    fn parse_never_panics_on_odd_values() {
        let long = "9".repeat(100);
        let odd = [
            "%",
            "%%",
            "%f",
            "é",
            "\u{0}",
            "0o",
            "0O",
            "00",
            "0.0",
            "#",
            "1#2#3",
            ":",
            "/:/",
            "18446744073709551616",
            &long,
        ];
        for value in odd {
            for key in POSIX_KEYS {
                let _ = parse(&meta(&[(key, value)]));
            }
        }
    }

    #[test]
    fn no_metadata_means_nothing_stored() {
        assert_eq!(parse(&UserMetadata::new()), Posix::default());
    }
}
