//! Vector, id and neighbour files, the format taken from the extension: TEXMEX `.fvecs`/`.bvecs`
//! (and `.ivecs` neighbours), big-ann `.fbin`/`.u8bin`/`.i8bin` (and `.ibin` neighbours), NumPy
//! `.npy` (float32, float64, float16, uint8 or int8 rows), raw little-endian `.f32`/`.f16` rows
//! of a dimension known elsewhere, ann-benchmarks HDF5 (`.hdf5`/`.h5`, with the `hdf5`
//! feature), and id lists (`.npy` of integers, or text with one id a line).
//!
//! Vector files are memory-mapped and checked whole when opened (size, every row's dimension
//! word, the header), so a bad file is refused before anything is imported; rows are then
//! converted to f32 a batch at a time, and reading never costs more than one pass over the file.

use std::fs::File;
use std::ops::Range;
use std::path::Path;

use memmap2::Mmap;

/// The element type of stored rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Element {
    F32,
    F64,
    F16,
    U8,
    I8,
    I32,
    I64,
}

impl Element {
    fn size(self) -> usize {
        match self {
            Element::F32 | Element::I32 => 4,
            Element::F64 | Element::I64 => 8,
            Element::F16 => 2,
            Element::U8 | Element::I8 => 1,
        }
    }

    fn to_f32(self, bytes: &[u8]) -> f32 {
        match self {
            Element::F32 => f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            Element::F64 => f64::from_le_bytes(bytes[..8].try_into().unwrap_or_default()) as f32,
            Element::F16 => half::f16::from_le_bytes([bytes[0], bytes[1]]).to_f32(),
            Element::U8 => f32::from(bytes[0]),
            Element::I8 => f32::from(bytes[0] as i8),
            Element::I32 => i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as f32,
            Element::I64 => i64::from_le_bytes(bytes[..8].try_into().unwrap_or_default()) as f32,
        }
    }
}

/// The bytes of a vector file: mapped, or read whole (HDF5 datasets, which are not laid out
/// as plain rows).
enum Bytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Bytes {
    fn get(&self) -> &[u8] {
        match self {
            Bytes::Mapped(map) => map,
            Bytes::Owned(bytes) => bytes,
        }
    }
}

/// Rows of numbers in a file: row `i` starts at `offset + i * stride + lead`.
pub struct VectorFile {
    bytes: Bytes,
    pub rows: usize,
    pub dim: usize,
    offset: usize,
    stride: usize,
    /// Bytes before each row's values (the dimension word of .fvecs/.bvecs/.ivecs).
    lead: usize,
    element: Element,
}

fn extension(path: &Path) -> String {
    path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase()
}

impl VectorFile {
    /// Opens vectors: .fvecs, .bvecs, .fbin, .u8bin, .i8bin, .npy, HDF5 (`dataset`), or raw
    /// .f32/.f16 rows of `raw_dim` values.
    pub fn open(path: &Path, dataset: &str, raw_dim: Option<usize>) -> Result<VectorFile, String> {
        let what = path.display();
        let opened = match extension(path).as_str() {
            "fvecs" => Self::texmex(map(path)?, Element::F32),
            "bvecs" => Self::texmex(map(path)?, Element::U8),
            "fbin" => Self::big_ann(map(path)?, Element::F32),
            "u8bin" => Self::big_ann(map(path)?, Element::U8),
            "i8bin" => Self::big_ann(map(path)?, Element::I8),
            "npy" => Self::npy(map(path)?, false),
            "f32" => Self::raw(map(path)?, Element::F32, raw_dim),
            "f16" => Self::raw(map(path)?, Element::F16, raw_dim),
            "hdf5" | "h5" => crate::hdf5::dataset(path, dataset)
                .and_then(|(bytes, rows, dim)| Self::whole(bytes, rows, dim, Element::F32)),
            other => Err(format!(
                "unknown vector format .{other} (expected .fvecs, .bvecs, .fbin, .u8bin, .i8bin, .npy, .f32, .f16, .hdf5)"
            )),
        };
        opened.map_err(|e| format!("{what}: {e}"))
    }

