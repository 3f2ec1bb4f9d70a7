//! Medians, spreads, and the Markdown they are written as: the pure part of
//! the benchmarks, unit-tested.

use std::time::Duration;

/// Repeated measurements of one quantity.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples(pub Vec<f64>);

impl Samples {
    pub fn push(&mut self, value: f64) {
        self.0.push(value);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn sorted(&self) -> Vec<f64> {
        let mut values = self.0.clone();
        values.sort_by(f64::total_cmp);
        values
    }

    /// The middle value; the mean of the two middle ones for an even count.
    pub fn median(&self) -> Option<f64> {
        let values = self.sorted();
        let n = values.len();
        match n {
            0 => None,
            _ if n % 2 == 1 => Some(values[n / 2]),
            _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
        }
    }

    pub fn min(&self) -> Option<f64> {
        self.sorted().first().copied()
    }

    pub fn max(&self) -> Option<f64> {
        self.sorted().last().copied()
    }

    /// `median unit (min–max)`, or just `median unit` for one sample, or `–`.
    pub fn cell(&self, unit: &str) -> String {
        let Some(median) = self.median() else {
            return "–".into();
        };
        let (min, max) = (self.min().unwrap_or(median), self.max().unwrap_or(median));
        if self.0.len() == 1 || min == max {
            format!("{} {unit}", number(median))
        } else {
            format!("{} {unit} ({}–{})", number(median), number(min), number(max))
        }
    }
}

/// A cell for measurements that did not finish: `> 90 s (killed)`.
pub fn timed_out_cell(limit: Duration) -> String {
    format!("> {} s (killed)", limit.as_secs())
}

/// A number with as many decimals as its size deserves: 0.123, 1.23, 12.3,
/// 1234, 12,345.
pub fn number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1000.0 {
        thousands(value.round() as i64)
    } else if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// 1234567 → "1,234,567".
pub fn thousands(value: i64) -> String {
    let digits = value.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if value < 0 { format!("-{out}") } else { out }
}

/// A Markdown table; the first column left-aligned, the others right-aligned.
pub fn markdown_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("| {} |\n", headers.join(" | "));
    out.push('|');
    for i in 0..headers.len() {
        out.push_str(if i == 0 { "---|" } else { "---:|" });
    }
    out.push('\n');
    for row in rows {
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    out
}

/// Parses a `std::time::Duration` as `{:?}`/`{:.1?}` prints it: `12.3ms`,
/// `850.0µs`, `1.2s`, `42ns`.
pub fn parse_debug_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => value,
        "ms" => value / 1e3,
        "µs" | "us" => value / 1e6,
        "ns" => value / 1e9,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}

/// The kernel commit time `dockfw-nft -v apply` reports ("…; apply 20.1ms:
/// commit 12.3ms, verify 4.5ms"), if it says one.
pub fn commit_time(apply_output: &str) -> Option<Duration> {
    stated_time(apply_output, ": commit ")
}

/// The time of the apply call (`Nft::apply`: lock, read, plan, encode,
/// commit, verify) `dockfw-nft -v apply` reports ("…; apply 20.1ms: …").
pub fn apply_call_time(apply_output: &str) -> Option<Duration> {
    stated_time(apply_output, "; apply ")
}

fn stated_time(output: &str, label: &str) -> Option<Duration> {
    let after = output.split(label).nth(1)?;
    parse_debug_duration(after.split([',', ':', ';']).next()?)
}

/// The repair time watch states ("repaired table inet dockfw: …, in 2.2 ms").
pub fn repair_time(line: &str) -> Option<Duration> {
    let (_, after) = line.rsplit_once(" in ")?;
    parse_debug_duration(&after.replace(' ', ""))
}

/// What `cargo xtask bench measure` prints last about the command it ran.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    pub wall: Duration,
    /// CPU time spent in the kernel on the command's behalf (its `ru_stime`).
    pub system: Duration,
    /// Peak resident set size of the command (its `ru_maxrss`), KiB.
    pub max_rss_kib: u64,
    pub success: bool,
    /// Killed for taking longer than the time allowed.
    pub timed_out: bool,
}

pub const MEASURE_TAG: &str = "xtask-bench-measure:";

impl Measurement {
    pub fn line(&self) -> String {
        format!(
            "{MEASURE_TAG} wall_us={} sys_us={} maxrss_kib={} success={} timed_out={}",
            self.wall.as_micros(),
            self.system.as_micros(),
            self.max_rss_kib,
            self.success,
            self.timed_out
        )
    }

