//! The server's global allocator: mimalloc, through its plain entry points
//! wherever they give the alignment asked for. `src/main.rs` installs it
//! (and says why mimalloc), and so do the micro benches; the tests keep
//! the system allocator and call this one directly.
//!
//! Why not the `mimalloc` crate's allocator: it calls the *aligned* entry
//! points (`mi_malloc_aligned(size, align)`) for every allocation, a byte
//! string's included. For a block over 1 KiB (request bodies, serialised
//! records, sled's nodes) mimalloc 3 then takes a generic path that
//! over-allocates by the alignment, unless the block's size class is 2 or
//! 4 KiB, and the aligned layer adds its checks to every call besides. Calling `mi_malloc` instead cut the
//! instructions of everything the server polls per follow-up by 3.2%
//! (callgrind, benches/README.md, twenty-sixth round).
//!
//! `mi_malloc` returns blocks aligned to 16 bytes, or to 8 for blocks of 8
//! bytes or less (on 64-bit targets: its size classes above one word are
//! multiples of 16 bytes, and every page's blocks start 16-aligned,
//! `MI_MAX_ALIGN_SIZE`), so like Rust's own `System` allocator this makes
//! the plain call when the alignment is at most 16 and at most the size,
//! and the aligned one otherwise.

use std::alloc::{GlobalAlloc, Layout};

use libmimalloc_sys as mi;

/// mimalloc as a [`GlobalAlloc`].
pub struct Mimalloc;

/// The alignment `mi_malloc` guarantees for a block of at least this size.
const PLAIN_ALIGN: usize = 16;

/// Whether `mi_malloc(size)` is sure to give a block aligned to `align`.
fn plain(align: usize, size: usize) -> bool {
    align <= PLAIN_ALIGN && align <= size
}

/// A new block for `layout` from one of mimalloc's pairs of calls (plain
/// and aligned), chosen by [`plain`].
///
/// # Safety
/// `plain_call` and `aligned_call` are a pair of mimalloc's allocation
/// calls (`mi_malloc` and `mi_malloc_aligned`, `mi_zalloc` and
/// `mi_zalloc_aligned`).
#[inline]
unsafe fn new_block(
    layout: Layout,
    plain_call: unsafe extern "C" fn(usize) -> *mut std::ffi::c_void,
    aligned_call: unsafe extern "C" fn(usize, usize) -> *mut std::ffi::c_void,
) -> *mut u8 {
    // SAFETY: mimalloc's allocation calls accept any size and any
    // power-of-two alignment, which a `Layout` always has.
    unsafe {
        if plain(layout.align(), layout.size()) {
            plain_call(layout.size()).cast()
        } else {
            aligned_call(layout.size(), layout.align()).cast()
        }
    }
}

// SAFETY: every block comes from mimalloc and goes back to it (`mi_free`
// takes blocks from either kind of call); each call returns null or a
// block of at least the size asked for, at the layout's alignment.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: a pair of mimalloc's allocation calls.
        unsafe { new_block(layout, mi::mi_malloc, mi::mi_malloc_aligned) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: a pair of mimalloc's allocation calls.
        unsafe { new_block(layout, mi::mi_zalloc, mi::mi_zalloc_aligned) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: the caller passes a block of this allocator, that is of
        // mimalloc.
        unsafe { mi::mi_free(ptr.cast()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller passes a block of this allocator with its
        // layout. The rule is checked against the new size, so the new
        // block has the layout's alignment whichever call made the old one.
        unsafe {
            if plain(layout.align(), new_size) {
                mi::mi_realloc(ptr.cast(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZES: [usize; 14] = [1, 3, 7, 8, 9, 15, 16, 24, 40, 100, 1000, 1500, 5000, 70_000];
    const ALIGNS: [usize; 8] = [1, 2, 4, 8, 16, 32, 64, 4096];

    fn aligned(p: *mut u8, align: usize) -> bool {
        (p as usize) % align == 0
    }

    #[test]
    fn every_block_has_the_alignment_and_size_asked_for() {
        for align in ALIGNS {
            for size in SIZES {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: a non-zero size; the block is freed with its layout.
                unsafe {
                    // Several blocks of each, so that one happening to be
                    // aligned does not hide a rule that is wrong.
                    let blocks: Vec<*mut u8> = (0..8).map(|_| Mimalloc.alloc(layout)).collect();
                    for &p in &blocks {
                        assert!(!p.is_null(), "size {size} align {align}: null");
                        assert!(aligned(p, align), "size {size} align {align}: at {p:p}");
                        p.write_bytes(0xA5, size);
                    }
                    for p in blocks {
                        Mimalloc.dealloc(p, layout);
                    }
                }
            }
        }
    }

    #[test]
    fn zeroed_blocks_are_zero_and_aligned_even_when_reused() {
        for align in ALIGNS {
            for size in SIZES {
                let layout = Layout::from_size_align(size, align).unwrap();
                // mimalloc hands a freed block out again only once its
                // page's free list runs out, so dirty and free blocks of
                // this layout until a zeroed one is a block seen dirty.
                let mut dirtied = std::collections::HashSet::new();
                let mut reused = false;
                for _ in 0..10_000 {
                    // SAFETY: every block is written and read within its
                    // size and freed with its layout.
                    unsafe {
                        let dirty = Mimalloc.alloc(layout);
                        assert!(!dirty.is_null(), "size {size} align {align}: null");
                        dirty.write_bytes(0xFF, size);
                        dirtied.insert(dirty as usize);
                        Mimalloc.dealloc(dirty, layout);
                        let p = Mimalloc.alloc_zeroed(layout);
                        assert!(!p.is_null(), "size {size} align {align}: null");
                        assert!(aligned(p, align), "size {size} align {align}: at {p:p}");
                        let bytes = std::slice::from_raw_parts(p, size);
                        assert!(
                            bytes.iter().all(|&b| b == 0),
                            "size {size} align {align}: not zeroed"
                        );
                        reused = dirtied.contains(&(p as usize));
                        p.write_bytes(0xFF, size);
                        dirtied.insert(p as usize);
                        Mimalloc.dealloc(p, layout);
                    }
                    if reused {
                        break;
                    }
                }
                assert!(
                    reused,
                    "size {size} align {align}: no block was handed out twice"
                );
            }
        }
    }

    #[test]
    fn realloc_keeps_the_contents_and_the_alignment_growing_and_shrinking() {
        for align in ALIGNS {
            for from in SIZES {
                for to in SIZES {
                    let layout = Layout::from_size_align(from, align).unwrap();
                    // SAFETY: the block is written and read within its
                    // sizes and freed with the layout it has after realloc.
                    unsafe {
                        let p = Mimalloc.alloc(layout);
                        for i in 0..from {
                            p.add(i).write(i as u8);
                        }
                        let q = Mimalloc.realloc(p, layout, to);
                        assert!(!q.is_null());
                        assert!(aligned(q, align), "{from} → {to} align {align}: at {q:p}");
                        for i in 0..from.min(to) {
                            assert_eq!(
                                q.add(i).read(),
                                i as u8,
                                "{from} → {to} align {align}: byte {i}"
                            );
                        }
                        Mimalloc.dealloc(q, Layout::from_size_align(to, align).unwrap());
                    }
                }
            }
        }
    }
}
