#pragma once
// Shared by the libFuzzer targets: the readers take paths, so each input is written to a
// file of this process first (in /tmp, one per target and process).

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

namespace xgrad_fuzz {

/// Writes the fuzzer's bytes to this process's input file and returns its path.
inline const std::string& input_file(const char* target, const std::uint8_t* data, std::size_t size) {
    static const std::string path = std::string("/tmp/xgrad_fuzz_") + target + "_" + std::to_string(getpid());
    std::ofstream(path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data),
                                                                   static_cast<std::streamsize>(size));
    return path;
}

/// Ends the run as a crash (libFuzzer saves the input): a reader broke its contract.
[[noreturn]] inline void contract_broken(const char* what) {
    std::fprintf(stderr, "contract broken: %s\n", what);
    std::abort();
}

}  // namespace xgrad_fuzz