    /// Opens exact neighbours: .ivecs, .ibin, .npy of integers, or HDF5 (`neighbors`).
    pub fn open_neighbours(path: &Path) -> Result<VectorFile, String> {
        let what = path.display();
        let opened = match extension(path).as_str() {
            "ivecs" => Self::texmex(map(path)?, Element::I32),
            "ibin" => Self::big_ann(map(path)?, Element::I32),
            "npy" => Self::npy(map(path)?, true),
            "hdf5" | "h5" => {
                crate::hdf5::neighbours(path).and_then(|(bytes, rows, dim)| Self::whole(bytes, rows, dim, Element::I32))
            }
            other => Err(format!("unknown neighbour format .{other} (expected .ivecs, .ibin, .npy, .hdf5)")),
        };
        opened.map_err(|e| format!("{what}: {e}"))
    }

    fn whole(bytes: Vec<u8>, rows: usize, dim: usize, element: Element) -> Result<VectorFile, String> {
        let stride = dim * element.size();
        Ok(VectorFile { bytes: Bytes::Owned(bytes), rows, dim, offset: 0, stride, lead: 0, element })
    }

    /// Each row: an int32 dimension, then that many values. Every row's word is checked.
    fn texmex(bytes: Mmap, element: Element) -> Result<VectorFile, String> {
        let Some(dim) = bytes.get(..4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize) else {
            return Ok(VectorFile {
                bytes: Bytes::Mapped(bytes),
                rows: 0,
                dim: 0,
                offset: 0,
                stride: 4,
                lead: 4,
                element,
            });
        };
        let stride = dim.checked_mul(element.size()).and_then(|s| s.checked_add(4)).ok_or("dimension overflows")?;
        if dim == 0 || !bytes.len().is_multiple_of(stride) {
            return Err(format!(
                "{} bytes are not whole rows of dimension {dim} ({stride} bytes each): truncated or not this format",
                bytes.len()
            ));
        }
        for (row, chunk) in bytes.chunks_exact(stride).enumerate() {
            let word = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            if word as usize != dim {
                return Err(format!("row {row} has dimension {word}, the first row {dim}"));
            }
        }
        let rows = bytes.len() / stride;
        Ok(VectorFile { bytes: Bytes::Mapped(bytes), rows, dim, offset: 0, stride, lead: 4, element })
    }

    /// Rows of `dim` values and nothing else.
    fn raw(bytes: Mmap, element: Element, dim: Option<usize>) -> Result<VectorFile, String> {
        let dim = dim.filter(|&d| d > 0).ok_or("raw rows carry no dimension; it is needed from elsewhere")?;
        let stride = dim * element.size();
        if !bytes.len().is_multiple_of(stride) {
            return Err(format!("{} bytes are not whole rows of {dim} values ({stride} bytes each)", bytes.len()));
        }
        let rows = bytes.len() / stride;
        Ok(VectorFile { bytes: Bytes::Mapped(bytes), rows, dim, offset: 0, stride, lead: 0, element })
    }

    /// A uint32 row count and dimension, then the rows.
    fn big_ann(bytes: Mmap, element: Element) -> Result<VectorFile, String> {
        let word = |at: usize| bytes.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
        let (Some(rows), Some(dim)) = (word(0), word(4)) else {
            return Err("shorter than its 8-byte header".into());
        };
        let stride = dim * element.size();
        let body = (bytes.len() - 8) as u128;
        if body != rows as u128 * stride as u128 {
            return Err(format!(
                "header says {rows} x {dim} values but {body} bytes follow: truncated or not this format"
            ));
        }
        Ok(VectorFile { bytes: Bytes::Mapped(bytes), rows, dim, offset: 8, stride, lead: 0, element })
    }

