#include "kernels/buffer.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <new>

#include "detail/check.hpp"

namespace xgrad::kernels {

namespace {

// Beyond this many cached bytes, freed blocks go back to the system.
constexpr std::size_t kMaxCached = std::size_t{2} << 30;

// Each block starts on its own 2 MiB boundary.
constexpr std::size_t kBlockAlign = std::size_t{2} << 20;

// Blocks come straight from mmap (outside glibc's heap): cached blocks then never pin heap
// regions between the arrays malloc serves, which fragmented the heap when an epoch's smaller
// last batch changed the pattern of sizes (W1: +5.3 MiB RSS at the next full batch). Packed
// next to each other as mmap places them, the per-thread blocks of a batch-split kernel made
// some processes slow (conv E's weight gradient 6.8-7.3 ms against 5.1-5.5 in others); on
// 2 MiB boundaries every run was fast (the address space between them is given back).
void* map_block(std::size_t bytes) {
    // More than the machine's memory cannot be filled: refused before mmap, which the kernel's
    // overcommit policy might grant.
    if (bytes > detail::memory_bytes()) throw std::bad_alloc();
    const std::size_t span = bytes + kBlockAlign;
    void* p = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    const auto base = reinterpret_cast<std::uintptr_t>(p);
    const std::uintptr_t start = (base + kBlockAlign - 1) & ~std::uintptr_t{kBlockAlign - 1};
    const std::uintptr_t page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
    const std::uintptr_t end = start + (bytes + page - 1) / page * page;
    if (start > base) munmap(p, start - base);
    if (base + span > end) munmap(reinterpret_cast<void*>(end), base + span - end);
    return reinterpret_cast<void*>(start);
}

void unmap_block(void* block, std::size_t bytes) noexcept { munmap(block, bytes); }

struct Pool {
    std::mutex mutex;
    std::multimap<std::size_t, void*> free_blocks;  // by size
    std::size_t cached = 0;

    ~Pool() {
        for (auto& [bytes, block] : free_blocks) unmap_block(block, bytes);
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
    return map_block(bytes);
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
    unmap_block(block, bytes);
}

}  // namespace xgrad::kernels
