#include "xgrad/distributed.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <thread>

#include <fmt/format.h>

#include "detail/check.hpp"

#if XGRAD_HAVE_MPI
#include <mpi.h>
#endif

namespace xgrad::distributed {

namespace {

double timeout_seconds = 300;

}  // namespace

void set_timeout(double seconds) {
    detail::check_value(seconds > 0, "distributed::set_timeout: need a positive number of seconds, got {}", seconds);
    timeout_seconds = seconds;
}

double timeout() { return timeout_seconds; }

GradientAverager::GradientAverager(std::vector<Tensor> params, AveragerOptions options) : params_(std::move(params)) {
    detail::check_value(!params_.empty(), "GradientAverager: got an empty parameter list");
    detail::check_value(options.bucket_bytes > 0, "GradientAverager: bucket_bytes must be positive");
    const std::size_t per_bucket = std::max<std::size_t>(1, options.bucket_bytes / sizeof(float));
    for (std::size_t i = 0; i < params_.size(); ++i) {
        if (buckets_.empty() || buckets_.back().data.size() + params_[i].size() > per_bucket)
            buckets_.push_back({i, i, {}});
        auto& b = buckets_.back();
        b.last = i + 1;
        b.data.resize(b.data.size() + params_[i].size());
    }
}

#if XGRAD_HAVE_MPI

namespace {

// Waits for a non-blocking collective, at most timeout() seconds: a rank that died or hangs
// would otherwise block this one forever. Spins briefly, then sleeps between polls.
void wait(MPI_Request& request, const char* what) {
    using Clock = std::chrono::steady_clock;
    const auto start = Clock::now();
    const auto deadline = start + std::chrono::duration<double>(timeout_seconds);
    for (long polls = 0;; ++polls) {
        int done = 0;
        if (const int rc = MPI_Test(&request, &done, MPI_STATUS_IGNORE); rc != MPI_SUCCESS) {
            char text[MPI_MAX_ERROR_STRING];
            int len = 0;
            MPI_Error_string(rc, text, &len);
            throw DistributedError(fmt::format("distributed: {} failed on rank {} of {}: {}", what, rank(),
                                               world_size(), std::string(text, static_cast<std::size_t>(len))));
        }
        if (done) return;
        if (Clock::now() > deadline)
            throw DistributedError(fmt::format(
                "distributed: {} got no answer from the other ranks within {} s (rank {} of {}): a rank died, "
                "hangs or called another collective (XGRAD_DISTRIBUTED_TIMEOUT sets the limit)",
                what, timeout_seconds, rank(), world_size()));
        if (polls > 2000) std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
}

void check(int rc, const char* what) {
    if (rc != MPI_SUCCESS)
        throw DistributedError(fmt::format("distributed: {} failed on rank {} of {} (MPI error {})", what, rank(),
                                           world_size(), rc));
}

}  // namespace

bool available() { return true; }

void init(int& argc, char**& argv) {
    if (initialized()) return;
    // Checked before MPI starts, so that a bad value ends each rank with this message alone.
    if (const char* env = std::getenv("XGRAD_DISTRIBUTED_TIMEOUT")) {
        char* end = nullptr;
        const double seconds = std::strtod(env, &end);
        detail::check_value(end != env && *end == '\0' && seconds > 0,
                            "distributed::init: XGRAD_DISTRIBUTED_TIMEOUT must be a positive number of seconds, "
                            "got '{}'",
                            env);
        timeout_seconds = seconds;
    }
    int provided = 0;
    check(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    // Errors come back as codes (turned into DistributedError) instead of ending the process.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

bool initialized() {
    int init = 0, done = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&done);
    return init && !done;
}

void finalize() {
    if (initialized()) MPI_Finalize();
}

void abort(int code) {
    if (initialized()) MPI_Abort(MPI_COMM_WORLD, code);
    std::exit(code);
}

int rank() {
    int r = 0;
    if (initialized()) MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}

int world_size() {
    int n = 1;
    if (initialized()) MPI_Comm_size(MPI_COMM_WORLD, &n);
    return n;
}

int local_size() {
    if (!initialized()) return 1;
    static int cached = 0;
    if (!cached) {
        MPI_Comm local;
        check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local),
              "MPI_Comm_split_type");
        MPI_Comm_size(local, &cached);
        MPI_Comm_free(&local);
    }
    return cached;
}

void barrier() {
    if (world_size() == 1) return;
    MPI_Request request;
    check(MPI_Ibarrier(MPI_COMM_WORLD, &request), "barrier");
    wait(request, "barrier");
}

void broadcast(const nn::Module& model, int root) {
    if (world_size() == 1) return;
    for (auto [name, t] : model.state()) {  // handles: writing through t writes the model
        auto& value = t.mutable_value();
        MPI_Request request;
        const std::string what = "broadcast of " + name;
        check(MPI_Ibcast(value.data(), static_cast<int>(value.size()), MPI_FLOAT, root, MPI_COMM_WORLD, &request),
              what.c_str());
        wait(request, what.c_str());
    }
}

void allreduce_sum(std::vector<double>& values) {
    if (world_size() == 1 || values.empty()) return;
    MPI_Request request;
    check(MPI_Iallreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()), MPI_DOUBLE, MPI_SUM,
                         MPI_COMM_WORLD, &request),
          "allreduce of metrics");
    wait(request, "allreduce of metrics");
}

void GradientAverager::average() {
    const int world = world_size();
    if (world == 1) return;
    const auto start = std::chrono::steady_clock::now();
    const float scale = 1.0f / static_cast<float>(world);
    for (std::size_t k = 0; k < buckets_.size(); ++k) {
        auto& b = buckets_[k];
        float* at = b.data.data();
        for (std::size_t i = b.first; i < b.last; ++i) {
            const std::size_t n = params_[i].size();
            if (params_[i].has_grad())
                std::copy_n(params_[i].grad().data(), n, at);
            else
                std::fill_n(at, n, 0.0f);
            at += n;
        }
        MPI_Request request;
        const std::string what = fmt::format("gradient allreduce (bucket {} of {})", k + 1, buckets_.size());
        check(MPI_Iallreduce(MPI_IN_PLACE, b.data.data(), static_cast<int>(b.data.size()), MPI_FLOAT, MPI_SUM,
                             MPI_COMM_WORLD, &request),
              what.c_str());
        wait(request, what.c_str());
        at = b.data.data();
        for (std::size_t i = b.first; i < b.last; ++i) {
            const std::size_t n = params_[i].size();
            if (params_[i].has_grad()) {
                float* g = params_[i].mutable_grad().data();
                for (std::size_t j = 0; j < n; ++j) g[j] = at[j] * scale;
            }
            at += n;
        }
    }
    seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ++calls_;
}

#else  // built without MPI: a world of one process

bool available() { return false; }

void init(int&, char**&) {
    throw ValueError("distributed::init: xgrad was built without MPI (Debian: apt-get install libopenmpi-dev "
                     "openmpi-bin, then rebuild)");
}

bool initialized() { return false; }
void finalize() {}
void abort(int code) { std::exit(code); }
int rank() { return 0; }
int world_size() { return 1; }
int local_size() { return 1; }
void barrier() {}
void broadcast(const nn::Module&, int) {}
void allreduce_sum(std::vector<double>&) {}
void GradientAverager::average() {}

#endif

}  // namespace xgrad::distributed
