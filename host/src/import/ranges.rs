//! Byte ranges of an input and the lines each one owns.
//!
//! The rule: a range `[start, end)` owns every line that *starts* in it.
//! The first range starts at 0; a later one reads from `start - 1` and skips
//! through the first `\n` found there (that byte is `\n` exactly when a line
//! starts at `start`), so the line straddling its start belongs to the range
//! before, which reads it to its end even past its own `end`. Every line is
//! therefore read by exactly one range, whatever the boundaries. Lines end
//! with `\n` or `\r\n`; the last one may have no terminator; blank lines
//! (whitespace only) are skipped but keep their number.
//!
//! Line numbers are physical (1-based, blank lines counted). A range's first
//! number comes from a counting pass over the input before any range runs:
//! the `\n` bytes inside each range, summed over the ranges before it, give
//! the newlines before its `start`; the skip then tells whether its first
//! line starts at `start` (`+1`) or after a partial line (`+2`).

use std::io::{self, Read};

use serde::{Deserialize, Serialize};

/// Bytes read from a source at a time.
const CHUNK: usize = 1 << 20;

/// `[start, end)`: owns the lines that start in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

/// Cuts `len` bytes into ranges of `range_bytes` (the last one shorter).
/// An empty input still gets one (empty) range, so it is read and finished
/// like any other.
pub fn split(len: u64, range_bytes: u64) -> Vec<ByteRange> {
    let step = range_bytes.max(1);
    let mut ranges = Vec::new();
    let mut start: u64 = 0;
    loop {
        let end = start.saturating_add(step).min(len);
        ranges.push(ByteRange { start, end });
        if end >= len {
            return ranges;
        }
        start = end;
    }
}

/// The `\n` bytes among the next `len` bytes of `reader`.
pub fn count_newlines(reader: impl Read, len: u64) -> io::Result<u64> {
    let mut reader = reader.take(len);
    let mut buf = vec![0; CHUNK];
    let mut count = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(count),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        count += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
    }
}

/// One non-blank line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawLine {
    /// 1-based physical line number.
    pub line: u64,
    /// Byte offset of its first byte in the input.
    pub offset: u64,
    pub content: Content,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    /// Without its terminator.
    Bytes(Vec<u8>),
    /// Longer than the limit: skipped, with its length (terminator
    /// included).
    TooLong(u64),
}

/// Reads the lines one range owns.
pub struct LineReader<R> {
    reader: R,
    buf: Vec<u8>,
    /// Start of the unread part of `buf`.
    head: usize,
    /// Input offset of `buf[head]`, a line start once positioned.
    offset: u64,
    /// Number of the line starting at `offset`.
    line: u64,
    end: u64,
    max_line: usize,
    eof: bool,
}

impl<R: Read> LineReader<R> {
    /// The lines of `range`, from a reader positioned at `range.start - 1`
    /// (at 0 for the first range); `newlines_before` counts the `\n` bytes
    /// before `range.start`.
    pub fn range(
        reader: R,
        range: ByteRange,
        newlines_before: u64,
        max_line: usize,
    ) -> io::Result<Self> {
        if range.start == 0 {
            return Ok(Self::resume(reader, 0, 1, range.end, max_line));
        }
        let mut lines = Self::resume(
            reader,
            range.start - 1,
            newlines_before + 1,
            range.end,
            max_line,
        );
        let skipped = lines.skip_through_newline()?;
        // More than the one byte before `start`: a partial line, whose
        // newline is not among those counted before `start`.
        if skipped > 1 {
            lines.line += 1;
        }
        Ok(lines)
    }

    /// Continues at `offset`, a line start with number `line`, from a
    /// reader positioned there.
    pub fn resume(reader: R, offset: u64, line: u64, end: u64, max_line: usize) -> Self {
        LineReader {
            reader,
            buf: Vec::new(),
            head: 0,
            offset,
            line,
            end,
            max_line: max_line.max(1),
            eof: false,
        }
    }

    /// Where the next line starts and its number: where to resume.
    pub fn position(&self) -> (u64, u64) {
        (self.offset, self.line)
    }

    /// Whether no line of the range is left.
    pub fn finished(&self) -> bool {
        self.offset >= self.end || (self.eof && self.head == self.buf.len())
    }

