//! A global allocator that keeps freed large blocks for reuse.
//!
//! Training the tail of a backbone allocates the same large tensors every step (activations,
//! attention scores, gradients: up to a hundred MB each). glibc maps blocks above 32 MB fresh from
//! the kernel and unmaps them on free, so every step paid their page faults again.
//! [`BlockCache`] rounds such requests up to one of eight size classes per power of two and, on
//! free, keeps the block (up to a byte limit) for the next request of the same class, as
//! PyTorch's caching allocator does. Smaller requests go straight to the system allocator (whose
//! heap the binary stops trimming, see `main.rs`).
//!
//! The binary installs it with `#[global_allocator]`; the library never does.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Requests of at least this many bytes are rounded to a size class and cached when freed: those
/// that glibc would map from the kernel and unmap again (its largest mmap threshold).
pub const LARGE: usize = 32 << 20;
/// Alignment of every large block.
const ALIGN: usize = 64;
/// How many freed blocks the cache holds at most.
const SLOTS: usize = 1024;

/// The size class of a large request: `size` rounded up to a multiple of an eighth of the
/// largest power of two not above it (at most 12.5% more).
pub fn size_class(size: usize) -> usize {
    let step = (1usize << (usize::BITS - 1 - size.leading_zeros())) / 8;
    size.div_ceil(step) * step
}

/// Freed large blocks, oldest first.
struct Blocks {
    ptr: [usize; SLOTS],
    class: [usize; SLOTS],
    len: usize,
    bytes: usize,
}

impl Blocks {
    /// Takes the most recently freed block of `class`, if any.
    fn take(&mut self, class: usize) -> Option<*mut u8> {
        let i = (0..self.len).rev().find(|&i| self.class[i] == class)?;
        let ptr = self.ptr[i] as *mut u8;
        self.remove(i);
        Some(ptr)
    }

    fn remove(&mut self, i: usize) {
        self.bytes -= self.class[i];
        self.ptr.copy_within(i + 1..self.len, i);
        self.class.copy_within(i + 1..self.len, i);
        self.len -= 1;
    }
}

/// The caching allocator (see the module docs). Thread-safe: one mutex guards the cache; only
/// large requests take it.
pub struct BlockCache {
    blocks: Mutex<Blocks>,
    limit: AtomicUsize,
}

impl Default for BlockCache {
    fn default() -> Self {
        Self::new()
    }
}

impl BlockCache {
    /// An empty cache that keeps at most 2 GiB of freed blocks.
    pub const fn new() -> Self {
        Self {
            blocks: Mutex::new(Blocks { ptr: [0; SLOTS], class: [0; SLOTS], len: 0, bytes: 0 }),
            limit: AtomicUsize::new(2 << 30),
        }
    }

    /// Sets how many bytes of freed blocks the cache may keep (0 turns caching off). Blocks held
    /// above a lowered limit are released as later blocks are kept.
    pub fn set_limit(&self, bytes: usize) {
        self.limit.store(bytes, Ordering::Relaxed);
    }

