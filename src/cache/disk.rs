//! The optional on-disk block cache: blocks of object data in files under the cache
//! directory, bounded in bytes, surviving restarts.
//!
//! A block file is named after hashes of the object key and ETag plus the block index, and
//! starts with a header holding the key, the ETag, the length and a CRC-32 of the data. A read
//! checks all of them, so a hash collision, a torn write or a flipped bit is a miss (and the
//! file is dropped), never wrong bytes. Because the ETag is part of the identity, a changed
//! object never hits old blocks. Files are written to a temporary name and renamed into place.
//! At start the existing files are indexed oldest-first, so eviction continues where the last
//! run stopped.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use lru::LruCache;

use super::blocks::BlockId;

const MAGIC: &[u8; 4] = b"BFB1";

pub struct DiskCache {
    dir: PathBuf,
    capacity: u64,
    index: Mutex<Index>,
}

struct Index {
    lru: LruCache<String, u64>,
    bytes: u64,
}

fn fnv(text: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in text.as_bytes() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100000001b3);
    }
    h
}

fn file_name(id: &BlockId) -> String {
    format!("{:016x}-{:016x}-{}", fnv(&id.key), fnv(&id.etag), id.index)
}

fn encode(id: &BlockId, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 64 + id.key.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    for field in [id.key.as_bytes(), id.etag.as_bytes()] {
        out.extend_from_slice(&(field.len() as u32).to_le_bytes());
        out.extend_from_slice(field);
    }
    out.extend_from_slice(data);
    out
}

/// The data of a block file if it is intact and belongs to `id`.
fn decode(id: &BlockId, file: &[u8]) -> Option<Bytes> {
    let take = |at: &mut usize, n: usize| -> Option<&[u8]> {
        let s = file.get(*at..*at + n)?;
        *at += n;
        Some(s)
    };
    let mut at = 0;
    if take(&mut at, 4)? != MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes(take(&mut at, 4)?.try_into().ok()?);
    let len = u64::from_le_bytes(take(&mut at, 8)?.try_into().ok()?) as usize;
    for expected in [id.key.as_bytes(), id.etag.as_bytes()] {
        let n = u32::from_le_bytes(take(&mut at, 4)?.try_into().ok()?) as usize;
        if take(&mut at, n)? != expected {
            return None;
        }
    }
    let data = take(&mut at, len)?;
    (at == file.len() && crc32fast::hash(data) == crc).then(|| Bytes::copy_from_slice(data))
}

impl DiskCache {
    /// Opens (creating) the cache in `dir`, bounded to `capacity` bytes.
    pub fn open(dir: &Path, capacity: u64) -> io::Result<Arc<DiskCache>> {
        std::fs::create_dir_all(dir)?;
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let meta = entry.metadata()?;
            if name.starts_with("tmp-") {
                let _ = std::fs::remove_file(entry.path());
                continue;
            }
            files.push((meta.modified()?, name, meta.len()));
        }
        files.sort();
        let mut index = Index {
            lru: LruCache::unbounded(),
            bytes: 0,
        };
        for (_, name, len) in files {
            index.bytes += len;
            index.lru.put(name, len);
        }
        let cache = Arc::new(DiskCache {
            dir: dir.to_path_buf(),
            capacity,
            index: Mutex::new(index),
        });
        cache.evict();
        Ok(cache)
    }

    fn evict(&self) {
        let mut victims = Vec::new();
        {
            let mut index = self.index.lock().unwrap();
            while index.bytes > self.capacity {
                match index.lru.pop_lru() {
                    Some((name, len)) => {
                        index.bytes -= len;
                        victims.push(name);
                    }
                    None => break,
                }
            }
        }
        for name in victims {
            let _ = std::fs::remove_file(self.dir.join(name));
        }
    }

    pub async fn get(self: &Arc<Self>, id: &BlockId) -> Option<Bytes> {
        let name = file_name(id);
        // Promotes the block in the eviction order; absent = not cached.
        self.index.lock().unwrap().lru.get(&name)?;
        let path = self.dir.join(&name);
        let (this, id) = (self.clone(), id.clone());
        tokio::task::spawn_blocking(move || {
            let file = std::fs::read(&path).ok()?;
            let data = decode(&id, &file);
            if data.is_none() {
                tracing::debug!(path = %path.display(), "dropping a damaged or foreign cache block");
                this.forget(&name);
                let _ = std::fs::remove_file(&path);
            }
            data
        })
        .await
        .ok()
        .flatten()
    }

    fn forget(&self, name: &str) {
        let mut index = self.index.lock().unwrap();
        if let Some(len) = index.lru.pop(name) {
            index.bytes -= len;
        }
    }

    pub async fn put(self: &Arc<Self>, id: &BlockId, data: Bytes) {
        let name = file_name(id);
        let this = self.clone();
        let id = id.clone();
        let _ = tokio::task::spawn_blocking(move || -> io::Result<()> {
            let encoded = encode(&id, &data);
            let tmp = this
                .dir
                .join(format!("tmp-{name}-{}", rand::random::<u32>()));
            std::fs::write(&tmp, &encoded)?;
            std::fs::rename(&tmp, this.dir.join(&name))?;
            {
                let mut index = this.index.lock().unwrap();
                index.bytes += encoded.len() as u64;
                if let Some(old) = index.lru.put(name, encoded.len() as u64) {
                    index.bytes -= old;
                }
            }
            this.evict();
            Ok(())
        })
        .await;
    }

    /// Bytes on disk now.
    pub fn size(&self) -> u64 {
        self.index.lock().unwrap().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(etag: &str, index: u64) -> BlockId {
        BlockId {
            key: "dir/file".into(),
            etag: etag.into(),
            index,
        }
    }

    #[tokio::test]
    async fn blocks_survive_a_restart_and_another_etag_misses() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::open(dir.path(), 1 << 20).unwrap();
        cache
            .put(&id("e1", 0), Bytes::from_static(b"block zero"))
            .await;
        drop(cache);
        let cache = DiskCache::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(&cache.get(&id("e1", 0)).await.unwrap()[..], b"block zero");
        assert!(cache.get(&id("e2", 0)).await.is_none());
    }

    #[tokio::test]
    async fn a_corrupted_block_is_a_miss_and_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::open(dir.path(), 1 << 20).unwrap();
        cache.put(&id("e", 3), Bytes::from_static(b"payload")).await;
        let path = dir.path().join(file_name(&id("e", 3)));
        let mut raw = std::fs::read(&path).unwrap();
        *raw.last_mut().unwrap() ^= 0xff;
        std::fs::write(&path, raw).unwrap();
        assert!(cache.get(&id("e", 3)).await.is_none());
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn the_oldest_blocks_are_evicted_past_the_capacity() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::open(dir.path(), 300).unwrap();
        for i in 0..5 {
            cache
                .put(&id("e", i), Bytes::from(vec![i as u8; 100]))
                .await;
        }
        assert!(cache.size() <= 300);
        assert!(cache.get(&id("e", 0)).await.is_none());
        assert!(cache.get(&id("e", 4)).await.is_some());
    }
}
