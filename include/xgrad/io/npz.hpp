#pragma once

#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <xtensor/xarray.hpp>

#include "xgrad/tensor.hpp"

namespace xgrad::io {

/// One array of an .npz archive: its shape, its numpy dtype ("<f4", "<f8", "|u1", "<i8")
/// and its raw little-endian bytes, row-major.
struct NpyArray {
    Shape shape;
    std::string dtype;
    std::vector<unsigned char> bytes;
};

using NpzArchive = std::vector<std::pair<std::string, NpyArray>>;

/// A float32 array as "<f4", a float64 array as "<f8".
NpyArray to_npy(const xt::xarray<float>& a);
NpyArray to_npy(const xt::xarray<double>& a);
/// Raw bytes as a 1-D "|u1" array (RNG states, text).
NpyArray bytes_to_npy(const std::string& bytes);

/// The array as float32 (converting "<f8"). Throws IoError naming `what` for other dtypes.
xt::xarray<float> npy_to_float(const NpyArray& a, const std::string& what);
/// The array as float64 (converting "<f4"). Throws IoError naming `what` for other dtypes.
xt::xarray<double> npy_to_double(const NpyArray& a, const std::string& what);
/// npy_to_float or npy_to_double, by T.
template <class T>
xt::xarray<T> npy_to(const NpyArray& a, const std::string& what) {
    if constexpr (std::is_same_v<T, float>)
        return npy_to_float(a, what);
    else
        return npy_to_double(a, what);
}
/// The bytes of a "|u1" array. Throws IoError naming `what` for other dtypes.
std::string npy_to_bytes(const NpyArray& a, const std::string& what);

/// Writes arrays as an uncompressed .npz that numpy.load opens (entries "<name>.npy"),
/// atomically: a temporary file is written, flushed to disk and renamed over `path`, so a
/// crash mid-save leaves the previous file intact. Throws IoError.
void write_npz(const std::string& path, const NpzArchive& arrays);

/// Reads an .npz written by write_npz or by numpy.savez / savez_compressed (stored or
/// deflated entries; <f4, <f8, <i4, <i8 and |u1 arrays; Fortran-ordered arrays, as
/// np.savez(w.T) writes, come back in row-major order). Throws IoError naming the file and
/// what was wrong (missing, truncated, not a zip, bad CRC, not an .npy, sizes that disagree).
NpzArchive read_npz(const std::string& path);

/// Writes `bytes` to `path` through a temporary file, fsync and rename. Throws IoError.
void write_file_atomically(const std::string& path, const std::string& bytes);

}  // namespace xgrad::io