    /// The next non-blank line of the range.
    pub fn next_line(&mut self) -> io::Result<Option<RawLine>> {
        loop {
            if self.offset >= self.end {
                return Ok(None);
            }
            let (line, offset) = (self.line, self.offset);
            let mut scanned = 0;
            let taken = loop {
                if let Some(i) = memchr::memchr(b'\n', &self.buf[self.head + scanned..]) {
                    break Some(scanned + i + 1);
                }
                scanned = self.buf.len() - self.head;
                if scanned > self.max_line {
                    break None;
                }
                if self.eof {
                    break Some(scanned);
                }
                self.fill()?;
            };
            let Some(n) = taken else {
                let skipped = self.skip_through_newline()?;
                self.line += 1;
                return Ok(Some(RawLine {
                    line,
                    offset,
                    content: Content::TooLong(skipped),
                }));
            };
            if n == 0 {
                return Ok(None);
            }
            let raw = &self.buf[self.head..self.head + n];
            let content = raw.strip_suffix(b"\n").unwrap_or(raw);
            let content = content.strip_suffix(b"\r").unwrap_or(content);
            let result = if content.len() > self.max_line {
                Some(Content::TooLong(n as u64))
            } else if content.iter().all(u8::is_ascii_whitespace) {
                None
            } else {
                Some(Content::Bytes(content.to_vec()))
            };
            self.head += n;
            self.offset += n as u64;
            self.line += 1;
            if let Some(content) = result {
                return Ok(Some(RawLine {
                    line,
                    offset,
                    content,
                }));
            }
        }
    }

