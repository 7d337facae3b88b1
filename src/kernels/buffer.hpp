#pragma once

// Scratch memory for kernels: uninitialised and recycled. A freed block waits in a
// process-wide pool for the next request of the same size, so a training loop that repeats
// its shapes allocates (and page-faults) in its first step only. Fresh multi-MB buffers
// otherwise cost more in page faults and zeroing than the arithmetic they hold.

#include <cstddef>
#include <utility>

namespace xgrad::kernels {

void* acquire_block(std::size_t bytes);
void release_block(void* block, std::size_t bytes) noexcept;

template <class T>
class Buffer {
public:
    Buffer() = default;
    explicit Buffer(std::size_t n) : data_(static_cast<T*>(acquire_block(n * sizeof(T)))), size_(n) {}
    Buffer(Buffer&& o) noexcept : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
    Buffer& operator=(Buffer&& o) noexcept {
        if (this != &o) {
            release_block(data_, size_ * sizeof(T));
            data_ = std::exchange(o.data_, nullptr);
            size_ = std::exchange(o.size_, 0);
        }
        return *this;
    }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    ~Buffer() { release_block(data_, size_ * sizeof(T)); }

    T* data() { return data_; }
    const T* data() const { return data_; }
    std::size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }

private:
    T* data_ = nullptr;
    std::size_t size_ = 0;
};

}  // namespace xgrad::kernels
