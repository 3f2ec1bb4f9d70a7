//! Inclusive intervals over addresses and ports, and their normalisation.
//!
//! The kernel rejects interval sets whose elements overlap, so every list of
//! addresses or ports is reduced here to its minimal form: sorted, with
//! overlapping and adjacent intervals merged.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A value that intervals can be built over: ordered, with a successor.
pub trait Point: Copy + Ord + fmt::Debug {
    /// The next value, or `None` at the top of the range.
    fn successor(self) -> Option<Self>;
}

impl Point for u16 {
    fn successor(self) -> Option<Self> {
        self.checked_add(1)
    }
}

impl Point for Ipv4Addr {
    fn successor(self) -> Option<Self> {
        u32::from(self).checked_add(1).map(Self::from)
    }
}

impl Point for Ipv6Addr {
    fn successor(self) -> Option<Self> {
        u128::from(self).checked_add(1).map(Self::from)
    }
}

/// Points with a predecessor too (for [`subtract`]). Kept apart from
/// [`Point`] so that adding it breaks no one's `Point` methods.
pub(crate) trait Predecessor: Point {
    /// The previous value, or `None` at the bottom of the range.
    fn predecessor(self) -> Option<Self>;
}

impl Predecessor for u16 {
    fn predecessor(self) -> Option<Self> {
        self.checked_sub(1)
    }
}

impl Predecessor for Ipv4Addr {
    fn predecessor(self) -> Option<Self> {
        u32::from(self).checked_sub(1).map(Self::from)
    }
}

impl Predecessor for Ipv6Addr {
    fn predecessor(self) -> Option<Self> {
        u128::from(self).checked_sub(1).map(Self::from)
    }
}

/// The closed interval `first..=last` (`first <= last`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Interval<T> {
    /// Lowest value in the interval.
    pub first: T,
    /// Highest value in the interval.
    pub last: T,
}

impl<T: Point> Interval<T> {
    /// The interval `first..=last`; `None` if `first > last`.
    pub fn new(first: T, last: T) -> Option<Self> {
        (first <= last).then_some(Self { first, last })
    }

    /// The interval holding exactly `value`.
    pub fn single(value: T) -> Self {
        Self {
            first: value,
            last: value,
        }
    }

    /// Whether `value` lies in the interval.
    pub fn contains(&self, value: T) -> bool {
        self.first <= value && value <= self.last
    }
}

/// Sorts `intervals` and merges those that overlap or touch.
///
/// The result is the minimal list covering exactly the same values, which is
/// what the kernel's interval sets accept. Runs in O(n log n).
pub fn normalize<T: Point>(mut intervals: Vec<Interval<T>>) -> Vec<Interval<T>> {
    intervals.sort_unstable();
    let mut merged: Vec<Interval<T>> = Vec::with_capacity(intervals.len());
    for next in intervals {
        match merged.last_mut() {
            // `next` starts at or before the value after `last`: one interval.
            Some(last) if last.last.successor().is_none_or(|after| next.first <= after) => {
                if next.last > last.last {
                    last.last = next.last;
                }
            }
            _ => merged.push(next),
        }
    }
    merged
}

/// Whether the normalised list `intervals` contains `value` (binary search).
pub fn contains<T: Point>(intervals: &[Interval<T>], value: T) -> bool {
    let after = intervals.partition_point(|interval| interval.first <= value);
    after > 0 && intervals[after - 1].last >= value
}

/// Whether every value of the normalised list `inner` is in the normalised list `outer`.
pub(crate) fn covers<T: Point>(outer: &[Interval<T>], inner: &[Interval<T>]) -> bool {
    inner.iter().all(|needle| {
        let after = outer.partition_point(|interval| interval.first <= needle.first);
        // Normalised lists never hold two touching intervals, so `needle` is
        // covered only if a single interval of `outer` holds all of it.
        after > 0 && outer[after - 1].last >= needle.last
    })
}

