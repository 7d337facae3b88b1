#include "kernels/buffer.hpp"

#include <mutex>
#include <new>
#include <unordered_map>

namespace xgrad::kernels {

namespace {

constexpr std::align_val_t kAlign{64};
// Beyond this many cached bytes, freed blocks go back to the system.
constexpr std::size_t kMaxCached = std::size_t{2} << 30;

struct Pool {
    std::mutex mutex;
    std::unordered_multimap<std::size_t, void*> free_blocks;
    std::size_t cached = 0;

    ~Pool() {
        for (auto& [bytes, block] : free_blocks) ::operator delete(block, kAlign);
    }
};

Pool& pool() {
    static Pool p;
    return p;
}

}  // namespace

void* acquire_block(std::size_t bytes) {
    if (bytes == 0) return nullptr;
    {
        auto& p = pool();
        std::lock_guard lock(p.mutex);
        if (auto it = p.free_blocks.find(bytes); it != p.free_blocks.end()) {
            void* block = it->second;
            p.free_blocks.erase(it);
            p.cached -= bytes;
            return block;
        }
    }
    return ::operator new(bytes, kAlign);
}

void release_block(void* block, std::size_t bytes) noexcept {
    if (!block) return;
    auto& p = pool();
    {
        std::lock_guard lock(p.mutex);
        if (p.cached + bytes <= kMaxCached) {
            try {
                p.free_blocks.emplace(bytes, block);
                p.cached += bytes;
                return;
            } catch (const std::bad_alloc&) {
                // no room to remember it: give it back below
            }
        }
    }
    ::operator delete(block, kAlign);
}

}  // namespace xgrad::kernels