    /// A NumPy array of rows (C order, little-endian). `integers` asks for neighbour ids.
    fn npy(bytes: Mmap, integers: bool) -> Result<VectorFile, String> {
        let mut data: &[u8] = &bytes;
        let (order, shape, descr) = {
            let npy = npyz::NpyFile::new(&mut data).map_err(|e| e.to_string())?;
            (npy.order(), npy.shape().to_vec(), npy.dtype().descr())
        };
        let offset = bytes.len() - data.len();
        if order != npyz::Order::C {
            return Err("a Fortran-order array (save it in C order: np.ascontiguousarray)".into());
        }
        let (rows, dim) = match shape.as_slice() {
            [rows, dim] => (*rows as usize, *dim as usize),
            [dim] => (1, *dim as usize),
            other => return Err(format!("expected a 2-d array of rows, got shape {other:?}")),
        };
        let element = match (descr.as_str(), integers) {
            ("'<f4'", false) => Element::F32,
            ("'<f8'", false) => Element::F64,
            ("'<f2'", false) => Element::F16,
            ("'|u1'", false) => Element::U8,
            ("'|i1'", false) => Element::I8,
            ("'<i4'", true) => Element::I32,
            ("'<i8'", true) => Element::I64,
            (other, false) => {
                return Err(format!("dtype {other} (vectors must be float32, float64, float16, uint8 or int8)"))
            }
            (other, true) => return Err(format!("dtype {other} (neighbours must be int32 or int64)")),
        };
        let stride = dim * element.size();
        if data.len() as u128 != rows as u128 * stride as u128 {
            return Err(format!("shape {rows} x {dim} but {} bytes of data: truncated", data.len()));
        }
        Ok(VectorFile { bytes: Bytes::Mapped(bytes), rows, dim, offset, stride, lead: 0, element })
    }

    /// Converts `rows` to f32, appended to `out`.
    pub fn read_into(&self, rows: Range<usize>, out: &mut Vec<f32>) {
        let size = self.element.size();
        let bytes = self.bytes.get();
        out.reserve(rows.len() * self.dim);
        for row in rows {
            let start = self.offset + row * self.stride + self.lead;
            let values = &bytes[start..start + self.dim * size];
            if self.element == Element::F32 {
                out.extend(values.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])));
            } else {
                out.extend(values.chunks_exact(size).map(|b| self.element.to_f32(b)));
            }
        }
    }

    /// Every row as f32.
    pub fn all(&self) -> Vec<f32> {
        let mut out = Vec::new();
        self.read_into(0..self.rows, &mut out);
        out
    }

    /// Row `row` of a neighbour file as ids, read as integers (f32 would round ids past 2^24);
    /// negative entries, padding in some files, are dropped.
    pub fn ids_of_row(&self, row: usize) -> Vec<u64> {
        let size = self.element.size();
        let start = self.offset + row * self.stride + self.lead;
        self.bytes.get()[start..start + self.dim * size]
            .chunks_exact(size)
            .map(|b| match self.element {
                Element::I64 => i64::from_le_bytes(b.try_into().unwrap_or_default()),
                _ => i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            })
            .filter_map(|id| u64::try_from(id).ok())
            .collect()
    }
}

fn map(path: &Path) -> Result<Mmap, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    // SAFETY: the map is read only; a file truncated by another process while mapped would
    // fault (SIGBUS) rather than read out of bounds, which a command-line import accepts.
    unsafe { Mmap::map(&file) }.map_err(|e| e.to_string())
}

/// Reads ids: a `.npy` of integers, or text with one id a line (blank lines skipped).
pub fn read_ids(path: &Path) -> Result<Vec<u64>, String> {
    let what = path.display();
    if extension(path) == "npy" {
        let bytes = std::fs::read(path).map_err(|e| format!("{what}: {e}"))?;
        let npy = npyz::NpyFile::new(&bytes[..]).map_err(|e| format!("{what}: {e}"))?;
        return match npy.dtype() {
            npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Uint => {
                npy.into_vec::<u64>().map_err(|e| format!("{what}: {e}"))
            }
            npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Int => {
                let signed = npy.into_vec::<i64>().map_err(|e| format!("{what}: {e}"))?;
                signed
                    .into_iter()
                    .map(|id| u64::try_from(id).map_err(|_| format!("{what}: negative id {id}")))
                    .collect()
            }
            other => Err(format!("{what}: ids must be integers, not {other:?}")),
        };
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{what}: {e}"))?;
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .enumerate()
        .map(|(n, line)| line.parse().map_err(|_| format!("{what}: line {}: {line:?} is not an id", n + 1)))
        .collect()
}