    /// Bytes of freed blocks held now.
    pub fn cached_bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Blocks> {
        self.blocks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_large(layout: Layout) -> bool {
        layout.size() >= LARGE && layout.align() <= ALIGN
    }

    /// The layout a large block is allocated with: its size class, 64-byte aligned.
    fn block(size: usize) -> Layout {
        // SAFETY: ALIGN is a power of two; a size class of a valid Layout's size stays below
        // isize::MAX (it is at most an eighth larger, and capped).
        unsafe { Layout::from_size_align_unchecked(size_class(size).min(isize::MAX as usize / 2), ALIGN) }
    }

    /// Keeps a freed block, releasing the oldest blocks to make room; a block larger than the
    /// limit is released at once.
    unsafe fn keep(&self, ptr: *mut u8, block: Layout) {
        let limit = self.limit.load(Ordering::Relaxed);
        if block.size() > limit {
            return System.dealloc(ptr, block);
        }
        let mut b = self.lock();
        while b.len == SLOTS || b.bytes + block.size() > limit {
            let (old, size) = (b.ptr[0], b.class[0]);
            b.remove(0);
            System.dealloc(old as *mut u8, Layout::from_size_align_unchecked(size, ALIGN));
        }
        let len = b.len;
        b.ptr[len] = ptr as usize;
        b.class[len] = block.size();
        b.len += 1;
        b.bytes += block.size();
    }
}

// SAFETY: large blocks are allocated from System with `block(size)` and returned to it with the
// same layout (the caller passes the layout's size back unchanged); a cached block is handed out
// to one caller at a time (taken under the lock).
unsafe impl GlobalAlloc for BlockCache {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !Self::is_large(layout) {
            return System.alloc(layout);
        }
        let block = Self::block(layout.size());
        let cached = self.lock().take(block.size());
        cached.unwrap_or_else(|| System.alloc(block))
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !Self::is_large(layout) {
            return System.alloc_zeroed(layout);
        }
        let block = Self::block(layout.size());
        let cached = self.lock().take(block.size());
        match cached {
            Some(ptr) => {
                ptr.write_bytes(0, layout.size());
                ptr
            }
            None => System.alloc_zeroed(block),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if Self::is_large(layout) {
            self.keep(ptr, Self::block(layout.size()));
        } else {
            System.dealloc(ptr, layout);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        match (Self::is_large(layout), Self::is_large(new_layout)) {
            (false, false) => System.realloc(ptr, layout, new_size),
            (true, true) if size_class(layout.size()) == size_class(new_size) => ptr,
            _ => {
                let new = self.alloc(new_layout);
                if !new.is_null() {
                    std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                new
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_round_up_by_at_most_an_eighth() {
        assert_eq!(size_class(LARGE), LARGE);
        assert_eq!(size_class(LARGE + 1), LARGE + LARGE / 8);
        assert_eq!(size_class(1 << 20), 1 << 20);
        assert_eq!(size_class((1 << 20) + 5), (1 << 20) + (1 << 17));
        for s in [LARGE, 600_000, 1_000_003, 33_554_433, 123_456_789] {
            let c = size_class(s);
            assert!(c >= s && c - s <= s / 8, "{s} -> {c}");
        }
    }

    #[test]
    fn a_freed_block_is_handed_out_again_for_the_same_class() {
        let cache = BlockCache::new();
        let a = Layout::from_size_align(3 * LARGE, 8).unwrap();
        let same_class = Layout::from_size_align((3 * LARGE) - 100, 4).unwrap();
        unsafe {
            let p = cache.alloc(a);
            p.write_bytes(7, a.size());
            cache.dealloc(p, a);
            assert_eq!(cache.cached_bytes(), 3 * LARGE);
            let q = cache.alloc_zeroed(same_class);
            assert_eq!(q, p, "reused");
            assert!(std::slice::from_raw_parts(q, same_class.size()).iter().all(|&b| b == 0), "zeroed");
            assert_eq!(cache.cached_bytes(), 0);
            let r = cache.realloc(q, same_class, a.size());
            assert_eq!(r, q, "growing within the class keeps the block");
            let s = cache.realloc(r, a, 5 * LARGE);
            assert_ne!(s, r);
            assert_eq!(cache.cached_bytes(), 3 * LARGE, "the old block went to the cache");
            cache.dealloc(s, Layout::from_size_align(5 * LARGE, 8).unwrap());
            assert_eq!(cache.cached_bytes(), 8 * LARGE);
        }
    }

    #[test]
    fn the_limit_releases_the_oldest_blocks_and_small_requests_bypass() {
        let cache = BlockCache::new();
        cache.set_limit(4 * LARGE);
        let big = Layout::from_size_align(LARGE, 8).unwrap();
        unsafe {
            let ptrs: Vec<_> = (0..6).map(|_| cache.alloc(big)).collect();
            for &p in &ptrs {
                cache.dealloc(p, big);
            }
            assert_eq!(cache.cached_bytes(), 4 * LARGE, "kept up to the limit");
            let small = Layout::from_size_align(1000, 8).unwrap();
            let p = cache.alloc(small);
            cache.dealloc(p, small);
            assert_eq!(cache.cached_bytes(), 4 * LARGE);
            cache.set_limit(0);
            let p = cache.alloc(Layout::from_size_align(9 * LARGE, 8).unwrap());
            cache.dealloc(p, Layout::from_size_align(9 * LARGE, 8).unwrap());
            assert_eq!(cache.cached_bytes(), 4 * LARGE, "a block above the limit is released at once");
        }
    }
}
