//! Target transfer tags (RFC 7143 11.8.4, 11.11): one allocator per connection for R2Ts and
//! text continuations, so there is one rule for both.
//!
//! A tag never is the reserved 0xffffffff, which tells the initiator "no transfer". The
//! target finds a Data-Out by its task (ITT) first and by tag within it, so a tag needs to
//! be unique only among the R2Ts outstanding for one task: after 2^32 allocations on one
//! connection (12 hours at 100k writes/s) the counter wraps, and a task that has held an
//! R2T unanswered all that time could be handed its own tag again; [`TagAllocator::next_free`]
//! skips it. That set holds at most MaxOutstandingR2T tags (at most 65535), so the skip
//! ends.

use crate::pdu::RESERVED_TAG;

/// Hands out target transfer tags 1, 2, … 0xfffffffe, then 1 again: never 0xffffffff
/// (reserved) and, as before the wrap, never 0.
#[derive(Debug)]
pub(super) struct TagAllocator {
    next: u32,
}

impl TagAllocator {
    pub(super) fn new() -> TagAllocator {
        TagAllocator { next: 1 }
    }

    /// The next tag.
    pub(super) fn next(&mut self) -> u32 {
        let tag = self.next;
        debug_assert!(tag != RESERVED_TAG && tag != 0);
        self.next = match tag.wrapping_add(1) {
            RESERVED_TAG => 1,
            n => n,
        };
        tag
    }

    /// The next tag for which `in_use` is false: a task's outstanding R2Ts keep theirs
    /// across the wrap. `in_use` must hold for fewer than 2^32 - 2 tags.
    pub(super) fn next_free(&mut self, in_use: impl Fn(u32) -> bool) -> u32 {
        loop {
            let tag = self.next();
            if !in_use(tag) {
                return tag;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_tag_skips_reserved_across_wrap() {
        let mut tags = TagAllocator {
            next: RESERVED_TAG - 2,
        };
        let got: Vec<u32> = (0..4).map(|_| tags.next()).collect();
        assert_eq!(got, [0xffff_fffd, 0xffff_fffe, 1, 2]);
    }

    #[test]
    fn transfer_tag_skips_tags_in_use_across_wrap() {
        // A task still waits for Data-Out on tags 1 and 3 issued 2^32 tags ago.
        let mut tags = TagAllocator {
            next: RESERVED_TAG - 1,
        };
        let held = [1, 3];
        let got: Vec<u32> = (0..4)
            .map(|_| tags.next_free(|t| held.contains(&t)))
            .collect();
        assert_eq!(got, [0xffff_fffe, 2, 4, 5]);
    }

    #[test]
    fn transfer_tags_start_at_one() {
        let mut tags = TagAllocator::new();
        assert_eq!((tags.next(), tags.next()), (1, 2));
    }
}
