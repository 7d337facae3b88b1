// libFuzzer target: the IDX reader (raw or gzip). Any input must give an IdxArray whose
// shape accounts for every byte, or an xgrad::IoError; anything else is a crash.
#include <functional>
#include <numeric>

#include "fuzz_input.hpp"
#include "xgrad/xgrad.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto& path = xgrad_fuzz::input_file("idx", data, size);
    try {
        const auto a = xgrad::data::read_idx(path);
        const auto count = std::accumulate(a.shape.begin(), a.shape.end(), std::size_t{1}, std::multiplies<>());
        if (a.shape.empty() || count != a.values.size()) xgrad_fuzz::contract_broken("shape and values disagree");
    } catch (const xgrad::IoError&) {
    }
    return 0;
}
