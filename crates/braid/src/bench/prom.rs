//! A small, tolerant parser of the Prometheus text exposition format
//! (version 0.0.4), enough to read `braid proxy --metrics`.
//!
//! Each sample line is `name[{label="value",...}] value [timestamp]`.
//! Comments (`# HELP`, `# TYPE`, anything after `#`), blank lines and lines
//! that do not parse are skipped, so unknown or future metrics never break
//! a reader. Label values may hold the escapes `\\`, `\"` and `\n`.

/// One sample: a metric name, its labels and its value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PromSample {
    pub(crate) name: String,
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) value: f64,
}

impl PromSample {
    /// The value of label `key`.
    pub(crate) fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Every sample of `text` that parses, in order.
pub(crate) fn parse(text: &str) -> Vec<PromSample> {
    text.lines().filter_map(parse_line).collect()
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// One sample line, or `None` for comments, blanks and garbage.
fn parse_line(line: &str) -> Option<PromSample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    if !line.starts_with(is_name_start) {
        return None;
    }
    let name_end = line.find(|c: char| !is_name_char(c)).unwrap_or(line.len());
    let (name, mut rest) = line.split_at(name_end);
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, remainder) = parse_labels(after)?;
        labels = parsed;
        rest = remainder;
    }
    let mut fields = rest.split_ascii_whitespace();
    let value = parse_value(fields.next()?)?;
    // An optional integer timestamp, then nothing.
    if let Some(ts) = fields.next()
        && ts.parse::<i64>().is_err()
    {
        return None;
    }
    if fields.next().is_some() {
        return None;
    }
    Some(PromSample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Labels after the opening `{`, up to and including the closing `}`;
/// returns them and the rest of the line.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Some((labels, rest));
        }
        if !s.starts_with(is_name_start) {
            return None;
        }
        let key_end = s.find(|c: char| !is_name_char(c))?;
        let (key, rest) = s.split_at(key_end);
        let rest = rest.trim_start().strip_prefix('=')?.trim_start();
        let rest = rest.strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        };
        labels.push((key.to_string(), value));
        s = rest.get(end + 1..)?.trim_start();
        if let Some(after) = s.strip_prefix(',') {
            s = after;
        } else if !s.starts_with('}') {
            return None;
        }
    }
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_labels_and_comments() {
        let text = "# HELP braid_tunnels Live tunnels.\n\
            # TYPE braid_tunnels gauge\n\
            braid_tunnels 2\n\
            \n\
            braid_leg_open{tunnel=\"7\",leg=\"0\",path=\"relay0>relay2>exit0\"} 1\n\
            braid_leg_data_bytes_received_total{tunnel=\"7\",leg=\"1\"} 1.5e6 1700000000000\n\
            braid_leg_rtt_seconds{ tunnel = \"7\" , leg=\"1\" , } 0.0421\n";
        let s = parse(text);
        assert_eq!(s.len(), 4);
        assert_eq!(s[0].name, "braid_tunnels");
        assert!(s[0].labels.is_empty());
        assert_eq!(s[0].value, 2.0);
        assert_eq!(s[1].label("path"), Some("relay0>relay2>exit0"));
        assert_eq!(s[1].label("leg"), Some("0"));
        assert_eq!(s[2].value, 1.5e6);
        assert_eq!(s[3].label("tunnel"), Some("7"));
        assert_eq!(s[3].value, 0.0421);
        assert_eq!(s[3].label("nope"), None);
    }

    #[test]
    fn escapes_and_special_values() {
        let s = parse("m{a=\"x\\\"y\\\\z\\n\",b=\"}{,\"} +Inf\nm -Inf\nm NaN\n");
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].label("a"), Some("x\"y\\z\n"));
        assert_eq!(s[0].label("b"), Some("}{,"));
        assert_eq!(s[0].value, f64::INFINITY);
        assert_eq!(s[1].value, f64::NEG_INFINITY);
        assert!(s[2].value.is_nan());
    }

    #[test]
    fn garbage_is_skipped() {
        let text = "no_value\n\
            9starts_with_digit 1\n\
            m{unclosed=\"x\" 1\n\
            m{a=unquoted} 1\n\
            m{a=\"1\"b=\"2\"} 1\n\
            m 1 notatimestamp\n\
            m 1 2 3\n\
            m abc\n\
            {a=\"1\"} 1\n\
            ok 3\n\
            ok{} 4\n";
        let s = parse(text);
        let values: Vec<f64> = s.iter().map(|x| x.value).collect();
        assert_eq!(values, vec![3.0, 4.0]);
        assert!(s.iter().all(|x| x.name == "ok"));
        assert!(parse("").is_empty());
    }
}
