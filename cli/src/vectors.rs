//! Vector and id files, the format taken from the extension: TEXMEX `.fvecs`, big-ann `.fbin`,
//! NumPy `.npy` (float32 or float16 rows), and id lists (`.npy` of integers, or text with one id
//! a line).

use std::fs;
use std::path::Path;

/// Row-major vectors read from a file.
pub struct Vectors {
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Vectors {
    pub fn rows(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }
}

fn extension(path: &Path) -> String {
    path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase()
}

/// Reads the vectors of `path` (.fvecs, .fbin or .npy).
pub fn read_vectors(path: &Path) -> Result<Vectors, String> {
    let what = path.display();
    match extension(path).as_str() {
        "fvecs" => fvecs(&read(path)?).map_err(|e| format!("{what}: {e}")),
        "fbin" => fbin(&read(path)?).map_err(|e| format!("{what}: {e}")),
        "npy" => npy_vectors(&read(path)?).map_err(|e| format!("{what}: {e}")),
        other => Err(format!("{what}: unknown vector format .{other} (expected .fvecs, .fbin or .npy)")),
    }
}

/// Reads ids: a `.npy` of integers, or text with one id a line (blank lines skipped).
pub fn read_ids(path: &Path) -> Result<Vec<u64>, String> {
    let what = path.display();
    if extension(path) == "npy" {
        let bytes = read(path)?;
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
    let text = fs::read_to_string(path).map_err(|e| format!("{what}: {e}"))?;
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .enumerate()
        .map(|(n, line)| line.parse().map_err(|_| format!("{what}: line {}: {line:?} is not an id", n + 1)))
        .collect()
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    bytes.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// Each row: an int32 dimension, then that many float32 values.
fn fvecs(bytes: &[u8]) -> Result<Vectors, String> {
    let Some(dim) = u32_at(bytes, 0) else { return Ok(Vectors { dim: 0, data: Vec::new() }) };
    let dim = dim as usize;
    let row = 4 + 4 * dim;
    if dim == 0 || !bytes.len().is_multiple_of(row) {
        return Err(format!("{} bytes are not rows of dimension {dim}", bytes.len()));
    }
    let mut data = Vec::with_capacity(bytes.len() / row * dim);
    for (n, chunk) in bytes.chunks_exact(row).enumerate() {
        if u32_at(chunk, 0) != Some(dim as u32) {
            return Err(format!("row {n} has dimension {:?}, the first {dim}", u32_at(chunk, 0)));
        }
        data.extend(floats(&chunk[4..]));
    }
    Ok(Vectors { dim, data })
}

/// A uint32 row count and dimension, then the float32 rows.
fn fbin(bytes: &[u8]) -> Result<Vectors, String> {
    let (Some(rows), Some(dim)) = (u32_at(bytes, 0), u32_at(bytes, 4)) else {
        return Err("shorter than its 8-byte header".into());
    };
    let (rows, dim) = (rows as usize, dim as usize);
    let body = &bytes[8..];
    if body.len() != rows * dim * 4 {
        return Err(format!("header says {rows} x {dim} floats but {} bytes follow", body.len()));
    }
    Ok(Vectors { dim, data: floats(body) })
}

fn npy_vectors(bytes: &[u8]) -> Result<Vectors, String> {
    let npy = npyz::NpyFile::new(bytes).map_err(|e| e.to_string())?;
    let shape = npy.shape().to_vec();
    let dim = match shape.as_slice() {
        [_, dim] => *dim as usize,
        [dim] => *dim as usize,
        other => return Err(format!("expected a 2-d array of rows, got shape {other:?}")),
    };
    let data = match npy.dtype() {
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float && t.size_field() == 4 => {
            npy.into_vec::<f32>().map_err(|e| e.to_string())?
        }
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float && t.size_field() == 8 => {
            npy.into_vec::<f64>().map_err(|e| e.to_string())?.into_iter().map(|x| x as f32).collect()
        }
        other => return Err(format!("vectors must be float32 or float64, not {other:?}")),
    };
    Ok(Vectors { dim, data })
}
