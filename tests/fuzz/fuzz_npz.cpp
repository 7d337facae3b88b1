// libFuzzer target: the .npz reader and the dtype conversions behind every load. Any input
// must give arrays whose byte counts match their shapes and dtypes, or an xgrad::IoError.
#include <functional>
#include <numeric>

#include "fuzz_input.hpp"
#include "xgrad/xgrad.hpp"

namespace io = xgrad::io;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto& path = xgrad_fuzz::input_file("npz", data, size);
    try {
        for (const auto& [name, a] : io::read_npz(path)) {
            const auto count = std::accumulate(a.shape.begin(), a.shape.end(), std::size_t{1}, std::multiplies<>());
            try {
                const auto f = io::npy_to_float(a, name);
                if (f.size() != count) xgrad_fuzz::contract_broken("float conversion lost elements");
                const auto d = io::npy_to_double(a, name);
                if (d.size() != count) xgrad_fuzz::contract_broken("double conversion lost elements");
            } catch (const xgrad::IoError&) {
            }
            try {
                if (io::npy_to_bytes(a, name).size() != count) xgrad_fuzz::contract_broken("bytes lost");
            } catch (const xgrad::IoError&) {
            }
        }
    } catch (const xgrad::IoError&) {
    }
    return 0;
}
