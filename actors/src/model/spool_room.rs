//! How much of the spool's fixed-size memory map new mail may use (issue #12).
//!
//! LMDB cannot grow its map, and even a delete needs free pages (it copies every page it changes).
//! If new messages could take the last page, deliveries could no longer remove what they
//! delivered, and those messages would be delivered again after a restart. So new messages stop
//! short of the top and leave a reserve that only removals and meta updates may use: a full spool
//! can always shrink.

/// Pages held back from new messages: 1/32 of the map, within 64..=16384 pages (256 KiB..64 MiB
/// with 4 KiB pages) and never more than half of a small map.
pub fn reserve_pages(map_pages: u64) -> u64 {
    (map_pages / 32).clamp(64, 16_384).min(map_pages / 2)
}

/// Pages a stored value of `len` bytes may take: LMDB puts a value larger than about half a page
/// on overflow pages of its own; the extra page is its share of leaf and branch pages.
pub fn value_pages(len: u64, page_size: u64) -> u64 {
    len.div_ceil(page_size.max(1)) + 1
}

/// The room left for new messages in one commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    free_pages: u64,
    reserve: u64,
}

impl Room {
    /// `used_pages`: pages the databases hold now (branch, leaf and overflow pages).
    pub fn new(map_pages: u64, used_pages: u64) -> Room {
        Room { free_pages: map_pages.saturating_sub(used_pages), reserve: reserve_pages(map_pages) }
    }

    /// Take `pages` for new messages; false, taking nothing, if that would reach into the reserve.
    pub fn take(&mut self, pages: u64) -> bool {
        match self.free_pages.checked_sub(pages) {
            Some(left) if left >= self.reserve => {
                self.free_pages = left;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_is_a_thirty_second_within_bounds() {
        assert_eq!(reserve_pages(16 * 1024 * 1024), 16_384, "64 GiB map of 4 KiB pages: capped at 64 MiB");
        assert_eq!(reserve_pages(32 * 1024), 1024);
        assert_eq!(reserve_pages(1024), 64, "4 MiB map: at least 64 pages");
        assert_eq!(reserve_pages(100), 50, "never more than half a tiny map");
    }

    #[test]
    fn values_take_their_overflow_pages_plus_one() {
        assert_eq!(value_pages(0, 4096), 1);
        assert_eq!(value_pages(100, 4096), 2);
        assert_eq!(value_pages(4096, 4096), 2);
        assert_eq!(value_pages(4097, 4096), 3);
    }

    #[test]
    fn new_messages_stop_at_the_reserve() {
        // 1024 pages, reserve 64, 900 used: 124 free, 60 of them for new messages.
        let mut room = Room::new(1024, 900);
        assert!(room.take(50));
        assert!(!room.take(11), "would leave 63 < 64 pages");
        assert!(room.take(10), "a refusal takes nothing; exactly the reserve may remain");
        assert!(!room.take(1));
    }

    #[test]
    fn a_map_already_inside_its_reserve_admits_nothing() {
        assert!(!Room::new(1024, 1000).take(1));
        assert!(!Room::new(1024, 2000).take(0), "used beyond the map (an estimate) is simply full");
        assert!(Room::new(1024, 0).take(0));
    }
}
