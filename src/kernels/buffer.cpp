#include "kernels/buffer.hpp"

#include <mutex>
#include <new>
#include <map>

namespace xgrad::kernels {

namespace {

constexpr std::align_val_t kAlign{64};
// Beyond this many cached bytes, freed blocks go back to the system.
constexpr std::size_t kMaxCached = std::size_t{2} << 30;

struct Pool {
    std::mutex mutex;
    std::multimap<std::size_t, void*> free_blocks;  // by size
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

void* acquire_block(std::size_t bytes, std::size_t& capacity) {
    capacity = bytes;
    if (bytes == 0) return nullptr;
    {
        auto& p = pool();
        std::lock_guard lock(p.mutex);
        // The smallest cached block that fits, unless it would waste more than half of itself.
        if (auto it = p.free_blocks.lower_bound(bytes); it != p.free_blocks.end() && it->first / 2 <= bytes) {
            void* block = it->second;
            capacity = it->first;
            p.free_blocks.erase(it);
            p.cached -= capacity;
            return block;
        }
    }
    return ::operator new(bytes, kAlign);
}

void release_block(void* block, std::size_t bytes) noexcept {  // bytes: the capacity
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
