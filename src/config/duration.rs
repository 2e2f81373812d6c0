//! Go `time.Duration` values: parsing (`time.ParseDuration` syntax) and Go-style display.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A signed span of time with Go `time.Duration` semantics: whole nanoseconds in an `i64`
/// (about ±292 years), printed the way Go prints it (`1h30m0s`, `1.5s`, `-500ms`, `0s`).
///
/// Litestream keeps every interval in its config as a Go duration, so a negative or zero value
/// is representable here; the config resolver decides what such a value means for each key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoDuration(i64);

const NANOSECOND: u64 = 1;
const MICROSECOND: u64 = 1_000 * NANOSECOND;
const MILLISECOND: u64 = 1_000 * MICROSECOND;
const SECOND: u64 = 1_000 * MILLISECOND;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;

/// The units `parse_go_duration` understands, as listed in error messages.
const UNITS_HELP: &str = "units are ns, us (or µs), ms, s, m and h";

impl GoDuration {
    /// The zero duration.
    pub const ZERO: GoDuration = GoDuration(0);

    /// A duration of `nanos` nanoseconds (negative allowed).
    pub const fn from_nanos(nanos: i64) -> Self {
        GoDuration(nanos)
    }

    /// A duration of `secs` whole seconds; saturates at the `i64` nanosecond range.
    pub const fn from_secs(secs: i64) -> Self {
        GoDuration(secs.saturating_mul(SECOND as i64))
    }

    /// The duration in nanoseconds.
    pub const fn as_nanos(self) -> i64 {
        self.0
    }

    /// True when the duration is strictly greater than zero.
    pub const fn is_positive(self) -> bool {
        self.0 > 0
    }

    /// The duration as a [`std::time::Duration`], or `None` when it is negative.
    pub fn to_std(self) -> Option<Duration> {
        u64::try_from(self.0).ok().map(Duration::from_nanos)
    }

    /// The duration of a [`std::time::Duration`], or `None` beyond `i64::MAX` nanoseconds.
    pub fn from_std(d: Duration) -> Option<Self> {
        i64::try_from(d.as_nanos()).ok().map(GoDuration)
    }
}

impl fmt::Display for GoDuration {
    /// Formats like Go's `Duration.String`: `0s`, `1.5µs`, `250ms`, `59s`, `1m0s`, `1h30m0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut u = self.0.unsigned_abs();
        let mut out = String::new();
        if self.0 < 0 {
            out.push('-');
        }
        if u < SECOND {
            if u == 0 {
                return f.write_str("0s");
            }
            let (prec, unit) = if u < MICROSECOND {
                (0, "ns")
            } else if u < MILLISECOND {
                (3, "µs")
            } else {
                (6, "ms")
            };
            let (int, frac) = split_fraction(u, prec);
            out.push_str(&format!("{int}{frac}{unit}"));
        } else {
            let (secs, frac) = split_fraction(u, 9);
            u = secs / 60; // whole minutes
            if u > 0 {
                if u / 60 > 0 {
                    out.push_str(&format!("{}h", u / 60));
                }
                out.push_str(&format!("{}m", u % 60));
            }
            out.push_str(&format!("{}{frac}s", secs % 60));
        }
        f.write_str(&out)
    }
}

/// Splits `v` into `v / 10^prec` and the fraction `.ddd` (trailing zeros dropped, empty if 0).
fn split_fraction(v: u64, prec: u32) -> (u64, String) {
    let scale = 10u64.pow(prec);
    let (int, frac) = (v / scale, v % scale);
    if frac == 0 {
        return (int, String::new());
    }
    let digits = format!("{frac:0width$}", width = prec as usize);
    (int, format!(".{}", digits.trim_end_matches('0')))
}

impl FromStr for GoDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_go_duration(s)
    }
}

