// libFuzzer target: the zip directory of an .npz, apart from its payloads. The input replaces
// the central directory and end record of a fixed, valid two-array archive, so that every
// mutation lands on offsets, sizes, names and counts (which the npz target reaches only
// rarely past the CRCs). Any input must give arrays whose byte counts match their shapes and
// dtypes, or an xgrad::IoError.
#include <cstdio>
#include <fstream>
#include <functional>
#include <iterator>
#include <numeric>

#include "fuzz_input.hpp"
#include "xgrad/xgrad.hpp"

namespace io = xgrad::io;

namespace {

// The local headers and payloads of a valid archive (everything before its directory).
const std::string& payloads() {
    static const std::string bytes = [] {
        const std::string path = "/tmp/xgrad_fuzz_zipdir_base_" + std::to_string(getpid());
        io::write_npz(path, {{"a", io::to_npy(xt::xarray<float>{1, 2, 3})},
                             {"b", io::to_npy(xt::xarray<double>{{4, 5}, {6, 7}})}});
        std::ifstream f(path, std::ios::binary);
        const std::string all(std::istreambuf_iterator<char>(f), {});
        std::remove(path.c_str());
        // write_npz ends with a 22-byte end record whose bytes 16-19 hold the directory's offset.
        std::size_t directory = 0;
        for (int i = 3; i >= 0; --i)
            directory = directory << 8 | static_cast<unsigned char>(all[all.size() - 22 + 16 + static_cast<std::size_t>(i)]);
        return all.substr(0, directory);
    }();
    return bytes;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string archive = payloads();
    archive.append(reinterpret_cast<const char*>(data), size);
    const auto& path = xgrad_fuzz::input_file("zipdir", reinterpret_cast<const std::uint8_t*>(archive.data()),
                                              archive.size());
    try {
        for (const auto& [name, a] : io::read_npz(path)) {
            const auto count = std::accumulate(a.shape.begin(), a.shape.end(), std::size_t{1}, std::multiplies<>());
            std::size_t item = a.dtype == "|u1" ? 1 : a.dtype == "<f4" ? 4 : 8;
            if (a.bytes.size() != count * item) xgrad_fuzz::contract_broken("an array's bytes disagree with its shape");
        }
    } catch (const xgrad::IoError&) {
    }
    return 0;
}
