#pragma once

// Scratch memory for kernels: uninitialised, mapped with mmap and recycled. A freed block waits in a
// process-wide pool for the next request it fits (the smallest cached block of at least the
// size asked for and at most twice it), so a training loop that repeats its shapes allocates
// (and page-faults) in its first step only, and a smaller last batch reuses the blocks of
// the full ones instead of adding its own. Fresh multi-MB buffers otherwise cost more in
// page faults and zeroing than the arithmetic they hold.

#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>

namespace xgrad::kernels {

/// A block of at least `bytes` bytes; its real size goes to `capacity`, for release_block.
void* acquire_block(std::size_t bytes, std::size_t& capacity);
void release_block(void* block, std::size_t capacity) noexcept;

template <class T>
class Buffer {
public:
    Buffer() = default;
    /// Throws std::bad_alloc when n elements cannot be had (n · sizeof(T) overflowing included).
    explicit Buffer(std::size_t n) : size_(n) {
        if (n > SIZE_MAX / 2 / sizeof(T)) throw std::bad_alloc();
        // In the body: capacity_'s own initializer would overwrite what acquire_block wrote.
        data_ = static_cast<T*>(acquire_block(n * sizeof(T), capacity_));
    }
    Buffer(Buffer&& o) noexcept
        : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)),
          capacity_(std::exchange(o.capacity_, 0)) {}
    Buffer& operator=(Buffer&& o) noexcept {
        if (this != &o) {
            release_block(data_, capacity_);
            data_ = std::exchange(o.data_, nullptr);
            size_ = std::exchange(o.size_, 0);
            capacity_ = std::exchange(o.capacity_, 0);
        }
        return *this;
    }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    ~Buffer() { release_block(data_, capacity_); }

    T* data() { return data_; }
    const T* data() const { return data_; }
    std::size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }

private:
    T* data_ = nullptr;
    std::size_t size_ = 0;
    std::size_t capacity_ = 0;  // bytes of the block
};

}  // namespace xgrad::kernels
