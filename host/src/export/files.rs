//! One stream of output files: naming, rollover, the export-sink plugin
//! and the destination.
//!
//! Files are named `<Type>-<n>-<m>.ndjson` (`n` the unit's part number, `m`
//! the file's sequence number in its stream), `<Type>-deleted-<n>-<m>.ndjson`
//! for the Bundles of deleted resources and `OperationOutcome-1-<m>.ndjson`
//! for the error file; a sink configured with another `extension` (e.g.
//! `ndjson.gz`) replaces `ndjson`. A new file starts before a line that would take the
//! current one past `file_max_resources` lines or `file_max_bytes` bytes
//! (of NDJSON as produced, before the sink), but never between versions of
//! one resource (`_history`): a committed file then always ends with a whole
//! resource, which is what a stream's resume position counts in. So a file
//! may exceed a limit by the versions of one resource, and one line larger
//! than the byte limit gets a file of its own.

use std::sync::{Arc, Mutex, PoisonError, mpsc};

use crate::destinations::{Destination, DestinationError, Folder, PendingFile};
use crate::fhir::ResourceType;
use crate::jobs::JobRecord;
use crate::plugins::{FileInfo, Finished, LoadedPlugin, SinkWriter};

use super::checkpoint::{FileEntry, Position, StreamState};
use super::error::ExportError;
use super::request::ExportRequest;

/// Where a job's files go and how they are cut; shared by all its streams.
pub struct Target<'a> {
    pub destination: &'a dyn Destination,
    pub folder: &'a Folder,
    pub sink: &'a Arc<LoadedPlugin>,
    pub job_id: &'a str,
    pub max_lines: u64,
    pub max_bytes: u64,
}

/// What a stream holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Output(ResourceType),
    /// Transaction Bundles deleting resources of this type.
    Deleted(ResourceType),
    Errors,
}

impl Kind {
    /// The resource type of its lines, as the manifest and the sink see it.
    pub fn line_type(self) -> &'static str {
        match self {
            Kind::Output(rtype) => rtype.as_str(),
            Kind::Deleted(_) => "Bundle",
            Kind::Errors => "OperationOutcome",
        }
    }

    fn file_name(self, part: u32, seq: u32, extension: &str) -> String {
        match self {
            Kind::Output(rtype) => format!("{rtype}-{part}-{seq}.{extension}"),
            Kind::Deleted(rtype) => format!("{rtype}-deleted-{part}-{seq}.{extension}"),
            Kind::Errors => format!("OperationOutcome-{part}-{seq}.{extension}"),
        }
    }
}

/// Lines ready to be written, `\n`-ended and contiguous (one sink call per
/// file they land in), each with its resume facts.
#[derive(Default)]
pub struct Lines {
    pub data: Vec<u8>,
    pub lines: Vec<LineInfo>,
}

pub struct LineInfo {
    /// End of the line in `data`.
    end: usize,
    pub pos: Position,
    /// The unit's scan position before this line's resource: where a resumed
    /// scan must start for the line to be produced again.
    pub floor: Option<String>,
}

impl Lines {
    /// Appends one line (`line` without its `\n`).
    pub fn push(&mut self, line: &[u8], pos: Position, floor: Option<String>) {
        self.data.extend_from_slice(line);
        if !line.ends_with(b"\n") {
            self.data.push(b'\n');
        }
        self.lines.push(LineInfo {
            end: self.data.len(),
            pos,
            floor,
        });
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.lines.clear();
    }
}

struct OpenFile {
    name: String,
    sink: SinkWriter,
    file: Box<dyn PendingFile>,
    lines: u64,
    bytes: u64,
    last: Position,
    /// The floor of its first line.
    floor: Option<String>,
}

pub struct Stream<'a> {
    target: &'a Target<'a>,
    kind: Kind,
    /// The unit's part number `n`, and how many parts write this type (to
    /// give the sink a part number unique in the type).
    part: u32,
    parts: u32,
    state: StreamState,
    open: Option<OpenFile>,
}

impl<'a> Stream<'a> {
    /// Continues from `state` (the committed files of earlier attempts).
    pub fn new(
        target: &'a Target<'a>,
        kind: Kind,
        part: u32,
        parts: u32,
        state: StreamState,
    ) -> Self {
        Stream {
            target,
            kind,
            part,
            parts,
            state,
            open: None,
        }
    }

