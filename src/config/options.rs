//! The option table: every configuration option of bucketfs, declared once.
//!
//! An entry says everything about one option; `table.rs` writes from it the TOML layer, the
//! environment reader, the command-line flags with their help, and the defaults. Adding an
//! option is one entry here, its use in `resolve.rs`, and its paragraph in
//! `config.example.toml` (a test fails until the example documents it with this default).
//!
//! ```text
//! [#[secret]]                   value never shown by Debug, and no mount option (`-o`)
//! key: Type {
//!     help: "...",              --help text and field doc
//!     default: value(EXPR)      fixed default, shown in --help, checked in the example
//!            | computed("TEXT", EXPR)  computed when unset; --help shows TEXT
//!            | none | none("TEXT"),     no default (TEXT: what unset means)
//!     env: ["BUCKETFS_KEY", ...] | none,  environment names, first set wins
//!     flag: value(SCOPE, "--flag", "VALUE_NAME")
//!         | switch(SCOPE, "--flag" => true|false)   a flag without value that sets the option
//!         | none,
//! }
//! ```
//! SCOPE is `Mount` (`bucketfs mount`) or `MountAndCheck` (also `bucketfs check`).
//!
//! Every option with an environment name is also a mount option of `mount -t bucketfs`
//! (`-o key=value`, read as its environment text; see `mount_options.rs`).

use std::path::PathBuf;

use serde::Deserialize;

use super::resolve::{current_gid, current_uid, default_cache_dir};
use super::table::define_options;
use super::values::{Mode, Size};

