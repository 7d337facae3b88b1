// libFuzzer target: load_png (libpng's simplified reader behind xgrad's checks). Any input
// must give an [H, W, C] image of values in [0, 1] with C the file's channels, or an
// xgrad::IoError; anything else is a crash.
#include <cmath>

#include "fuzz_input.hpp"
#include "xgrad/xgrad.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto& path = xgrad_fuzz::input_file("png", data, size);
    for (const std::size_t channels : {0u, 3u}) {
        try {
            const auto image = xgrad::io::load_png(path, channels);
            const auto& s = image.shape();
            if (s.size() != 3 || s[0] == 0 || s[1] == 0 || s[2] < 1 || s[2] > 4 || (channels && s[2] != channels))
                xgrad_fuzz::contract_broken("bad image shape");
            for (const float v : image)
                if (!(v >= 0.0f && v <= 1.0f)) xgrad_fuzz::contract_broken("a value outside [0, 1]");
        } catch (const xgrad::IoError&) {
        }
    }
    return 0;
}
