//! ann-benchmarks HDF5 files (`train`, `test`, `neighbors` datasets), read with the HDF5 C
//! library when the crate is built with the `hdf5` feature.

use std::path::Path;

/// The 2-d float dataset `name` as little-endian f32 bytes, with its rows and columns.
#[cfg(feature = "hdf5")]
pub fn dataset(path: &Path, name: &str) -> Result<(Vec<u8>, usize, usize), String> {
    let (values, rows, dim) = read::<f32>(path, name)?;
    Ok((values.iter().flat_map(|v| v.to_le_bytes()).collect(), rows, dim))
}

/// The `neighbors` dataset (int32 ids) as little-endian bytes, with its rows and columns.
#[cfg(feature = "hdf5")]
pub fn neighbours(path: &Path) -> Result<(Vec<u8>, usize, usize), String> {
    let (values, rows, dim) = read::<i32>(path, "neighbors")?;
    Ok((values.iter().flat_map(|v| v.to_le_bytes()).collect(), rows, dim))
}

#[cfg(feature = "hdf5")]
fn read<T: hdf5_metno::H5Type>(path: &Path, name: &str) -> Result<(Vec<T>, usize, usize), String> {
    let file = hdf5_metno::File::open(path).map_err(|e| e.to_string())?;
    let names = file.member_names().unwrap_or_default();
    let dataset =
        file.dataset(name).map_err(|_| format!("has no dataset {name:?} (it holds: {})", names.join(", ")))?;
    let [rows, dim] = dataset.shape()[..] else {
        return Err(format!("dataset {name:?} has shape {:?}, not rows x columns", dataset.shape()));
    };
    let values = dataset.read_raw::<T>().map_err(|e| format!("dataset {name:?}: {e}"))?;
    Ok((values, rows, dim))
}

#[cfg(not(feature = "hdf5"))]
pub fn dataset(_path: &Path, _name: &str) -> Result<(Vec<u8>, usize, usize), String> {
    Err(unavailable())
}

#[cfg(not(feature = "hdf5"))]
pub fn neighbours(_path: &Path) -> Result<(Vec<u8>, usize, usize), String> {
    Err(unavailable())
}

#[cfg(not(feature = "hdf5"))]
fn unavailable() -> String {
    "HDF5 files need the omendb tool built with `--features hdf5` (and the HDF5 library: libhdf5-dev)".into()
}