    /// Finds the last measurement line in `output`.
    pub fn parse(output: &str) -> Option<Measurement> {
        let line = output.lines().rev().find(|l| l.starts_with(MEASURE_TAG))?;
        let mut fields = std::collections::HashMap::new();
        for field in line[MEASURE_TAG.len()..].split_whitespace() {
            let (key, value) = field.split_once('=')?;
            fields.insert(key, value);
        }
        let micros = |key| fields.get(key)?.parse().ok().map(Duration::from_micros);
        Some(Measurement {
            wall: micros("wall_us")?,
            system: micros("sys_us")?,
            max_rss_kib: fields.get("maxrss_kib")?.parse().ok()?,
            success: fields.get("success")?.parse().ok()?,
            timed_out: fields.get("timed_out")?.parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max() {
        assert_eq!(Samples(vec![]).median(), None);
        assert_eq!(Samples(vec![3.0]).median(), Some(3.0));
        assert_eq!(Samples(vec![5.0, 1.0, 3.0]).median(), Some(3.0));
        assert_eq!(Samples(vec![4.0, 1.0, 3.0, 2.0]).median(), Some(2.5));
        let s = Samples(vec![4.0, 1.0, 9.0]);
        assert_eq!((s.min(), s.max()), (Some(1.0), Some(9.0)));
    }

    #[test]
    fn cells_show_median_and_spread() {
        assert_eq!(Samples(vec![]).cell("ms"), "–");
        assert_eq!(Samples(vec![12.34]).cell("ms"), "12.3 ms");
        assert_eq!(Samples(vec![2.0, 2.0]).cell("ms"), "2.00 ms");
        assert_eq!(
            Samples(vec![1500.0, 1210.4, 2000.0]).cell("ms"),
            "1,500 ms (1,210–2,000)"
        );
        assert_eq!(Samples(vec![0.5, 0.25, 0.75]).cell("s"), "0.500 s (0.250–0.750)");
    }

    #[test]
    fn numbers() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(-1234), "-1,234");
        assert_eq!(number(123.6), "124");
        assert_eq!(number(81_600.0), "81,600");
    }

    #[test]
    fn table() {
        let t = markdown_table(&["size", "a"], &[vec!["10".into(), "1 ms".into()]]);
        assert_eq!(t, "| size | a |\n|---|---:|\n| 10 | 1 ms |\n");
    }

    #[test]
    fn durations_as_debug_prints_them() {
        for d in [
            Duration::from_millis(12),
            Duration::from_micros(850),
            Duration::from_millis(1500),
            Duration::from_nanos(42),
        ] {
            let parsed = parse_debug_duration(&format!("{d:?}")).unwrap();
            assert!((parsed.as_secs_f64() - d.as_secs_f64()).abs() < 1e-9, "{d:?}");
        }
        assert_eq!(
            parse_debug_duration("12.3ms"),
            Some(Duration::from_micros(12_300))
        );
        assert_eq!(parse_debug_duration("ms"), None);
        assert_eq!(parse_debug_duration("12 parsecs"), None);
    }

    #[test]
    fn commit_and_repair_times_from_the_logs() {
        let apply = "applied p.toml to table inet dockfw: 1 rule\n  2 transaction(s): 9 messages, \
                     1234 bytes, generation 7, 1 attempt(s); apply 5.1ms: commit 3.4ms, verify 1.2ms; \
                     read the table 2 time(s)\n";
        assert_eq!(commit_time(apply), Some(Duration::from_micros(3_400)));
        assert_eq!(apply_call_time(apply), Some(Duration::from_micros(5_100)));
        assert_eq!(commit_time("up to date"), None);
        assert_eq!(apply_call_time("up to date"), None);
        let line = "repaired table inet dockfw: table deleted, by nft (pid 4242), in 2.2 ms";
        assert_eq!(repair_time(line), Some(Duration::from_micros(2_200)));
        assert_eq!(
            repair_time("repaired table inet dockfw: x, in 1.1s"),
            Some(Duration::from_millis(1100))
        );
    }

    #[test]
    fn measurement_round_trips_through_its_line() {
        let m = Measurement {
            wall: Duration::from_micros(1234),
            system: Duration::from_micros(56),
            max_rss_kib: 7890,
            success: true,
            timed_out: false,
        };
        let output = format!("whatever the command printed\n{}\n", m.line());
        assert_eq!(Measurement::parse(&output), Some(m));
        assert_eq!(Measurement::parse("nothing"), None);
    }
}
