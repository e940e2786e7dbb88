//! TaskMonk's files: the uploaded task files (base64 of gzip of a CSV or Excel file) and the output
//! files it writes (plain CSV or `.xlsx`).

use std::io::{Cursor, Read, Write};

use base64::Engine;

/// A table: the header row and the data rows, every cell a string.
#[derive(Debug, Default, PartialEq)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FileType {
    Csv,
    Excel,
}

impl FileType {
    /// `CSV`, `Excel`, or a file extension (`csv`, `xlsx`, `xls`), in any case.
    pub fn parse(s: &str) -> Option<FileType> {
        match s.trim().to_ascii_lowercase().as_str() {
            "csv" | "text/csv" => Some(FileType::Csv),
            "excel" | "xlsx" | "xls" => Some(FileType::Excel),
            _ => None,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            FileType::Csv => "csv",
            FileType::Excel => "xlsx",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            FileType::Csv => "text/csv",
            FileType::Excel => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        }
    }
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";

/// The file bytes inside an upload body: base64 text (whitespace tolerated) of a gzip file, or of the
/// file itself; a raw gzip or raw file is accepted too.
pub fn decode_upload(body: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let text: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&text)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(&text));
    let bytes = match decoded {
        Ok(d) => d,
        Err(_) if body.starts_with(GZIP_MAGIC) || body.starts_with(ZIP_MAGIC) => body.to_vec(),
        Err(_) if std::str::from_utf8(body).is_ok_and(|s| s.contains(',')) => body.to_vec(),
        Err(e) => return Err(format!("the body is not base64: {e}")),
    };
    if bytes.starts_with(GZIP_MAGIC) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| format!("the body is not valid gzip: {e}"))?;
        if out.len() > limit {
            return Err(format!("the file is larger than {limit} bytes"));
        }
        return Ok(out);
    }
    Ok(bytes)
}

/// Sniffs the type where the request did not say it.
pub fn sniff(bytes: &[u8]) -> FileType {
    if bytes.starts_with(ZIP_MAGIC) {
        FileType::Excel
    } else {
        FileType::Csv
    }
}

pub fn parse(bytes: &[u8], kind: FileType) -> Result<Table, String> {
    match kind {
        FileType::Csv => parse_csv(bytes),
        FileType::Excel => parse_xlsx(bytes),
    }
}

/// UTF-8 with the BOM stripped, else latin-1.
fn parse_csv(bytes: &[u8]) -> Result<Table, String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text: String = match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => bytes.iter().map(|&b| b as char).collect(),
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| format!("invalid CSV: {e}"))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let mut rows = Vec::new();
    for row in reader.records() {
        let row = row.map_err(|e| format!("invalid CSV: {e}"))?;
        let cells: Vec<String> = row.iter().map(str::to_string).collect();
        if cells.iter().all(|c| c.is_empty()) {
            continue;
        }
        rows.push(cells);
    }
    Ok(Table { header, rows })
}

fn parse_xlsx(bytes: &[u8]) -> Result<Table, String> {
    use calamine::Reader;
    let mut book = calamine::Xlsx::new(Cursor::new(bytes.to_vec()))
        .map_err(|e| format!("invalid Excel file: {e}"))?;
    let range = book
        .worksheet_range_at(0)
        .ok_or("the Excel file has no sheet")?
        .map_err(|e| format!("invalid Excel file: {e}"))?;
    let mut rows = range.rows();
    let header: Vec<String> = match rows.next() {
        Some(r) => r.iter().map(|c| cell_text(c).trim().to_string()).collect(),
        None => return Ok(Table::default()),
    };
    let rows = rows
        .map(|r| r.iter().map(cell_text).collect::<Vec<_>>())
        .filter(|r| r.iter().any(|c| !c.is_empty()))
        .collect();
    Ok(Table { header, rows })
}

fn cell_text(c: &calamine::Data) -> String {
    use calamine::Data;
    match c {
        Data::Empty => String::new(),
        Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        other => other.to_string(),
    }
}

pub fn write(table: &Table, kind: FileType) -> Result<Vec<u8>, String> {
    match kind {
        FileType::Csv => write_csv(table),
        FileType::Excel => write_xlsx(table),
    }
}

fn write_csv(table: &Table) -> Result<Vec<u8>, String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&table.header).map_err(|e| e.to_string())?;
    for row in &table.rows {
        w.write_record(row).map_err(|e| e.to_string())?;
    }
    w.into_inner().map_err(|e| e.to_string())
}

