//! Sizes as people write them: `512M`, `2G`, `64MiB`, `1048576` (bytes). The units are powers of
//! 1024, as nginx and most daemons read them, with or without a `B` or `iB`.

const HOW: &str = "write a whole number of bytes, or one with a unit: `64K`, `512M`, `2G` (powers of 1024)";

/// Parses a size in bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, rest) = text.split_at(split);
    if number.is_empty() {
        return Err(format!("`{text}` is not a size: {HOW}"));
    }
    if rest.starts_with(['.', ',']) {
        return Err(format!("`{text}` is a fraction: sizes are whole numbers; use a smaller unit ({HOW})"));
    }
    let n: u64 = number.parse().map_err(|_| format!("`{text}` is too large for a size"))?;
    let unit = rest.trim().to_ascii_uppercase();
    let shift = match unit.trim_end_matches("IB").trim_end_matches('B') {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("`{}` is not a unit of size: {HOW}", rest.trim())),
    };
    n.checked_mul(1u64 << shift).ok_or_else(|| format!("`{text}` is too large for a size"))
}

/// Formats a size the way [`parse_size`] reads it, with the largest exact unit.
pub fn format_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if bytes != 0 && bytes % (1u64 << shift) == 0 {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_units_of_1024() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("3mb"), Ok(3 << 20));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("1.5G").unwrap_err().contains("fraction"));
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
        assert!(parse_size("5 parsecs").unwrap_err().contains("`parsecs` is not a unit of size"));
        for n in [0u64, 1000, 512 << 20, 2 << 30, (1 << 20) + 1] {
            assert_eq!(parse_size(&format_size(n)), Ok(n));
        }
    }
}
