//! Sizes and percentages as operators write them (`10G`, `500M`, `90%`).
//!
//! Sizes are binary (`1K` = 1024 bytes) because disks and object stores
//! report bytes and the seeds' `10G` is a rough budget either way; binary
//! units keep every value an exact integer.

/// Parses `10G`, `500M`, `64K`, `2T` (binary multiples, an optional trailing
/// `B` or `iB`) or a bare number of bytes.
pub fn parse_size_bytes(input: &str) -> Result<u64, &'static str> {
    let s = input.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return Err("no number");
    }
    let value: u64 = digits.parse().map_err(|_| "number too large")?;
    let unit = unit.trim();
    let unit = unit
        .strip_suffix("iB")
        .or_else(|| unit.strip_suffix('B'))
        .unwrap_or(unit);
    let shift = match unit {
        "" => 0,
        "K" | "k" => 10,
        "M" => 20,
        "G" | "g" => 30,
        "T" | "t" => 40,
        _ => return Err("unknown unit (use K, M, G or T)"),
    };
    value.checked_mul(1u64 << shift).ok_or("number too large")
}

/// Parses a disk-usage percentage, `90%`, into 1..=100.
pub fn parse_percent(input: &str) -> Result<u8, &'static str> {
    let digits = input.trim().strip_suffix('%').ok_or("missing '%'")?;
    let value: u8 = digits
        .trim()
        .parse()
        .map_err(|_| "not a whole number from 1 to 100")?;
    if (1..=100).contains(&value) {
        Ok(value)
    } else {
        Err("not a whole number from 1 to 100")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size_bytes("10G"), Ok(10 << 30));
        assert_eq!(parse_size_bytes("500M"), Ok(500 << 20));
        assert_eq!(parse_size_bytes("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size_bytes("2TB"), Ok(2 << 40));
        assert_eq!(parse_size_bytes("1234"), Ok(1234));
        assert!(parse_size_bytes("G").is_err());
        assert!(parse_size_bytes("10X").is_err());
        assert!(parse_size_bytes("99999999999T").is_err());
    }

    #[test]
    fn percents() {
        assert_eq!(parse_percent("90%"), Ok(90));
        assert_eq!(parse_percent("100%"), Ok(100));
        assert!(parse_percent("0%").is_err());
        assert!(parse_percent("101%").is_err());
        assert!(parse_percent("90").is_err());
    }
}
