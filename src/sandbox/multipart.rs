//! Just enough `multipart/form-data` to take one named file part out of a buffered body (CSV
//! imports). A few lines here instead of another dependency (axum's `multipart` feature pulls
//! `multer`); bodies are small (1,000 rows at most) and already in memory.

/// The content of the part named `name`, or why there is none.
pub fn part<'a>(content_type: &str, body: &'a [u8], name: &str) -> Result<&'a [u8], String> {
    parts(content_type, body)?
        .into_iter()
        .find(|(n, _)| n.as_deref() == Some(name))
        .map(|(_, content)| content)
        .ok_or_else(|| format!("Required request part '{name}' is not present"))
}

/// A part's name (from `Content-Disposition`) and content.
pub type Part<'a> = (Option<String>, &'a [u8]);

/// Every part of the body, in order.
pub fn parts<'a>(content_type: &str, body: &'a [u8]) -> Result<Vec<Part<'a>>, String> {
    let boundary = boundary(content_type)
        .ok_or_else(|| "Current request is not a multipart request".to_string())?;
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let mut rest = body;
    // Skip the preamble up to the first delimiter.
    let Some(start) = find(rest, delimiter) else {
        return Err("Malformed multipart body".to_string());
    };
    rest = &rest[start + delimiter.len()..];
    let mut out = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            return Ok(out); // closing delimiter
        }
        rest = strip_line_end(rest);
        let Some(head_end) = find(rest, b"\r\n\r\n") else {
            return Err("Malformed multipart body".to_string());
        };
        let headers = String::from_utf8_lossy(&rest[..head_end]).to_string();
        let content_start = head_end + 4;
        let mut next_delim = Vec::with_capacity(delimiter.len() + 2);
        next_delim.extend_from_slice(b"\r\n");
        next_delim.extend_from_slice(delimiter);
        let Some(len) = find(&rest[content_start..], &next_delim) else {
            return Err("Malformed multipart body".to_string());
        };
        out.push((
            part_name(&headers),
            &rest[content_start..content_start + len],
        ));
        rest = &rest[content_start + len + next_delim.len()..];
    }
}

fn boundary(content_type: &str) -> Option<String> {
    let (mime, params) = content_type.split_once(';')?;
    if !mime.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if k.trim().eq_ignore_ascii_case("boundary") {
            Some(v.trim().trim_matches('"').to_string())
        } else {
            None
        }
    })
}

/// `name="file"` from the part's `Content-Disposition`.
fn part_name(headers: &str) -> Option<String> {
    let line = headers
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))?;
    line.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if k.trim().eq_ignore_ascii_case("name") {
            Some(v.trim().trim_matches('"').to_string())
        } else {
            None
        }
    })
}

fn strip_line_end(b: &[u8]) -> &[u8] {
    b.strip_prefix(b"\r\n")
        .or_else(|| b.strip_prefix(b"\n"))
        .unwrap_or(b)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_file_part() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nv\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"r.csv\"\r\n\
Content-Type: text/csv\r\n\r\na,b\r\n1,2\r\n\r\n--XyZ--\r\n";
        let ct = "multipart/form-data; boundary=XyZ";
        assert_eq!(part(ct, body, "file").unwrap(), b"a,b\r\n1,2\r\n");
        assert!(part(ct, body, "missing").is_err());
        assert!(part("application/json", body, "file").is_err());
    }
}