/// `A`, `B`, ..., `Z`, `AA`, ...
fn column_name(mut i: usize) -> String {
    let mut name = Vec::new();
    loop {
        name.push(b'A' + (i % 26) as u8);
        if i < 26 {
            break;
        }
        i = i / 26 - 1;
    }
    name.reverse();
    String::from_utf8(name).unwrap_or_default()
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

/// A one-sheet workbook of inline strings: what TaskMonk's "Excel" output is for a reader.
fn write_xlsx(table: &Table) -> Result<Vec<u8>, String> {
    let mut sheet = String::from(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>"#,
    );
    for (r, row) in std::iter::once(&table.header)
        .chain(table.rows.iter())
        .enumerate()
    {
        sheet.push_str(&format!(r#"<row r="{}">"#, r + 1));
        for (c, value) in row.iter().enumerate() {
            if value.is_empty() {
                continue;
            }
            sheet.push_str(&format!(
                r#"<c r="{}{}" t="inlineStr"><is><t xml:space="preserve">{}</t></is></c>"#,
                column_name(c),
                r + 1,
                xml_escape(value)
            ));
        }
        sheet.push_str("</row>");
    }
    sheet.push_str("</sheetData></worksheet>");
    let parts: [(&str, &str); 4] = [
        (
            "[Content_Types].xml",
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>"#,
        ),
        (
            "_rels/.rels",
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#,
        ),
        (
            "xl/workbook.xml",
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Output" sheetId="1" r:id="rId1"/></sheets></workbook>"#,
        ),
        (
            "xl/_rels/workbook.xml.rels",
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#,
        ),
    ];
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let e = |e: zip::result::ZipError| e.to_string();
    for (name, text) in parts {
        zip.start_file(name, options).map_err(e)?;
        zip.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
    }
    zip.start_file("xl/worksheets/sheet1.xml", options)
        .map_err(e)?;
    zip.write_all(sheet.as_bytes()).map_err(|e| e.to_string())?;
    Ok(zip.finish().map_err(e)?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        Table {
            header: vec!["a".into(), "b & c".into(), "external_id".into()],
            rows: vec![
                vec!["1".into(), "x, \"quoted\"".into(), "k1".into()],
                vec!["".into(), "<tag>".into(), "k2".into()],
            ],
        }
    }

    #[test]
    fn csv_and_excel_round_trip() {
        for kind in [FileType::Csv, FileType::Excel] {
            let bytes = write(&table(), kind).unwrap();
            assert_eq!(sniff(&bytes), kind);
            assert_eq!(parse(&bytes, kind).unwrap(), table(), "{kind:?}");
        }
    }

    #[test]
    fn uploads_decode_base64_gzip_and_raw() {
        let csv = b"a,b\n1,2\n3,4\n";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(csv).unwrap();
        let gz = gz.finish().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&gz);
        let wrapped = format!("{}\n{}\n", &b64[..10], &b64[10..]);
        assert_eq!(decode_upload(wrapped.as_bytes(), 1 << 20).unwrap(), csv);
        assert_eq!(decode_upload(&gz, 1 << 20).unwrap(), csv);
        assert_eq!(decode_upload(csv, 1 << 20).unwrap(), csv);
        assert!(decode_upload(b"%%%", 1 << 20).is_err());
        assert!(decode_upload(wrapped.as_bytes(), 4).is_err());
        let t = parse(csv, FileType::Csv).unwrap();
        assert_eq!(t.header, ["a", "b"]);
        assert_eq!(t.rows.len(), 2);
    }

    #[test]
    fn column_names() {
        assert_eq!(column_name(0), "A");
        assert_eq!(column_name(25), "Z");
        assert_eq!(column_name(26), "AA");
        assert_eq!(column_name(27), "AB");
        assert_eq!(column_name(701), "ZZ");
        assert_eq!(column_name(702), "AAA");
    }

    #[test]
    fn file_types() {
        assert_eq!(FileType::parse("CSV"), Some(FileType::Csv));
        assert_eq!(FileType::parse("excel"), Some(FileType::Excel));
        assert_eq!(FileType::parse("xlsx"), Some(FileType::Excel));
        assert_eq!(FileType::parse("pdf"), None);
    }
}