/// Parses a duration in Go `time.ParseDuration` syntax.
///
/// Accepted: an optional sign, then one or more `<number><unit>` parts, where the number may
/// have a fraction (`1.5h`, `.5s`, `1h30m`, `-1s`, `1µs`) and the unit is one of `ns`, `us`,
/// `µs` (U+00B5 or U+03BC), `ms`, `s`, `m`, `h`. `0` alone means zero. Beyond Go, a bare
/// integer (`1000000000`) means that many nanoseconds, exactly as a YAML integer does for a
/// Litestream duration key.
///
/// Rejected, with a message that says what to write instead: days/weeks/years (`1d` → "use
/// 24h"), a number without a unit, spaces (`1h 30m`), values beyond ±292 years.
pub fn parse_go_duration(s: &str) -> Result<GoDuration, String> {
    let invalid = |reason: &str| format!("invalid duration {s:?}: {reason}");

    // A bare integer counts nanoseconds, as a YAML integer does for a Go duration field.
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<i64>()
            .map(GoDuration)
            .map_err(|_| invalid("out of range (at most about 292 years)"));
    }

    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest.is_empty() {
        return Err(invalid(&format!(
            "empty; write a number and a unit such as 1s or 500ms ({UNITS_HELP})"
        )));
    }

    let mut total: u128 = 0;
    while !rest.is_empty() {
        let part_start = rest;
        // Integer part.
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_digits, after_int) = rest.split_at(int_len);
        let mut value: u128 = 0;
        for d in int_digits.bytes() {
            value = value * 10 + u128::from(d - b'0');
            if value > 1 << 63 {
                return Err(invalid("out of range (at most about 292 years)"));
            }
        }
        rest = after_int;

        // Optional fraction; digits past what u64 can hold are ignored, as Go does.
        let (mut frac, mut scale, mut frac_len) = (0u128, 1u128, 0usize);
        if let Some(after_dot) = rest.strip_prefix('.') {
            frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            for d in after_dot[..frac_len].bytes() {
                if scale < 10u128.pow(19) {
                    frac = frac * 10 + u128::from(d - b'0');
                    scale *= 10;
                }
            }
            rest = &after_dot[frac_len..];
        }
        if int_len == 0 && frac_len == 0 {
            return Err(invalid(&format!(
                "expected a number before {:?}; write e.g. 1s or 500ms",
                rest
            )));
        }

        // Unit: everything up to the next digit or '.'.
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (unit, after_unit) = rest.split_at(unit_len);
        let unit_ns: u64 = match unit {
            "ns" => NANOSECOND,
            "us" | "µs" | "μs" => MICROSECOND,
            "ms" => MILLISECOND,
            "s" => SECOND,
            "m" => MINUTE,
            "h" => HOUR,
            "" => {
                let number = &part_start[..part_start.len() - rest.len()];
                return Err(invalid(&format!(
                    "missing unit after {number}; write e.g. {number}s ({UNITS_HELP})"
                )));
            }
            "d" => {
                return Err(invalid(
                    "days are not a Go duration unit; use 24h for one day",
                ));
            }
            "w" => {
                return Err(invalid(
                    "weeks are not a Go duration unit; use 168h for one week",
                ));
            }
            "y" => {
                return Err(invalid(
                    "years are not a Go duration unit; use 8760h for 365 days",
                ));
            }
            u if u.contains(char::is_whitespace) => {
                return Err(invalid(&format!(
                    "spaces are not allowed; write the parts together, e.g. 1h30m ({UNITS_HELP})"
                )));
            }
            u => return Err(invalid(&format!("unknown unit {u:?}; {UNITS_HELP}"))),
        };
        rest = after_unit;

        let unit_ns = u128::from(unit_ns);
        let part = value * unit_ns + frac * unit_ns / scale;
        total += part;
        if total > 1 << 63 {
            return Err(invalid("out of range (at most about 292 years)"));
        }
    }

    if neg {
        // total <= 2^63, so the negation fits in i64 (i64::MIN when equal).
        Ok(GoDuration((-(total as i128)) as i64))
    } else {
        i64::try_from(total)
            .map(GoDuration)
            .map_err(|_| invalid("out of range (at most about 292 years)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(s: &str) -> i64 {
        parse_go_duration(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .as_nanos()
    }

    #[test]
    fn valid_go_durations() {
        let cases: &[(&str, i64)] = &[
            ("0", 0),
            ("-0", 0),
            ("+0", 0),
            ("0s", 0),
            ("1ns", 1),
            ("1us", 1_000),
            ("1µs", 1_000),
            ("1μs", 1_000),
            ("500ms", 500_000_000),
            ("1s", 1_000_000_000),
            ("1.5s", 1_500_000_000),
            (".5s", 500_000_000),
            ("1.s", 1_000_000_000),
            ("10m", 600_000_000_000),
            ("1h30m", 5_400_000_000_000),
            ("1.5h", 5_400_000_000_000),
            ("72h", 259_200_000_000_000),
            ("2h45m30.5s", 9_930_500_000_000),
            ("300us", 300_000),
            ("-1s", -1_000_000_000),
            ("+1s", 1_000_000_000),
            ("-1.5h", -5_400_000_000_000),
            ("1h1h", 7_200_000_000_000),
            ("0.000000001s", 1),
            ("2562047h47m16.854775807s", i64::MAX),
            ("-2562047h47m16.854775808s", i64::MIN),
            // A bare integer is nanoseconds.
            ("1000000000", 1_000_000_000),
            ("-5", -5),
        ];
        for &(s, want) in cases {
            assert_eq!(ns(s), want, "{s}");
        }
    }

    #[test]
    fn invalid_go_durations() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("-", "empty"),
            ("1d", "use 24h"),
            ("7d", "use 24h"),
            ("2w", "168h"),
            ("1y", "8760h"),
            ("1.5", "missing unit"),
            ("1h30", "missing unit"),
            ("s", "expected a number"),
            (".s", "expected a number"),
            ("1h 30m", "spaces are not allowed"),
            (" 1s", "expected a number"),
            ("1sec", "unknown unit \"sec\""),
            ("1H", "unknown unit \"H\""),
            ("2562047h47m16.854775808s", "out of range"),
            ("9999999999999999999h", "out of range"),
            ("99999999999999999999", "out of range"),
            ("1e9", "unknown unit \"e\""),
        ];
        for &(s, want) in cases {
            let err = parse_go_duration(s).expect_err(s);
            assert!(err.contains(want), "{s}: {err}");
            assert!(err.starts_with("invalid duration"), "{s}: {err}");
        }
        let err = parse_go_duration("1.5").unwrap_err();
        assert!(err.contains("write e.g. 1.5s"), "{err}");
    }

    #[test]
    fn display_matches_go() {
        let cases: &[(i64, &str)] = &[
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (1_000_000, "1ms"),
            (250_000_000, "250ms"),
            (1_000_000_000, "1s"),
            (1_500_000_000, "1.5s"),
            (59_000_000_000, "59s"),
            (60_000_000_000, "1m0s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (5_400_000_000_000, "1h30m0s"),
            (86_400_000_000_000, "24h0m0s"),
            (-5_000_000, "-5ms"),
            (-90_500_000_000, "-1m30.5s"),
            (i64::MAX, "2562047h47m16.854775807s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
        ];
        for &(n, want) in cases {
            assert_eq!(GoDuration::from_nanos(n).to_string(), want, "{n}");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "1h30m0s",
            "1.5s",
            "-1m30.5s",
            "1.5µs",
            "2562047h47m16.854775807s",
        ] {
            assert_eq!(parse_go_duration(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn std_conversions() {
        assert_eq!(
            GoDuration::from_secs(2).to_std(),
            Some(Duration::from_secs(2))
        );
        assert_eq!(GoDuration::from_nanos(-1).to_std(), None);
        assert_eq!(
            GoDuration::from_std(Duration::from_millis(5)),
            Some(GoDuration::from_nanos(5_000_000))
        );
        assert_eq!(GoDuration::from_std(Duration::MAX), None);
        assert!(GoDuration::from_nanos(1).is_positive());
        assert!(!GoDuration::ZERO.is_positive());
    }
}
