//! Durations as people write them in attributes, flags and files: `30s`, `500ms`, `2m`, `1h`,
//! or a bare whole number of seconds (`30`). Fractions are refused, with the whole number of a
//! smaller unit that says the same (`1.5s` is `1500ms`).

use std::time::Duration;

/// How to write a duration, for every message that refuses one.
const HOW: &str =
    "write a whole number of seconds (`30`) or a whole number with a unit: `500ms`, `30s`, `2m` or `1h`";

fn unit_ms(unit: &str) -> Option<u64> {
    match unit {
        "ms" => Some(1),
        "" | "s" => Some(1_000),
        "m" | "min" => Some(60_000),
        "h" => Some(3_600_000),
        _ => None,
    }
}

/// Parses `500ms`, `30s`, `2m`, `1h`, or a bare whole number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, rest) = text.split_at(split);
    if number.is_empty() {
        if text.starts_with('-') {
            return Err(format!("`{text}` is negative: a duration is at least 0; {HOW}"));
        }
        if let Some(fraction) = text.strip_prefix('.') {
            return Err(fraction_message(text, "0", fraction));
        }
        return Err(format!("`{text}` is not a duration: {HOW}"));
    }
    if let Some(after_point) = rest.strip_prefix(['.', ',']) {
        return Err(fraction_message(text, number, after_point));
    }
    let n: u64 = number.parse().map_err(|_| format!("`{text}` is too large for a duration"))?;
    let unit = rest.trim();
    let Some(per) = unit_ms(unit) else {
        return Err(format!("`{unit}` is not a unit of time: {HOW}"));
    };
    n.checked_mul(per)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{text}` is too large for a duration"))
}

/// The message for `whole.fraction unit`: a fraction, with the exact equivalent in a smaller
/// unit when there is one.
fn fraction_message(text: &str, whole: &str, after_point: &str) -> String {
    let split = after_point.find(|c: char| !c.is_ascii_digit()).unwrap_or(after_point.len());
    let (digits, unit) = after_point.split_at(split);
    let exact = (|| {
        let per = unit_ms(unit.trim())?;
        if digits.is_empty() || digits.len() > 9 {
            return None;
        }
        let scale = 10u64.checked_pow(digits.len() as u32)?;
        let whole: u64 = whole.parse().ok()?;
        let part: u64 = digits.parse().ok()?;
        let total = whole.checked_mul(scale)?.checked_add(part)?.checked_mul(per)?;
        (total % scale == 0).then(|| format_duration(Duration::from_millis(total / scale)))
    })();
    match exact {
        Some(same) => format!("`{text}` is a fraction: durations are whole numbers; write `{same}` for the same time"),
        None => format!("`{text}` is a fraction: durations are whole numbers; {HOW}"),
    }
}

/// Formats a duration the way [`parse_duration`] reads it, choosing the largest exact unit.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0s".to_string()
    } else if ms % 3_600_000 == 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1_000 == 0 {
        format!("{}s", ms / 1_000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_unit_and_bare_seconds() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn refuses_nonsense_with_the_fix() {
        let e = parse_duration("soon").unwrap_err();
        assert!(e.contains("whole number of seconds (`30`)") && e.contains("`500ms`"), "{e}");
        assert!(parse_duration("3 weeks").unwrap_err().contains("`weeks` is not a unit of time"));
        assert!(parse_duration("-1s").unwrap_err().contains("negative"));
    }

    #[test]
    fn names_a_fraction_as_a_fraction() {
        let e = parse_duration("1.5").unwrap_err();
        assert_eq!(e, "`1.5` is a fraction: durations are whole numbers; write `1500ms` for the same time");
        assert!(parse_duration("2.5m").unwrap_err().contains("write `150s`"));
        assert!(parse_duration("0.25h").unwrap_err().contains("write `15m`"));
        assert!(parse_duration(".5s").unwrap_err().contains("write `500ms`"));
        let e = parse_duration("1.0001s").unwrap_err();
        assert!(e.contains("is a fraction") && e.contains("`500ms`"), "{e}");
    }

    #[test]
    fn round_trips() {
        for ms in [0u64, 1, 999, 1000, 60_000, 90_000, 3_600_000] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