    pub fn state(&self) -> &StreamState {
        &self.state
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Whether a line at `pos` is already in a committed file.
    pub fn has(&self, pos: &Position) -> bool {
        self.state.last.as_ref().is_some_and(|last| pos <= last)
    }

    /// The floor of the uncommitted file, if one is open.
    pub fn floor(&self) -> Option<&Option<String>> {
        self.open.as_ref().map(|f| &f.floor)
    }

    /// Writes `lines`, committing each file that fills up. Returns whether
    /// a file was committed (the unit then checkpoints).
    pub fn write(&mut self, lines: &Lines) -> Result<bool, ExportError> {
        let mut committed = false;
        let mut chunk_start = 0;
        let mut line_start = 0;
        for line in &lines.lines {
            let len = (line.end - line_start) as u64;
            if let Some(open) = &self.open {
                let full = open.lines + 1 > self.target.max_lines
                    || open.bytes + len > self.target.max_bytes;
                if full && open.lines > 0 && open.last != line.pos {
                    self.send(&lines.data[chunk_start..line_start])?;
                    self.commit()?;
                    committed = true;
                    chunk_start = line_start;
                }
            }
            let open = match &mut self.open {
                Some(open) => open,
                None => self.open.insert(self.start(line.floor.clone())?),
            };
            open.lines += 1;
            open.bytes += len;
            open.last = line.pos.clone();
            line_start = line.end;
        }
        self.send(&lines.data[chunk_start..])?;
        Ok(committed)
    }

    /// Commits the open file, if any; returns whether there was one.
    pub fn finish(&mut self) -> Result<bool, ExportError> {
        if self.open.is_none() {
            return Ok(false);
        }
        self.commit()?;
        Ok(true)
    }

    /// Discards the open file. Best effort: the export is failing already,
    /// and leftovers are removed with the job folder or on resume.
    pub fn abort(&mut self) {
        if let Some(open) = self.open.take() {
            if let Err(e) = open.sink.abort() {
                tracing::warn!(file = %open.name, error = %e, "export sink abort failed");
            }
            if let Err(e) = open.file.abort() {
                tracing::warn!(file = %open.name, error = %e, "discarding a pending export file failed");
            }
        }
    }

    fn start(&self, floor: Option<String>) -> Result<OpenFile, ExportError> {
        let seq = u32::try_from(self.state.files.len() + 1).unwrap_or(u32::MAX);
        let name = self
            .kind
            .file_name(self.part, seq, self.target.sink.file_extension());
        let info = FileInfo {
            job_id: self.target.job_id.to_owned(),
            resource_type: self.kind.line_type().to_owned(),
            // Unique among all files of the type, whichever unit wrote it.
            part: (seq - 1)
                .saturating_mul(self.parts)
                .saturating_add(self.part),
        };
        let sink = SinkWriter::open(self.target.sink, &info)?;
        let file = match self.target.destination.create(self.target.folder, &name) {
            Ok(file) => file,
            Err(e) => {
                // The sink may hold resources for the file (its own output).
                let _ = sink.abort();
                return Err(e.into());
            }
        };
        Ok(OpenFile {
            name,
            sink,
            file,
            lines: 0,
            bytes: 0,
            last: Position::default(),
            floor,
        })
    }

    /// Hands `data` to the sink and appends what it returns.
    fn send(&mut self, data: &[u8]) -> Result<(), ExportError> {
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        if data.is_empty() {
            return Ok(());
        }
        let out = open.sink.write(data)?;
        open.file.append(&out)?;
        Ok(())
    }

    /// Finishes the sink and commits the file: durable and visible before
    /// the unit's next checkpoint lists it.
    fn commit(&mut self) -> Result<(), ExportError> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        let OpenFile {
            name,
            sink,
            mut file,
            lines,
            last,
            ..
        } = open;
        let Finished { tail, location } = match sink.finish() {
            Ok(finished) => finished,
            Err(e) => {
                let _ = file.abort();
                return Err(e.into());
            }
        };
        if let Err(e) = file.append(&tail) {
            let _ = file.abort();
            return Err(e.into());
        }
        file.commit()?;
        self.state.files.push(FileEntry {
            file: name,
            count: lines,
            location,
        });
        self.state.last = Some(last);
        Ok(())
    }
}

/// Most files one unit commits at once when it ends.
const COMMIT_THREADS: usize = 8;

/// Commits the open file of every stream `streams` yields, several at a
/// time and while the caller goes on producing the next ones (flushing
/// their last batch): a commit mostly waits for the disk (sync, rename,
/// directory sync), and a Patient/Group unit ends with a file open per type
/// it wrote, which one after the other took longer than the unit's scan of
/// a small Group. `expected` (how many may have a file open) bounds the
/// threads. The first failure is returned; the unit then aborts what is
/// still open.
pub fn finish_all<'s, 'a: 's>(
    expected: usize,
    streams: impl Iterator<Item = Result<&'s mut Stream<'a>, ExportError>>,
) -> Result<(), ExportError> {
    let threads = expected.min(COMMIT_THREADS);
    if threads <= 1 {
        for stream in streams {
            stream?.finish()?;
        }
        return Ok(());
    }
    let (send, receive) = mpsc::channel::<&'s mut Stream<'a>>();
    let receive = Mutex::new(receive);
    let next = || {
        receive
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .recv()
            .ok()
    };
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    while let Some(stream) = next() {
                        stream.finish()?;
                    }
                    Ok(())
                })
            })
            .collect();
        let mut produced = Ok(());
        for stream in streams {
            match stream {
                // Sending fails only once every worker has ended, each
                // with an error: theirs is the one returned.
                Ok(stream) if stream.open.is_some() => {
                    if send.send(stream).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    produced = Err(e);
                    break;
                }
            }
        }
        drop(send);
        let committed = workers.into_iter().try_for_each(|w| {
            w.join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        });
        produced.and(committed)
    })
}

/// The job's folder at the destination: `<job-id>`, or with `_container`
/// `<container>/<created>-<job-id>` (a new folder per export, never reused;
/// `<created>` the kick-off instant as `20240501T120000Z`).
pub fn job_folder(job: &JobRecord, request: &ExportRequest) -> Result<Folder, DestinationError> {
    match &request.container {
        None => Folder::new(&[job.id.as_str()]),
        Some(container) => {
            let created: String = job
                .created
                .to_fhir()
                .chars()
                .take_while(|c| *c != '.')
                .filter(|c| !matches!(c, '-' | ':'))
                .collect();
            Folder::new(&[container.clone(), format!("{created}Z-{}", job.id)])
        }
    }
}