    /// Consumes through the next `\n` (or to the end of the input) without
    /// keeping the bytes; returns how many were consumed.
    fn skip_through_newline(&mut self) -> io::Result<u64> {
        let mut skipped = 0;
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf[self.head..]) {
                self.head += i + 1;
                skipped += i as u64 + 1;
                self.offset += i as u64 + 1;
                return Ok(skipped);
            }
            let rest = (self.buf.len() - self.head) as u64;
            skipped += rest;
            self.offset += rest;
            self.head = self.buf.len();
            if self.eof {
                return Ok(skipped);
            }
            self.fill()?;
        }
    }

    /// Reads one more chunk after the unread bytes (dropping the read
    /// ones); sets `eof` at the end of the input.
    fn fill(&mut self) -> io::Result<()> {
        self.buf.drain(..self.head);
        self.head = 0;
        let filled = self.buf.len();
        self.buf.resize(filled + CHUNK, 0);
        let n = loop {
            match self.reader.read(&mut self.buf[filled..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(filled);
                    return Err(e);
                }
            }
        };
        self.buf.truncate(filled + n);
        if n == 0 {
            self.eof = true;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Cursor;

    /// CRLF, LF, blank lines (empty, CR only, spaces), a line longer than
    /// several ranges, a last line without terminator.
    pub(crate) fn sample() -> Vec<u8> {
        let long = format!("{{\"long\":\"{}\"}}", "x".repeat(40));
        format!("{{\"a\":1}}\r\n\n{{\"b\":2}}\n\r\n  \n{long}\r\n{{\"c\":3}}\n\n{{\"d\":4}}")
            .into_bytes()
    }

    /// The lines as read in one pass, the reference.
    pub(crate) fn reference(data: &[u8]) -> Vec<RawLine> {
        let mut lines = Vec::new();
        let mut offset = 0u64;
        for (i, raw) in data.split_inclusive(|b| *b == b'\n').enumerate() {
            let content = raw.strip_suffix(b"\n").unwrap_or(raw);
            let content = content.strip_suffix(b"\r").unwrap_or(content);
            if !content.iter().all(u8::is_ascii_whitespace) {
                lines.push(RawLine {
                    line: i as u64 + 1,
                    offset,
                    content: Content::Bytes(content.to_vec()),
                });
            }
            offset += raw.len() as u64;
        }
        lines
    }

    /// Every line of `data` read range by range, as the job does.
    fn by_ranges(data: &[u8], range_bytes: u64) -> Vec<RawLine> {
        by_ranges_with(data.len() as u64, range_bytes, &|from, _| {
            Box::new(Cursor::new(&data[from as usize..]))
        })
    }

    /// Every line of an input of `len` bytes read range by range, as the
    /// job does, `open(from, until)` reading it from `from`.
    pub(crate) fn by_ranges_with<'a>(
        len: u64,
        range_bytes: u64,
        open: &dyn Fn(u64, u64) -> Box<dyn Read + 'a>,
    ) -> Vec<RawLine> {
        let ranges = split(len, range_bytes);
        let mut before = 0;
        let mut lines = Vec::new();
        for r in ranges {
            let mut reader =
                LineReader::range(open(r.start.saturating_sub(1), r.end), r, before, 1 << 20)
                    .unwrap();
            while let Some(line) = reader.next_line().unwrap() {
                assert!(
                    r.start <= line.offset && line.offset < r.end,
                    "{r:?} {line:?}"
                );
                lines.push(line);
            }
            assert!(reader.finished());
            before += count_newlines(open(r.start, r.end), r.end - r.start).unwrap();
        }
        lines
    }

    #[test]
    fn every_line_once_at_every_boundary() {
        let data = sample();
        let expected = reference(&data);
        assert_eq!(expected.len(), 5);
        assert_eq!(
            expected.iter().map(|l| l.line).collect::<Vec<_>>(),
            [1, 3, 6, 7, 9]
        );
        for range_bytes in 1..=data.len() as u64 + 1 {
            assert_eq!(by_ranges(&data, range_bytes), expected, "{range_bytes}");
        }
        // Two ranges split at every position.
        for cut in 0..=data.len() as u64 {
            let ranges = [
                ByteRange { start: 0, end: cut },
                ByteRange {
                    start: cut,
                    end: data.len() as u64,
                },
            ];
            let mut lines = Vec::new();
            let mut before = 0;
            for r in ranges {
                let from = r.start.saturating_sub(1) as usize;
                let mut reader =
                    LineReader::range(Cursor::new(&data[from..]), r, before, 1 << 20).unwrap();
                while let Some(line) = reader.next_line().unwrap() {
                    lines.push(line);
                }
                before += count_newlines(Cursor::new(&data[..cut as usize]), cut).unwrap();
            }
            assert_eq!(lines, expected, "cut at {cut}");
        }
    }

    #[test]
    fn splits_cover_the_input() {
        assert_eq!(split(0, 10), [ByteRange { start: 0, end: 0 }]);
        assert_eq!(split(10, 10), [ByteRange { start: 0, end: 10 }]);
        assert_eq!(
            split(25, 10),
            [
                ByteRange { start: 0, end: 10 },
                ByteRange { start: 10, end: 20 },
                ByteRange { start: 20, end: 25 }
            ]
        );
        assert_eq!(split(3, 0).len(), 3);
    }

    #[test]
    fn resumes_at_a_position() {
        let data = sample();
        let expected = reference(&data);
        let end = data.len() as u64;
        let mut reader = LineReader::range(
            Cursor::new(&data[..]),
            ByteRange { start: 0, end },
            0,
            1 << 20,
        )
        .unwrap();
        let mut lines = vec![reader.next_line().unwrap().unwrap()];
        lines.push(reader.next_line().unwrap().unwrap());
        let (offset, line) = reader.position();
        assert_eq!((offset, line), (expected[2].offset - 5, 4));
        let mut resumed = LineReader::resume(
            Cursor::new(&data[offset as usize..]),
            offset,
            line,
            end,
            1 << 20,
        );
        while let Some(l) = resumed.next_line().unwrap() {
            lines.push(l);
        }
        assert_eq!(lines, expected);
    }

    #[test]
    fn overlong_lines_are_skipped_whole() {
        let data = b"{\"a\":1}\nxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n{\"b\":2}\nyyyyyyyyyyyy".to_vec();
        let end = data.len() as u64;
        let mut reader =
            LineReader::range(Cursor::new(&data[..]), ByteRange { start: 0, end }, 0, 10).unwrap();
        let mut got = Vec::new();
        while let Some(l) = reader.next_line().unwrap() {
            got.push((l.line, l.offset, l.content));
        }
        assert_eq!(
            got,
            [
                (1, 0, Content::Bytes(b"{\"a\":1}".to_vec())),
                (2, 8, Content::TooLong(28)),
                (3, 36, Content::Bytes(b"{\"b\":2}".to_vec())),
                (4, 44, Content::TooLong(12)),
            ]
        );
    }
}