define_options! {
    // --- Where the objects are ---------------------------------------------------------------
    source: String {
        help: "What to mount: s3://BUCKET, s3://BUCKET/PREFIX or file:///some/dir; the SOURCE \
               argument overrides it",
        default: none,
        env: ["BUCKETFS_SOURCE"],
        flag: none,
    }
    bucket: String {
        help: "Bucket name, used when no source is given (same as source = \"s3://NAME\")",
        default: none,
        env: ["BUCKETFS_BUCKET", "S3_BUCKET"],
        flag: none,
    }
    endpoint: String {
        help: "S3 endpoint URL, e.g. http://127.0.0.1:3900",
        default: none("AWS for the region"),
        env: ["BUCKETFS_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "S3_ENDPOINT"],
        flag: value(MountAndCheck, "--endpoint", "URL"),
    }
    region: String {
        help: "Region of the bucket; unset: the AWS profile's region (~/.aws/config), else the \
               region the server names at start (HeadBucket), else us-east-1",
        default: none("asked of the server"),
        env: ["BUCKETFS_REGION", "AWS_REGION", "AWS_DEFAULT_REGION", "S3_REGION"],
        flag: value(MountAndCheck, "--region", "REGION"),
    }
    force_path_style: bool {
        help: "Address the bucket as ENDPOINT/BUCKET instead of BUCKET.ENDPOINT (automatic for \
               IP addresses and localhost)",
        default: value(false),
        env: ["BUCKETFS_FORCE_PATH_STYLE", "S3_FORCE_PATH_STYLE"],
        flag: switch(MountAndCheck, "--force-path-style" => true),
    }

    // --- Credentials (unset: the AWS credential chain) ----------------------------------------
    access_key: String {
        help: "Access key id of static credentials (with secret_key)",
        default: none,
        env: ["BUCKETFS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "S3_ACCESS_KEY"],
        flag: none,
    }
    #[secret]
    secret_key: String {
        help: "Secret access key of static credentials (with access_key)",
        default: none,
        env: ["BUCKETFS_SECRET_KEY", "AWS_SECRET_ACCESS_KEY", "S3_SECRET_KEY"],
        flag: none,
    }
    #[secret]
    session_token: String {
        help: "Session token of temporary credentials",
        default: none,
        env: ["BUCKETFS_SESSION_TOKEN", "AWS_SESSION_TOKEN"],
        flag: none,
    }
    profile: String {
        help: "Named profile from the AWS shared credentials file",
        default: none,
        env: ["BUCKETFS_PROFILE", "AWS_PROFILE"],
        flag: value(MountAndCheck, "--profile", "PROFILE"),
    }

    // --- Requests ----------------------------------------------------------------------------
    retry_timeout: f64 {
        help: "Seconds a request that fails transiently (5xx, throttling, timeouts, refused or \
               reset connections) keeps being retried, with backoff, before its error is \
               returned: an outage shorter than this is waited out (0 = no retries)",
        default: value(90.0),
        env: ["BUCKETFS_RETRY_TIMEOUT"],
        flag: value(MountAndCheck, "--retry-timeout", "SECONDS"),
    }
    max_retries: u32 {
        help: "At most this many retries of one request, however much of the retry timeout is \
               left",
        default: none("no limit but the retry timeout"),
        env: ["BUCKETFS_MAX_RETRIES"],
        flag: value(MountAndCheck, "--max-retries", "N"),
    }
    request_timeout: f64 {
        help: "Seconds one attempt of a data transfer may take before it is retried (small \
               requests such as HEAD, LIST and DELETE: at most 5)",
        default: value(30.0),
        env: ["BUCKETFS_REQUEST_TIMEOUT"],
        flag: value(MountAndCheck, "--request-timeout", "SECONDS"),
    }

    // --- The mount ---------------------------------------------------------------------------
    read_only: bool {
        help: "Refuse every change (EROFS)",
        default: value(false),
        env: ["BUCKETFS_READ_ONLY"],
        flag: switch(Mount, "--read-only" => true),
    }
    allow_other: bool {
        help: "Let other users access the mount (needs user_allow_other in /etc/fuse.conf unless \
               root)",
        default: value(false),
        env: ["BUCKETFS_ALLOW_OTHER"],
        flag: switch(Mount, "--allow-other" => true),
    }
    allow_non_empty: bool {
        help: "Mount even if MOUNTPOINT has files; they are hidden while the bucket is mounted",
        default: value(false),
        env: ["BUCKETFS_ALLOW_NON_EMPTY"],
        flag: switch(Mount, "--allow-non-empty" => true),
    }
    uid: u32 {
        help: "Owner shown for every file",
        default: computed("the user who mounts", current_uid()),
        env: ["BUCKETFS_UID"],
        flag: value(Mount, "--uid", "UID"),
    }
    gid: u32 {
        help: "Group shown for every file",
        default: computed("the group of the user who mounts", current_gid()),
        env: ["BUCKETFS_GID"],
        flag: value(Mount, "--gid", "GID"),
    }
    file_mode: Mode {
        help: "Permission bits of files, octal",
        default: value(Mode(0o644)),
        env: ["BUCKETFS_FILE_MODE"],
        flag: value(Mount, "--file-mode", "MODE"),
    }
    dir_mode: Mode {
        help: "Permission bits of directories, octal",
        default: value(Mode(0o755)),
        env: ["BUCKETFS_DIR_MODE"],
        flag: value(Mount, "--dir-mode", "MODE"),
    }
    metadata_ttl: f64 {
        help: "Seconds metadata (attributes, names) is trusted before the bucket is asked again",
        default: value(1.0),
        env: ["BUCKETFS_METADATA_TTL"],
        flag: value(Mount, "--metadata-ttl", "SECONDS"),
    }
    negative_ttl: f64 {
        help: "Seconds a name that was not found is remembered as missing (0 = off)",
        default: value(1.0),
        env: ["BUCKETFS_NEGATIVE_TTL"],
        flag: none,
    }
    negative_cache_entries: usize {
        help: "How many missing names are remembered at most",
        default: value(10_000),
        env: ["BUCKETFS_NEGATIVE_CACHE_ENTRIES"],
        flag: none,
    }
    dir_ttl: f64 {
        help: "Seconds a directory listing is trusted to be complete (0 = off)",
        default: value(1.0),
        env: ["BUCKETFS_DIR_TTL"],
        flag: none,
    }
    dir_cache_entries: usize {
        help: "How many directory listings are kept at most",
        default: value(1_000),
        env: ["BUCKETFS_DIR_CACHE_ENTRIES"],
        flag: none,
    }
    name_cache_entries: usize {
        help: "How many names (files, directories) the inode table keeps at most: past it, \
               those nothing holds (no open handle, no pending upload) are dropped, least \
               recently confirmed first, the kernel asked to drop those it holds; ~260 bytes \
               each",
        default: value(250_000),
        env: ["BUCKETFS_NAME_CACHE_ENTRIES"],
        flag: value(Mount, "--name-cache-entries", "N"),
    }
    max_key_length: usize {
        help: "Longest key (bytes, prefix included) the server holds: a create, mkdir, symlink \
               or rename whose key would be longer fails with ENAMETOOLONG. S3 holds 1024; \
               Garage on LMDB 471 (`bucketfs check` measures it)",
        default: value(1024),
        env: ["BUCKETFS_MAX_KEY_LENGTH"],
        flag: value(MountAndCheck, "--max-key-length", "BYTES"),
    }
    // 64, the subdirectories one run claims (`names::tree::TREE_CLAIMS`): the next run starts
    // as the walk enters the one before, so the runs' pages come back to back. `find` of
    // 100,000 objects in 1,000 directories (Garage, by hand, 3 runs each): 0.83-0.87 s with 64
    // against 0.88-0.93 s with 4, 0.86-0.92 s with 16 or 32, 0.93-1.01 s with 128.
    dir_read_ahead: usize {
        help: "Tree read-ahead while a tool walks a tree (find, du, rsync, ls -R): the \
               following subtrees are listed in flat pages, the next run starting when the \
               walk comes within N subdirectories of what is not listed yet (0 = off)",
        default: value(64),
        env: ["BUCKETFS_DIR_READ_AHEAD"],
        flag: value(Mount, "--dir-read-ahead", "N"),
    }

    // --- Reads -------------------------------------------------------------------------------
    read_ahead: Size {
        help: "Largest read-ahead window of one file, e.g. 32MiB",
        default: value(Size(64 << 20)),
        env: ["BUCKETFS_READ_AHEAD"],
        flag: value(Mount, "--read-ahead", "SIZE"),
    }
    memory_cache: Size {
        help: "Memory block cache size, e.g. 64MiB (0 = off)",
        default: value(Size(32 << 20)),
        env: ["BUCKETFS_MEMORY_CACHE"],
        flag: value(Mount, "--memory-cache", "SIZE"),
    }
    memory_budget: Size {
        help: "Memory for cached and prefetched data together, e.g. 128MiB",
        default: value(Size(128 << 20)),
        env: ["BUCKETFS_MEMORY_BUDGET"],
        flag: value(Mount, "--memory-budget", "SIZE"),
    }
    disk_cache: Size {
        help: "On-disk block cache size under CACHE_DIR, kept across mounts (0 = off)",
        default: value(Size(0)),
        env: ["BUCKETFS_DISK_CACHE"],
        flag: value(Mount, "--disk-cache", "SIZE"),
    }

    // --- Writes ------------------------------------------------------------------------------
    cache_dir: PathBuf {
        help: "Directory for staged writes and logs",
        default: computed("$XDG_CACHE_HOME/bucketfs or ~/.cache/bucketfs", default_cache_dir()),
        env: ["BUCKETFS_CACHE_DIR"],
        flag: value(Mount, "--cache-dir", "DIR"),
    }
    part_size: Size {
        help: "Multipart part size, at least 5MiB",
        default: value(Size(8 << 20)),
        env: ["BUCKETFS_PART_SIZE"],
        flag: value(Mount, "--part-size", "SIZE"),
    }
    upload_concurrency: usize {
        help: "Parts uploaded in parallel per file",
        default: value(4),
        env: ["BUCKETFS_UPLOAD_CONCURRENCY"],
        flag: value(Mount, "--upload-concurrency", "N"),
    }
    stale_upload_age: f64 {
        help: "Seconds after which multipart uploads bucketfs left behind (a daemon that died \
               mid-upload) are aborted at mount",
        default: value(86_400.0),
        env: ["BUCKETFS_STALE_UPLOAD_AGE"],
        flag: value(Mount, "--stale-upload-age", "SECONDS"),
    }
    retry_interval: f64 {
        help: "Seconds before a failed upload of a closed file is tried again; doubles while it \
               keeps failing, up to 5 minutes",
        default: value(5.0),
        env: ["BUCKETFS_RETRY_INTERVAL"],
        flag: value(Mount, "--retry-interval", "SECONDS"),
    }
    write_back_delay: f64 {
        help: "Seconds a closed file waits before it is uploaded, so a rename, chmod or utimens \
               right after close rides on the upload (0 = upload at close and return its error \
               from close)",
        default: value(0.5),
        env: ["BUCKETFS_WRITE_BACK_DELAY"],
        flag: value(Mount, "--write-back-delay", "SECONDS"),
    }
    ignore_chmod: bool {
        help: "chmod succeeds without changing or storing the mode",
        default: value(false),
        env: ["BUCKETFS_IGNORE_CHMOD"],
        flag: switch(Mount, "--ignore-chmod" => true),
    }
    ignore_chown: bool {
        help: "chown succeeds without changing or storing the owner",
        default: value(false),
        env: ["BUCKETFS_IGNORE_CHOWN"],
        flag: switch(Mount, "--ignore-chown" => true),
    }
    ignore_utimens: bool {
        help: "utimens (touch, cp -p) succeeds without changing or storing times",
        default: value(false),
        env: ["BUCKETFS_IGNORE_UTIMENS"],
        flag: switch(Mount, "--ignore-utimens" => true),
    }
    aws_file_metadata: bool {
        help: "Also store mode, owner and times in the keys AWS file services read (DataSync, \
               FSx for Lustre: x-amz-meta-file-permissions, -file-owner, -file-group, \
               -file-mtime, -file-atime); they are always read",
        default: value(false),
        env: ["BUCKETFS_AWS_FILE_METADATA"],
        flag: switch(Mount, "--aws-file-metadata" => true),
    }
    conflict: String {
        help: "What an upload does when another client changed or created the object since this \
               file was opened: keep-both (the other client's object stays under the name, this \
               file's bytes go to NAME.conflict-HOST-TIME, the waiter gets EIO) or overwrite \
               (last writer wins)",
        default: value(String::from("keep-both")),
        env: ["BUCKETFS_CONFLICT"],
        flag: value(Mount, "--conflict", "POLICY"),
    }
    exclusive_in_bucket: bool {
        help: "open(O_CREAT|O_EXCL) reserves the name in the bucket at once (an empty object \
               written only if none exists), so it is exclusive across hosts: for lock files. \
               Costs a PUT per exclusive create and a DELETE when such a file is renamed, which \
               slows rsync (its temporary files are exclusive creates) about 2.5 times",
        default: value(false),
        env: ["BUCKETFS_EXCLUSIVE_IN_BUCKET"],
        flag: switch(Mount, "--exclusive-in-bucket" => true),
    }
    listing_metadata: bool {
        help: "readdir HEADs every listed object at once for its mode, owner, mtime and type \
               (--listing-metadata). Off, a listing costs its LIST pages only: names, sizes and \
               types come from them, and an entry's stored attributes are read when a tool asks \
               for them (stat, ls -l), ahead of it in parallel when it goes through a \
               directory in order. A symlink or special file another tool stored shows as a \
               regular file to readdir until its attributes are read",
        default: value(false),
        env: ["BUCKETFS_LISTING_METADATA"],
        flag: switch(Mount, "--listing-metadata" => true),
    }
    log_file: PathBuf {
        help: "Log file of the background daemon",
        default: none("CACHE_DIR/<mount>/bucketfs.log"),
        env: ["BUCKETFS_LOG_FILE"],
        flag: value(Mount, "--log-file", "FILE"),
    }
    log_format: String {
        help: "Format of the daemon's log lines: text, or json (one JSON object per line, for \
               log shippers)",
        default: value(String::from("text")),
        env: ["BUCKETFS_LOG_FORMAT"],
        flag: value(Mount, "--log-format", "FORMAT"),
    }
    metrics_addr: String {
        help: "Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9100 (an IP \
               address and a port)",
        default: none("off"),
        env: ["BUCKETFS_METRICS_ADDR"],
        flag: value(Mount, "--metrics-addr", "ADDR"),
    }

    // --- Options of new objects ----------------------------------------------------------------
    sse: String {
        help: "Server-side encryption of new objects: AES256, aws:kms or aws:kms:dsse",
        default: none("the bucket's default"),
        env: ["BUCKETFS_SSE"],
        flag: value(Mount, "--sse", "MODE"),
    }
    sse_kms_key_id: String {
        help: "KMS key id for --sse aws:kms / aws:kms:dsse",
        default: none("the account's default key"),
        env: ["BUCKETFS_SSE_KMS_KEY_ID"],
        flag: value(Mount, "--sse-kms-key-id", "ID"),
    }
    sse_c_key_file: PathBuf {
        help: "SSE-C: file holding your 256-bit key (32 raw bytes or base64)",
        default: none,
        env: ["BUCKETFS_SSE_C_KEY_FILE"],
        flag: value(Mount, "--sse-c-key-file", "FILE"),
    }
    acl: String {
        help: "Canned ACL of new objects, e.g. bucket-owner-full-control",
        default: none,
        env: ["BUCKETFS_ACL"],
        flag: value(Mount, "--acl", "ACL"),
    }
    storage_class: String {
        help: "Storage class of new objects, e.g. STANDARD_IA",
        default: none,
        env: ["BUCKETFS_STORAGE_CLASS"],
        flag: value(Mount, "--storage-class", "CLASS"),
    }
    cache_control: String {
        help: "Cache-Control of new objects, e.g. \"max-age=3600\"",
        default: none,
        env: ["BUCKETFS_CACHE_CONTROL"],
        flag: value(Mount, "--cache-control", "VALUE"),
    }
    rules: Vec<RuleLayer> {
        help: "Per-prefix options of new objects: [[rules]] entries, config file only",
        default: none,
        env: none,
        flag: none,
    }
}

/// One `[[rules]]` entry: object options for keys under `prefix` (a bucket key prefix). Its
/// fields mean what the mount's options of the same names mean.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleLayer {
    pub prefix: String,
    pub sse: Option<String>,
    pub sse_kms_key_id: Option<String>,
    pub acl: Option<String>,
    pub storage_class: Option<String>,
    pub cache_control: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layers_debug_output_never_shows_a_secret() {
        let layer = Layer {
            access_key: Some("AKIAEXAMPLE".into()),
            secret_key: Some("secret-value".into()),
            session_token: Some("token-value".into()),
            ..Layer::default()
        };
        let shown = format!("{layer:?}");
        assert!(!shown.contains("secret-value"), "{shown}");
        assert!(!shown.contains("token-value"), "{shown}");
        assert!(
            shown.contains("secret_key: Some(\"<redacted>\")"),
            "{shown}"
        );
        assert!(
            shown.contains("AKIAEXAMPLE"),
            "a key id is no secret: {shown}"
        );
    }

    #[test]
    fn a_set_key_wins_over_the_lower_layer_and_unset_keys_fall_through() {
        let upper = Layer {
            uid: Some(1),
            ..Layer::default()
        };
        let lower = Layer {
            uid: Some(2),
            gid: Some(3),
            ..Layer::default()
        };
        let merged = upper.over(lower);
        assert_eq!((merged.uid, merged.gid), (Some(1), Some(3)));
        assert!(!merged.unset_fields().contains(&"gid"));
        assert!(merged.unset_fields().contains(&"part_size"));
    }
}