/// The values of the normalised lists `a` and `b` that lie in both, normalised.
pub(crate) fn intersect<T: Point>(a: &[Interval<T>], b: &[Interval<T>]) -> Vec<Interval<T>> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() && j < b.len() {
        let first = a[i].first.max(b[j].first);
        let last = a[i].last.min(b[j].last);
        if first <= last {
            out.push(Interval { first, last });
        }
        if a[i].last < b[j].last {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// The values of the normalised list `a` that are not in the normalised list
/// `b`, normalised.
pub(crate) fn subtract<T: Predecessor>(a: &[Interval<T>], b: &[Interval<T>]) -> Vec<Interval<T>> {
    let mut out = Vec::new();
    for interval in a {
        // What is left of `interval` after the holes of `b` before it.
        let mut rest = Some(*interval);
        for hole in b {
            let Some(current) = rest else { break };
            if hole.last < current.first {
                continue;
            }
            if hole.first > current.last {
                break;
            }
            if let Some(before) = hole.first.predecessor()
                && before >= current.first
            {
                out.push(Interval {
                    first: current.first,
                    last: before,
                });
            }
            rest = hole
                .last
                .successor()
                .filter(|after| *after <= current.last)
                .map(|after| Interval {
                    first: after,
                    last: current.last,
                });
        }
        out.extend(rest);
    }
    out
}

/// Splits an address interval into the fewest CIDR prefixes covering it exactly,
/// as `(network, prefix length)`. Used to print intervals the way people write them.
pub(crate) fn to_prefixes_v4(interval: Interval<Ipv4Addr>) -> Vec<(Ipv4Addr, u8)> {
    to_prefixes(
        u32::from(interval.first).into(),
        u32::from(interval.last).into(),
        32,
    )
    .into_iter()
    .map(|(start, len)| (Ipv4Addr::from(start as u32), len))
    .collect()
}

/// IPv6 counterpart of [`to_prefixes_v4`].
pub(crate) fn to_prefixes_v6(interval: Interval<Ipv6Addr>) -> Vec<(Ipv6Addr, u8)> {
    to_prefixes(interval.first.into(), interval.last.into(), 128)
        .into_iter()
        .map(|(start, len)| (Ipv6Addr::from(start), len))
        .collect()
}

fn to_prefixes(mut start: u128, last: u128, bits: u32) -> Vec<(u128, u8)> {
    let mut out = Vec::new();
    loop {
        // Largest block aligned at `start` that does not pass `last`.
        let mut size_log = if start == 0 {
            bits
        } else {
            start.trailing_zeros().min(bits)
        };
        while size_log > 0 && block_end(start, size_log) > last {
            size_log -= 1;
        }
        out.push((start, (bits - size_log) as u8));
        let end = block_end(start, size_log);
        if end >= last {
            return out;
        }
        start = end + 1;
    }
}

fn block_end(start: u128, size_log: u32) -> u128 {
    if size_log >= 128 {
        u128::MAX
    } else {
        start.saturating_add((1u128 << size_log) - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(first: u16, last: u16) -> Interval<u16> {
        Interval::new(first, last).unwrap()
    }

    #[test]
    fn merges_overlapping_adjacent_and_contained() {
        let got = normalize(vec![
            iv(10, 20),
            iv(21, 25),
            iv(5, 8),
            iv(12, 14),
            iv(30, 30),
            iv(7, 9),
        ]);
        assert_eq!(got, vec![iv(5, 25), iv(30, 30)]);
    }

    #[test]
    fn keeps_gaps_of_one() {
        assert_eq!(normalize(vec![iv(1, 2), iv(4, 5)]), vec![iv(1, 2), iv(4, 5)]);
    }

    #[test]
    fn handles_top_of_range() {
        assert_eq!(
            normalize(vec![iv(65535, 65535), iv(1, 65535)]),
            vec![iv(1, 65535)]
        );
        let top = Ipv6Addr::from(u128::MAX);
        let set = normalize(vec![
            Interval::single(top),
            Interval::new(Ipv6Addr::UNSPECIFIED, top).unwrap(),
        ]);
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn ipv6_adjacent_ranges_merge() {
        let a: Ipv6Addr = "2001:db8::".parse().unwrap();
        let b: Ipv6Addr = "2001:db8::ffff".parse().unwrap();
        let c: Ipv6Addr = "2001:db8::1:0".parse().unwrap();
        let d: Ipv6Addr = "2001:db8::1:ffff".parse().unwrap();
        let set = normalize(vec![Interval::new(c, d).unwrap(), Interval::new(a, b).unwrap()]);
        assert_eq!(set, vec![Interval::new(a, d).unwrap()]);
    }

    #[test]
    fn membership_coverage_intersection() {
        let set = vec![iv(5, 25), iv(30, 40)];
        assert!(contains(&set, 5) && contains(&set, 25) && contains(&set, 35));
        assert!(!contains(&set, 4) && !contains(&set, 26) && !contains(&set, 41));
        assert!(covers(&set, &[iv(6, 10), iv(30, 40)]));
        assert!(!covers(&set, &[iv(20, 31)]));
        assert!(covers(&set, &[]));
        assert_eq!(
            intersect(&set, &[iv(0, 6), iv(24, 32)]),
            vec![iv(5, 6), iv(24, 25), iv(30, 32)]
        );
    }

    #[test]
    fn subtraction_leaves_exactly_the_values_not_removed() {
        assert_eq!(
            subtract(&[iv(0, 65535)], &[iv(0, 0), iv(10, 20), iv(65535, 65535)]),
            vec![iv(1, 9), iv(21, 65534)]
        );
        assert_eq!(subtract(&[iv(5, 9)], &[iv(1, 100)]), vec![]);
        assert_eq!(subtract(&[iv(5, 9), iv(20, 30)], &[]), vec![iv(5, 9), iv(20, 30)]);
        // Exhaustively over small lists: value by value, and normalised.
        let lists = [
            vec![],
            vec![iv(1, 1)],
            vec![iv(0, 3), iv(6, 9)],
            vec![iv(2, 7)],
            vec![iv(0, 0), iv(4, 5), iv(9, 12)],
        ];
        for a in &lists {
            for b in &lists {
                let got = subtract(a, b);
                assert_eq!(normalize(got.clone()), got);
                for value in 0..15 {
                    assert_eq!(
                        contains(&got, value),
                        contains(a, value) && !contains(b, value),
                        "{a:?} - {b:?} at {value}"
                    );
                }
            }
        }
    }

    #[test]
    fn prefixes_cover_exactly() {
        let range = Interval::new(Ipv4Addr::new(192, 0, 2, 10), Ipv4Addr::new(192, 0, 2, 20)).unwrap();
        let got = to_prefixes_v4(range);
        let expect: Vec<(Ipv4Addr, u8)> = vec![
            (Ipv4Addr::new(192, 0, 2, 10), 31),
            (Ipv4Addr::new(192, 0, 2, 12), 30),
            (Ipv4Addr::new(192, 0, 2, 16), 30),
            (Ipv4Addr::new(192, 0, 2, 20), 32),
        ];
        assert_eq!(got, expect);
        let all = Interval::new(Ipv6Addr::UNSPECIFIED, Ipv6Addr::from(u128::MAX)).unwrap();
        assert_eq!(to_prefixes_v6(all), vec![(Ipv6Addr::UNSPECIFIED, 0)]);
        let all4 = Interval::new(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST).unwrap();
        assert_eq!(to_prefixes_v4(all4), vec![(Ipv4Addr::UNSPECIFIED, 0)]);
    }
}
